"""S4: HiPPO-LegS in normal-plus-low-rank form, bilinear discretisation, convolution kernel.

Continuous SSM per channel h (paper eq. 1-2) in LegS's eigenbasis. The parameters hold one
member of each conjugate pair (Λ, P̃, B̃, C of size N/2); the system uses both members,

    A = diag(Λ, Λ̄) - p p*,   p = (P̃, P̃̄),   B = (B̃, B̃̄),   C = (C, C̄),   Re Λ < 0,

so that at initialisation (`hippo.legs_nplr(N)`) A is exactly HiPPO-LegS written in the
unitary basis (V, V̄), and y = C x + D u is real (scale 1). Keeping only the N/2 half with the
low-rank term inside it would drop the term's coupling between conjugate halves and is not LegS.

Bilinear discretisation (eq. 3-4):

    Ā = (I - Δ/2 A)^{-1} (I + Δ/2 A),   B̄ = (I - Δ/2 A)^{-1} Δ B̃,   C̄ = C.

The output (eq. 5) is y = K * u + D u with the kernel K_k = Re(C̄ Ā^k B̄), k < L, computed
from its truncated generating function at the roots of unity ω_j = exp(-2iφ_j), φ_j = πj/L:

    K̂(ω) = Σ_{k<L} C̄ Ā^k B̄ ω^k = C̃ (I - Āω)^{-1} B̄,   C̃ = C̄ (I - Ā^L)   (as ω^L = 1)
          = 2 C̃ [(2/Δ)(1 - ω) - (1 + ω) A]^{-1} B̃ = e^{iφ} C̃ [s - cA]^{-1} B̃,

with s = (2/Δ) i sin φ and c = cos φ (half-angle form: bounded, no pole at ω = -1). Woodbury
on s - cA = R^{-1} + c p p*, R = diag(1 / (s - cΛ)), gives

    K̂ = e^{iφ} [k_CB - c k_CP k_PB / (1 + c k_PP)],   k_XY = Σ_n X_n Y_n / (s - cΛ_n),

for X ∈ {C̃, p*}, Y ∈ {B, p}, and K = Re(iDFT(K̂)) (real up to rounding). I - Ā^L is formed
from I - Ā by repeated squaring, never as a difference of matrices close to I, so small Δ keeps
float32 accuracy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ssmprobe.models import hippo
from ssmprobe.models.base import (
    ConvSSM,
    DiscreteSSM,
    as_complex,
    real_parameter,
    stable_eigenvalues,
)


def _deficit_power(deficit: Tensor, power: int) -> Tensor:
    """I - Ā^power from deficit = I - Ā, by repeated squaring on deficits.

    Uses I - Ā^(m+n) = E_m + E_n - E_m E_n with E_m = I - Ā^m, so that I - Ā^L is never formed
    as a difference of two matrices close to I (Ā ≈ I for small Δ).
    """
    result = None
    while True:
        if power & 1:
            result = deficit if result is None else result + deficit - result @ deficit
        power >>= 1
        if not power:
            return result
        deficit = 2 * deficit - deficit @ deficit


class S4(ConvSSM):
    """S4 layer (NPLR A, bilinear, FFT convolution): (B, L, H) -> (B, L, H).

    With `shared`, Λ, P̃ and B̃ are one set of parameters for all channels (as in the paper's
    reference code; C, Δ and D stay per channel); otherwise each channel trains its own."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        shared: bool = False,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        lam, p, b, _ = hippo.legs_nplr(d_state)
        half = d_state // 2
        copies = (1 if shared else d_model, half)
        self.log_neg_re_lam = real_parameter(torch.log(-lam.real).expand(copies))
        self.im_lam = real_parameter(lam.imag.expand(copies))
        self.P = real_parameter(p.expand(copies))
        self.B = real_parameter(b.expand(copies))
        self.C = real_parameter(torch.randn(d_model, half, dtype=torch.complex128))
        self.log_dt = real_parameter(torch.log(hippo.log_uniform((d_model,), dt_min, dt_max)))
        self.D = real_parameter(torch.randn(d_model, dtype=torch.float64))

    def continuous(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(Λ, p, B, C), each complex (H, N) with conjugate halves: A = diag(Λ) - p p*."""
        lam = stable_eigenvalues(self.log_neg_re_lam, self.im_lam)
        halves = (lam, *(as_complex(x) for x in (self.P, self.B, self.C)))
        halves = tuple(x.expand(self.d_model, -1) for x in halves)  # shared: one row for all
        return tuple(torch.cat([x, x.conj()], dim=-1) for x in halves)  # type: ignore[return-value]

    def _bilinear(self, lam: Tensor, p: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """(I - Ā, B̄) of eq. 3-4 from one solve: I - Ā = -(I - Δ/2 A)^{-1} Δ A.

        Returning I - Ā rather than Ā keeps its full relative precision when Δ is small.
        """
        dt = torch.exp(self.log_dt)
        a = torch.diag_embed(lam) - p[..., :, None] * p.conj()[..., None, :]
        dt_a = dt[:, None, None] * a
        eye = torch.eye(lam.shape[-1], dtype=lam.dtype, device=lam.device)
        rhs = torch.cat([-dt_a, (dt[:, None] * b)[..., None]], dim=-1)
        solved = torch.linalg.solve(eye - dt_a / 2, rhs)
        return solved[..., :-1], solved[..., -1]

    def discrete(self) -> DiscreteSSM:
        lam, p, b, c = self.continuous()
        deficit, b_bar = self._bilinear(lam, p, b)
        a_bar = torch.eye(lam.shape[-1], dtype=lam.dtype, device=lam.device) - deficit
        return DiscreteSSM(
            A_bar=a_bar,
            B_bar=b_bar,
            C_bar=c,
            D=self.D,
            dt=torch.exp(self.log_dt),
            eigvals=torch.linalg.eigvals(a_bar),
            scale=1.0,
        )

    def impulse_response(self, length: int) -> Tensor:
        lam, p, b, c = self.continuous()
        deficit, _ = self._bilinear(lam, p, b)
        # C̃ = C̄ (I - Ā^L) makes the length-L generating function exact for any L.
        c_tilde = (c[:, None, :] @ _deficit_power(deficit, length))[:, 0]
        # Cauchy denominators s - cΛ in real arithmetic (much faster than complex ops on CPU).
        phi = torch.arange(length, dtype=self.log_dt.dtype, device=lam.device) * (math.pi / length)
        cos = torch.cos(phi)
        s_im = (2 / torch.exp(self.log_dt))[:, None] * torch.sin(phi)  # (H, L)
        den_re = -cos * lam.real[..., None]  # (H, N, L)
        den_im = s_im[:, None, :] - cos * lam.imag[..., None]
        inv_abs2 = 1 / (den_re.square() + den_im.square())
        cauchy = torch.complex(den_re * inv_abs2, -den_im * inv_abs2)
        # The four Cauchy sums in one batched matmul: rows X_n Y_n for (C̃B, C̃p, p*B, p*p).
        left = torch.stack([c_tilde, p.conj()], dim=1)
        right = torch.stack([b, p], dim=1)
        products = (left[:, :, None, :] * right[:, None, :, :]).flatten(1, 2)  # (H, 4, N)
        k_cb, k_cp, k_pb, k_pp = (products @ cauchy).unbind(1)
        k_hat = torch.polar(torch.ones_like(phi), phi) * (
            k_cb - cos * k_cp * k_pb / (1 + cos * k_pp)
        )
        return torch.fft.ifft(k_hat, dim=-1).real

    @property
    def skip(self) -> Tensor:
        return self.D
