"""DSS: a diagonal state space per channel, ZOH-discretised (paper eq. 6-7).

For each channel h, with A = diag(λ) (Re λ < 0), B = 1 (DSS learns no B) and C = W:

    Ā = exp(λΔ),   B̄ = (Ā - 1)(λΔ)^{-1} Δ B = Δ φ₁(λΔ),   C̄ = W            (eq. 6-7)
    K_k = 2 Re Σ_n W_n B̄_n exp(λ_n Δ k),   y = K * u + D u,                  (eq. 5)

keeping one λ of each complex-conjugate pair (hence the factor 2). λ starts at the eigenvalues
of the normal part of HiPPO-LegS; the kernel is a Vandermonde product (all k at once) and the
convolution runs via FFT. B̄ uses the stable φ₁, not the naive quotient (§4.1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssmprobe.models import discretize, hippo
from ssmprobe.models.base import (
    LTISSM,
    DiscreteSSM,
    as_complex,
    fft_causal_conv,
    real_parameter,
    stable_eigenvalues,
    vandermonde_kernel,
)


class DSS(LTISSM):
    """Diagonal SSM (DSS-exp) with ZOH: (B, L, H) -> (B, L, H)."""

    def __init__(
        self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1
    ) -> None:
        super().__init__()
        self.d_model = d_model
        lam = hippo.legs_nplr(d_state)[0].expand(d_model, -1)  # (H, N/2)
        self.log_neg_real = real_parameter(torch.log(-lam.real))
        self.imag = real_parameter(lam.imag)
        # W = C, complex standard normal (E|W|² = 1).
        self.W = real_parameter(torch.randn(d_model, d_state // 2, dtype=torch.complex128))
        self.log_dt = real_parameter(torch.log(hippo.log_uniform((d_model,), dt_min, dt_max)))
        self.D = real_parameter(torch.randn(d_model, dtype=torch.float64))

    def _lambda_dt(self) -> tuple[Tensor, Tensor]:
        """Continuous λ (H, N/2) and Δ (H, 1)."""
        lam = stable_eigenvalues(self.log_neg_real, self.imag)
        return lam, torch.exp(self.log_dt).unsqueeze(-1)

    def discrete(self) -> DiscreteSSM:
        lam, dt = self._lambda_dt()
        a_bar, b_bar = discretize.zoh(lam, dt)  # B = 1, so B̄ = Δ φ₁(λΔ)
        return DiscreteSSM(
            A_bar=a_bar,
            B_bar=b_bar,
            C_bar=as_complex(self.W),
            D=self.D,
            dt=dt.squeeze(-1),
            eigvals=a_bar,
            scale=2.0,
        )

    def impulse_response(self, length: int) -> Tensor:
        lam, dt = self._lambda_dt()
        _, b_bar = discretize.zoh(lam, dt)
        return vandermonde_kernel(lam * dt, as_complex(self.W), b_bar, length)

    def forward(self, u: Tensor) -> Tensor:
        kernel = self.impulse_response(u.shape[1])  # (H, L)
        y = fft_causal_conv(u.transpose(1, 2), kernel).transpose(1, 2)
        return y + self.D * u
