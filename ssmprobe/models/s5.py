"""S5: one MIMO diagonal state space over all H channels, ZOH, parallel scan (paper eq. 8).

With A = V Λ V^{-1} diagonalised (eq. 8), the state x̃ = V^{-1}x evolves as

    x̃_k = Λ̄ x̃_{k-1} + B̄ u_k,   Λ̄ = exp(ΛΔ),   B̄ = Δ φ₁(ΛΔ) B̃,   B̃ = V^{-1}B   (eq. 6, 8)
    y_k = 2 Re(C̃ x̃_k) + D u_k,   C̃ = C V,

where u_k, y_k ∈ R^H, Λ keeps one eigenvalue of each complex-conjugate pair (P/2 states, hence
the factor 2) and Δ is one step per state. Λ, B, C start from HiPPO-LegS's normal part: B̃ and C̃
are random real B (P, H) and C (H, P) projected by its eigenvectors V. The recurrence is a
diagonal linear recurrence in time, computed by `linear_scan` instead of a step loop; for short
sequences with frozen weights (an attack) as x̃[:, n] = T_n (B̄u)[:, n] instead, T_n the (L, L)
Toeplitz matrix of Λ̄_n^m, kept with the real forms of B̄ and C̃ (`frozen_memo`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ssmprobe.models import discretize, hippo
from ssmprobe.models.base import (
    DIRECT_MAX_LENGTH,
    LTISSM,
    DiscreteSSM,
    as_complex,
    frozen_memo,
    real_parameter,
    speedups_enabled,
    stable_eigenvalues,
    toeplitz,
    vandermonde,
    vandermonde_kernel,
)
from ssmprobe.models.scan import linear_scan


class S5(LTISSM):
    """MIMO diagonal SSM with ZOH and a parallel scan: (B, L, H) -> (B, L, H)."""

    def __init__(
        self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1
    ) -> None:
        super().__init__()
        self.d_model = d_model
        lam, _, _, v = hippo.legs_nplr(d_state)  # Λ (P/2,), V (P, P/2) orthonormal columns
        self.log_neg_real = real_parameter(torch.log(-lam.real))
        self.imag = real_parameter(lam.imag)
        # LeCun-scaled real B, C, then eq. 8; V's orthonormal columns keep E|B̃|² = 1/H.
        b = torch.randn(d_state, d_model, dtype=torch.float64) / math.sqrt(d_model)
        c = torch.randn(d_model, d_state, dtype=torch.float64) / math.sqrt(d_state)
        self.B = real_parameter(v.conj().T @ b.to(v.dtype))  # B̃ = V^{-1}B: (P/2, H)
        self.C = real_parameter(c.to(v.dtype) @ v)  # C̃ = CV: (H, P/2)
        self.log_dt = real_parameter(torch.log(hippo.log_uniform(lam.shape, dt_min, dt_max)))
        self.D = real_parameter(torch.randn(d_model, dtype=torch.float64))

    def discrete(self) -> DiscreteSSM:
        lam = stable_eigenvalues(self.log_neg_real, self.imag)
        dt = torch.exp(self.log_dt)
        a_bar, b_scale = discretize.zoh(lam, dt)
        return DiscreteSSM(
            A_bar=a_bar,
            B_bar=b_scale.unsqueeze(-1) * as_complex(self.B),
            C_bar=as_complex(self.C),
            D=self.D,
            dt=dt,
            eigvals=a_bar,
            scale=2.0,
            mimo=True,
        )

    def impulse_response(self, length: int) -> Tensor:
        ssm = self.discrete()
        z = stable_eigenvalues(self.log_neg_real, self.imag) * ssm.dt
        return vandermonde_kernel(z, ssm.C_bar, ssm.B_bar, length)

    def forward(self, u: Tensor) -> Tensor:
        length = u.shape[1]
        if speedups_enabled() and length <= DIRECT_MAX_LENGTH:
            return self._direct(u)
        ssm = self.discrete()
        x = linear_scan(ssm.A_bar, u.to(ssm.B_bar.dtype) @ ssm.B_bar.T)  # (B, L, P/2)
        return ssm.scale * (x @ ssm.C_bar.T).real + ssm.D * u

    def _operators(self, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """The direct form's real operators: B̄ as (P, H) mapping u to v = B̄u with rows
        (Re v_0, Im v_0, Re v_1, ...), 2C̃ as (H, P/2, 2) mapping (Re x̃_n, Im x̃_n) to y, and per
        state n the real (2L, 2L) matrix [[Re T_n, Im T_n], [-Im T_n, Re T_n]] of x̃_n = T_n v_n,
        T_n the Toeplitz matrix of Λ̄_n^m."""
        ssm = self.discrete()
        b_in = torch.view_as_real(ssm.B_bar).transpose(1, 2).reshape(-1, self.d_model)
        c_bar = ssm.scale * ssm.C_bar
        c_out = torch.stack([c_bar.real, -c_bar.imag], dim=-1)
        powers = toeplitz(vandermonde(torch.log(ssm.A_bar), length))  # Λ̄^m = exp(m log Λ̄)
        top = torch.cat([powers.real, powers.imag], dim=2)
        bottom = torch.cat([-powers.imag, powers.real], dim=2)
        return b_in, c_out, torch.cat([top, bottom], dim=1)

    def _direct(self, u: Tensor) -> Tensor:
        """The scan as products, all real: v = B̄u, [Re x̃_n, Im x̃_n] = [Re v_n, Im v_n] M_n,
        y = 2 Re(C̃ x̃) + D u. v comes out as (B, P/2, 2L), whose (B, 2L) slices per state the
        batched product reads in place."""
        batch, length, _ = u.shape
        b_in, c_out, blocks = frozen_memo(self, ("direct", length), lambda: self._operators(length))
        states = c_out.shape[1]
        v = (b_in.to(u.dtype) @ u.transpose(1, 2)).view(batch, states, 2 * length)
        x = torch.bmm(v.transpose(0, 1), blocks.to(u.dtype)).view(states, batch, 2, length)
        y = torch.einsum("nbsl,hns->blh", x, c_out.to(u.dtype))
        return y + self.D * u
