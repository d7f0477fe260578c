"""The plain step-by-step recurrence of a discrete LTI SSM (see `base.DiscreteSSM`).

    x_k = Ā x_{k-1} + B̄ u_k,   y_k = scale · Re(C̄ x_k) + D u_k,   x_0 = 0.

One Python step per time index, no convolution, no scan: the ground truth that every fast
`forward` is tested against, and the baseline of `benchmarks/layers.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssmprobe.models.base import DiscreteSSM


def run_recurrence(ssm: DiscreteSSM, u: Tensor) -> Tensor:
    """Runs `ssm` over u (B, L, H) one step at a time; returns y (B, L, H)."""
    batch, length, _ = u.shape
    a, b, c = ssm.A_bar, ssm.B_bar, ssm.C_bar
    cdtype = torch.promote_types(a.dtype, u.dtype)
    if ssm.mimo:
        x = torch.zeros(batch, a.shape[0], dtype=cdtype, device=u.device)
    else:
        x = torch.zeros(batch, *b.shape, dtype=cdtype, device=u.device)
    ys = []
    for k in range(length):
        uk = u[:, k]
        if ssm.mimo:  # x: (B, P); B̄: (P, H); C̄: (H, P)
            x = a * x + uk.to(cdtype) @ b.T
            yk = (x @ c.T).real
        else:  # x: (B, H, N); B̄, C̄: (H, N); Ā: (H, N) or (H, N, N)
            ax = a * x if ssm.diagonal else torch.einsum("hnm,bhm->bhn", a, x)
            x = ax + b * uk[..., None]
            yk = (x * c).sum(-1).real
        ys.append(ssm.scale * yk + ssm.D * uk)
    return torch.stack(ys, dim=1)
