"""Mega's SSM and attention: the multi-dimensional damped EMA and its gated attention (Ma et al.).

EMA (paper eq. 9), per channel i with an N-dimensional expansion:

    x_k = α ⊙ β u_k + (1 - α ⊙ δ) ⊙ x_{k-1},   y_k = ηᵀ x_k + ω u_k,

with α = sigmoid(a), δ = sigmoid(d) ∈ (0, 1) from unconstrained a, d, and β, η, ω real. It is a
real diagonal SISO SSM that is already discrete (there is no step size; Δ is reported as 1):

    Ā = diag(1 - αδ) ∈ (0, 1),   B̄ = αβ,   C̄ = η,   D = ω,   scale = 1,

so y = K * u + ω u with the kernel K_k = Σ_n η_n (αβ)_n (1 - αδ)_n^k, a Vandermonde product
computed as exp(k · log(1 - αδ)), applied by a causal FFT convolution.

Gated attention (Mega §3.2, single head), X = u the block input and X' = SiLU(EMA(X)):

    Z = SiLU(X' W_z + b_z)                       shared representation, dim d_qk
    Q = κ_q ⊙ Z + μ_q,   K = κ_k ⊙ Z + μ_k
    V = SiLU(X W_v + b_v)                        dim d_v
    O = softmax(Q Kᵀ / sqrt(d_qk) + causal mask) V
    γ = SiLU(X' W_γ + b_γ)                       reset gate, dim d_v
    φ = sigmoid(X' W_φ + b_φ)                    update gate, dim d_model
    H = SiLU(X' W_h + (γ ⊙ O) U_h + b_h)
    Y = φ ⊙ H + (1 - φ) ⊙ X

Mega's own EMA module returns SiLU(K * u + ω u); here `EMA` stops at the linear SSM, so that it
is exactly the LTI system of `base.DiscreteSSM`, and `GatedAttention` applies the SiLU as its
first step. `EMA -> GatedAttention` is therefore Mega's sublayer. Left out of Mega: the
relative positional bias, chunking, dropout and the multi-head (bidirectional) EMA variants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssmprobe.models.base import ConvSSM, DiscreteSSM


class EMA(ConvSSM):
    """Multi-dimensional damped EMA (eq. 9): (B, L, H) -> (B, L, H), causal."""

    def __init__(self, d_model: int, d_state: int = 16) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        shape = (d_model, d_state)
        # Mega's init: α, δ logits ~ N(0, 0.2) (so αδ ≈ 1/4 at the start), β = ±1 alternating
        # over the state plus N(0, 0.02) noise, η, ω ~ N(0, 1). Mega multiplies η by a fixed
        # 1/sqrt(N) in its kernel; that factor is folded into η's init std so that C̄ = η exactly.
        self.alpha_logit = nn.Parameter(0.2 * torch.randn(shape))
        self.delta_logit = nn.Parameter(0.2 * torch.randn(shape))
        signs = torch.ones(d_state)
        signs[1::2] = -1.0
        self.beta = nn.Parameter(signs + 0.02 * torch.randn(shape))
        self.eta = nn.Parameter(torch.randn(shape) / d_state**0.5)
        self.omega = nn.Parameter(torch.randn(d_model))

    def _coefficients(self) -> tuple[Tensor, Tensor]:
        """α and log(1 - αδ), both (H, N)."""
        alpha = torch.sigmoid(self.alpha_logit)
        damping = alpha * torch.sigmoid(self.delta_logit)
        # log1p keeps log(1 - αδ) accurate for small αδ (slow decay), where Ā^k for large k is
        # most sensitive; the clamp keeps it finite, and its gradient free of NaN, when both
        # sigmoids round to 1.
        eps = torch.finfo(damping.dtype).eps
        return alpha, torch.log1p(-damping.clamp_max(1 - eps))

    def discrete(self) -> DiscreteSSM:
        alpha, log_decay = self._coefficients()
        a_bar = torch.exp(log_decay)
        return DiscreteSSM(
            A_bar=a_bar,
            B_bar=alpha * self.beta,
            C_bar=self.eta,
            D=self.omega,
            dt=torch.ones_like(self.omega),
            eigvals=a_bar,
            scale=1.0,
        )

    def impulse_response(self, length: int) -> Tensor:
        alpha, log_decay = self._coefficients()
        steps = torch.arange(length, dtype=log_decay.dtype, device=log_decay.device)
        powers = torch.exp(log_decay[..., None] * steps)  # Ā^k: (H, N, L)
        return torch.einsum("hn,hnl->hl", self.eta * alpha * self.beta, powers)

    @property
    def skip(self) -> Tensor:
        return self.omega


class GatedAttention(nn.Module):
    """Mega's single-head gated attention, causal: (ema_out, u) -> (B, L, d_model).

    `ema_out` is the linear EMA output (the SiLU is applied here) and `u` the block input X.
    """

    def __init__(self, d_model: int, d_qk: int = 64, d_v: int | None = None) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_qk = d_qk
        self.d_v = d_model if d_v is None else d_v
        # Every projection of X' in one matmul, output split as [φ | Z | γ | H part]; its bias
        # holds b_φ, b_z, b_γ, b_h.
        self.ema_proj = nn.Linear(d_model, 2 * d_model + d_qk + self.d_v)
        self.v_proj = nn.Linear(d_model, self.d_v)  # W_v, b_v
        self.h_proj = nn.Linear(self.d_v, d_model, bias=False)  # U_h
        self.qk_gain = nn.Parameter(torch.empty(2, d_qk))  # κ_q, κ_k
        self.qk_bias = nn.Parameter(torch.empty(2, d_qk))  # μ_q, μ_k
        # Mega's init: weights and κ ~ N(0, 0.02), biases and μ zero.
        for weight in (self.ema_proj.weight, self.v_proj.weight, self.h_proj.weight, self.qk_gain):
            nn.init.normal_(weight, std=0.02)
        for bias in (self.ema_proj.bias, self.v_proj.bias, self.qk_bias):
            nn.init.zeros_(bias)

    def forward(self, ema_out: Tensor, u: Tensor) -> Tensor:
        x_prime = F.silu(ema_out)
        update, zr, hx = torch.split(
            self.ema_proj(x_prime), [self.d_model, self.d_qk + self.d_v, self.d_model], dim=-1
        )
        z, reset = torch.split(F.silu(zr), [self.d_qk, self.d_v], dim=-1)
        q, k = torch.unbind(z.unsqueeze(-2) * self.qk_gain + self.qk_bias, dim=-2)
        v = F.silu(self.v_proj(u))
        # Default scale is 1/sqrt(d_qk); is_causal masks keys after the query's step.
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = F.silu(hx + self.h_proj(reset * o))
        # φ ⊙ H + (1 - φ) ⊙ X, written so that mixed float32/bfloat16 operands promote (lerp
        # demands one dtype, which autocast does not give it).
        return u + torch.sigmoid(update) * (h - u)
