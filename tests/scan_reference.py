"""The selective scan written as one Python step per time index, and random inputs for it."""

from __future__ import annotations

import torch


def sequential_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """mamba_ssm's selective scan written as one Python step per time index (mamba layout)."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = torch.log1p(torch.exp(delta))
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for k in range(u.shape[2]):
        dk = delta[:, :, k, None]  # (batch, D, 1)
        h = torch.exp(dk * A) * h + dk * B[:, None, :, k] * u[:, :, k, None]
        y = (h * C[:, None, :, k]).sum(-1)
        ys.append(y if D is None else y + D * u[:, :, k])
    y = torch.stack(ys, dim=-1)
    return y if z is None else y * z * torch.sigmoid(z)


def scan_inputs(batch: int, dim: int, n: int, length: int, softplus: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    # Without softplus, delta is used as the step itself, so keep it positive.
    delta = (
        randn(batch, dim, length)
        if softplus
        else 0.5 * torch.rand(batch, dim, length, generator=g, dtype=torch.float64)
    )
    return {
        "u": randn(batch, dim, length),
        "delta": delta,
        "A": -torch.exp(randn(dim, n)),
        "B": randn(batch, n, length),
        "C": randn(batch, n, length),
        "D": randn(dim),
        "z": randn(batch, dim, length),
        "delta_bias": 0.3 * randn(dim),
    }
