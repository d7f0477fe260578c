"""DSS: a diagonal state space per channel, ZOH-discretised (paper eq. 6; eq. 7 as an option).

For each channel h, with A = diag(λ) (Re λ < 0), B = 1 (DSS learns no B), C = W and z = λΔ:

    Ā = exp(z),   K_k = 2 Re Σ_n W_n B̄_n exp(z_n k),   y = K * u + D u   (k < L, eq. 5)

keeping one λ of each complex-conjugate pair (hence the factor 2). `b_norm` picks B̄:

- "exp" (default; Gupta et al.'s DSS-exp): the ZOH of eq. 6,
  B̄ = (Ā - 1)(λΔ)^{-1} Δ B = (e^z - 1)/λ = Δ φ₁(z), computed with the stable φ₁ (§4.1).
- "softmax" (Gupta et al.'s DSS-softmax, which is eq. 7, and what state-spaces' `SSKernelDiag`
  computes with disc="dss"): B̄ = (e^z - 1)/(λ (e^{Lz} - 1)),
  i.e. λ^{-1} times the softmax weight 1/Σ_{k<L} e^{kz} (Σ_{k<L} e^{kz} = (e^{Lz} - 1)/(e^z - 1)).
  L is the length of the kernel, the input's length in `forward`, so B̄ changes with L;
  `discrete_at(L)` gives it and `discrete()` refuses to guess L. Computed as
  Δ φ₁(z) / expm1(Lz): both factors keep full precision as Δ -> 0, where B̄ -> 1/(Lλ); Re λ < 0
  keeps |e^{Lz}| < 1, so the denominator never vanishes.

The normalisation is absorbed by C, per state n, so both options span the same kernels:

    B̄ⁿ_softmax = B̄ⁿ_exp / s_n,   s_n = e^{L z_n} - 1 = (e^{z_n} - 1) Σ_{k<L} e^{k z_n}  (≠ 0),
    K_k = 2 Re Σ_n W_n B̄ⁿ_softmax e^{k z_n} = 2 Re Σ_n (W_n / s_n) B̄ⁿ_exp e^{k z_n},

so the DSS-softmax layer with weights W has the kernel of the DSS-exp layer with W_n / s_n (and
DSS-exp with W that of DSS-softmax with W_n s_n): the same function class at each L (s depends
on L, so one set of weights run at another length than it was trained at does differ between
the two). Only the parametrisation differs: the gradients, hence training, and the values of
the factors C̄ and B̄.
Every product C̄ Ā^j B̄ = h_j and Ā itself are the same, so each bound of Theorem 4.1.1 (kernel,
eigenvalue and spectral forms: functions of h and of Ā's eigenvalues) is too; only factor-wise
quantities such as ||C̄||·||B̄|| (§4.1's remark on Δ -> 0) change.

λ starts at the eigenvalues of the normal part of HiPPO-LegS; the kernel is a Vandermonde
product (all k at once) and the convolution runs via FFT.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssmprobe.models import discretize, hippo
from ssmprobe.models.base import (
    ConvSSM,
    DiscreteSSM,
    as_complex,
    real_parameter,
    stable_eigenvalues,
    vandermonde_kernel,
)

B_NORMS = ("exp", "softmax")


def softmax_factor(z: Tensor, length: int) -> Tensor:
    """s = e^{Lz} - 1 = (e^z - 1) Σ_{k<L} e^{kz}: DSS-exp's B̄ over DSS-softmax's (eq. 7)."""
    return discretize.expm1(length * z)


class DSS(ConvSSM):
    """Diagonal SSM with ZOH, DSS-exp or DSS-softmax (`b_norm`): (B, L, H) -> (B, L, H)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        b_norm: str = "exp",
    ) -> None:
        super().__init__()
        if b_norm not in B_NORMS:
            raise ValueError(f"b_norm must be one of {B_NORMS}, got {b_norm!r}")
        self.d_model = d_model
        self.b_norm = b_norm
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

    def _b_bar(self, lam: Tensor, dt: Tensor, length: int) -> Tensor:
        """B̄ (H, N/2) for a kernel of `length` steps (module docstring)."""
        _, b_bar = discretize.zoh(lam, dt)  # B = 1, so B̄ = Δ φ₁(λΔ)
        if self.b_norm == "softmax":
            return b_bar / softmax_factor(lam * dt, length)
        return b_bar

    def discrete(self) -> DiscreteSSM:
        """DSS-exp's discrete parameters; DSS-softmax's depend on L: use `discrete_at(L)`."""
        if self.b_norm == "softmax":
            raise ValueError(
                "DSS-softmax's B̄ (eq. 7) depends on the sequence length L: call discrete_at(L)"
            )
        return self.discrete_at(1)  # DSS-exp's B̄ is the same for every L

    def discrete_at(self, length: int) -> DiscreteSSM:
        lam, dt = self._lambda_dt()
        a_bar = torch.exp(lam * dt)
        return DiscreteSSM(
            A_bar=a_bar,
            B_bar=self._b_bar(lam, dt, length),
            C_bar=as_complex(self.W),
            D=self.D,
            dt=dt.squeeze(-1),
            eigvals=a_bar,
            scale=2.0,
        )

    def impulse_response(self, length: int) -> Tensor:
        lam, dt = self._lambda_dt()
        b_bar = self._b_bar(lam, dt, length)
        return vandermonde_kernel(lam * dt, as_complex(self.W), b_bar, length)

    @property
    def skip(self) -> Tensor:
        return self.D
