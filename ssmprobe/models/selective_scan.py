"""Mamba's selective scan (paper §2, eq. 6 and 10) in PyTorch: chunked, fused, own backward.

Per inner channel d, state n and step k, with Δ_k = softplus(delta_k + bias) (or delta_k):

    h_k = exp(Δ_k A) ⊙ h_{k-1} + Δ_k u_k B_k,   y_k = C_k · h_k + D u_k,   out_k = y_k SiLU(z_k).

A is constant in time, so log Ā_k = Δ_k A is exact and the decay from step j to step k is
exp(A (c_k - c_j)) with c_k = Δ_0 + … + Δ_k. Within a chunk of T steps entered with state
h_start, and any offset m per channel,

    E_k = exp(A (c_k - m)),   P_k = h_start / E_{-1} + Σ_{j≤k} Δ_j u_j B_j / E_j,   h_k = E_k P_k,

(E_{-1} = exp(-A m)), so a chunk is one exp, one cumsum and a few products over its
(batch, D, N, T) block, contracted with C at once: the full (batch, L, D, N) state never
exists. m is the middle of c's range in the chunk, and chunks end where |A|·(c_k - c_j) would
leave `_LOG_RANGE`, so E and 1/E stay finite (a single step is always a valid chunk: its own
decay, however large, only scales h_start, where underflow to 0 is the right answer).

Backward runs the chunks in reverse, recomputing each from its saved h_start. The adjoint
λ_k = C_k dy_k + Ā_{k+1} λ_{k+1} has the same form reversed in time: λ_k E_k = Q_k =
Σ_{j≥k} E_j C_j dy_j + E_{T-1} Ā_T λ_T. Then ∂(Δu B)_k = λ_k and, because E_k/E_{k-1} = Ā_k,
∂(log Ā_k) = λ_k ⊙ Ā_k h_{k-1} = Q_k ⊙ P_{k-1}, free of E. Only the inputs, the chunk
boundaries' states and the pre-gate output are kept for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Largest |A|·(c_k - c_j) within a chunk, so every E_k lies in e^{±LOG_RANGE/2}. The exponent
# is rounded once, so each factor carries a relative error of about eps · LOG_RANGE/2.
_LOG_RANGE = {torch.float64: 400.0, torch.float32: 32.0}
MAX_CHUNK = 32


def step_size(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """Δ = softplus(delta + delta_bias) as the scan applies it; delta (B, D, L), bias (D,)."""
    if delta_bias is not None:
        delta = delta + delta_bias.unsqueeze(-1)
    return F.softplus(delta) if delta_softplus else delta


def _chunks(dt: Tensor, A: Tensor, max_len: int) -> list[tuple[int, int]]:
    """Split [0, L) into runs [s, e) of at most max_len steps whose decay stays in range.

    The run may grow while max over (batch, d) of max_n |A_dn| · Σ_{s<i<e} |Δ_i| <= the range;
    step s itself does not count, since its decay only multiplies the incoming state.
    """
    limit = _LOG_RANGE[dt.dtype]
    rate = dt.abs() * A.abs().amax(-1, keepdim=True)  # (batch, D, L)
    cum = rate.to(torch.float64).cumsum(-1).flatten(0, 1)
    length = dt.shape[-1]
    bounds, start = [], 0
    while start < length:
        window = cum[:, start : start + max_len]
        spread = (window - window[:, :1]).amax(0)  # non-decreasing along the window
        end = start + max(1, int((spread <= limit).sum()))  # max(1, ·): NaN inputs still end
        bounds.append((start, end))
        start = end
    return bounds


def _chunk_states(
    dt: Tensor, du: Tensor, A: Tensor, B: Tensor, start: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """E (batch, D, N, T), P (batch, D, N, T+1) with P[..., k+1] = P_k and P[..., 0] = P_{-1},
    and 1/E_{-1} (batch, D, N) for one chunk: dt, du = Δu (batch, D, T), B (batch, N, T),
    start = h_start (batch, D, N)."""
    c = dt.to(torch.float64).cumsum(-1)  # float64: the differences c_k - c_j stay exact
    mid = (c.amax(-1, keepdim=True) + c.amin(-1, keepdim=True)) / 2
    c = (c - mid).to(dt.dtype)
    E = torch.exp(A[:, :, None] * c[:, :, None, :])
    inv_start = torch.exp(A * mid.to(dt.dtype))  # 1/E_{-1}; underflows to 0 after a huge Δ_0
    P = E.new_empty(*E.shape[:-1], E.shape[-1] + 1)
    torch.mul(start, inv_start, out=P[..., 0])
    torch.mul(du[:, :, None, :], B[:, None], out=P[..., 1:])
    P[..., 1:].div_(E)
    return E, P.cumsum_(-1), inv_start


def _dsilu(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Tensor | None,
        z: Tensor | None,
        delta_bias: Tensor | None,
        delta_softplus: bool,
        max_chunk: int,
    ) -> Tensor:
        u, delta, B, C = u.contiguous(), delta.contiguous(), B.contiguous(), C.contiguous()
        batch, dim, length = u.shape
        dt = step_size(delta, delta_bias, delta_softplus)
        du = dt * u
        chunks = _chunks(dt, A, max_chunk)
        starts = u.new_empty(len(chunks), batch, dim, A.shape[1])
        h = u.new_zeros(batch, dim, A.shape[1])
        y = torch.empty_like(u)
        for i, (s, e) in enumerate(chunks):
            starts[i] = h
            E, P, _ = _chunk_states(dt[..., s:e], du[..., s:e], A, B[..., s:e], h)
            states = P[..., 1:].mul_(E)
            h = states[..., -1].clone()
            torch.sum(states.mul_(C[:, None, :, s:e]), 2, out=y[..., s:e])
        if D is not None:
            y.addcmul_(D.unsqueeze(-1), u)
        ctx.chunks = chunks
        ctx.delta_softplus = delta_softplus
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, starts, y)
        return y if z is None else y * F.silu(z)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        u, delta, A, B, C, D, z, delta_bias, starts, y = ctx.saved_tensors
        need = ctx.needs_input_grad
        dt = step_size(delta, delta_bias, ctx.delta_softplus)
        du = dt * u
        dy = grad.contiguous() if z is None else grad * F.silu(z)
        grad_dt = torch.zeros_like(u)  # ∂Δ through the decay, then all of it
        grad_du = torch.empty_like(u)  # ∂(Δu) = Σ_n λ B
        grad_A = torch.zeros_like(A) if need[2] else None
        grad_B = torch.empty_like(B) if need[3] else None
        grad_C = torch.empty_like(C) if need[4] else None
        carry = u.new_zeros(starts.shape[1:])  # Ā_T λ_T from the chunk after this one
        for i, (s, e) in reversed(list(enumerate(ctx.chunks))):
            E, P, inv_start = _chunk_states(dt[..., s:e], du[..., s:e], A, B[..., s:e], starts[i])
            Q = dy[:, :, None, s:e] * C[:, None, :, s:e]
            Q.mul_(E)
            Q[..., -1].addcmul_(E[..., -1], carry)
            Q = Q.flip(-1).cumsum_(-1).flip(-1)  # Q_k = λ_k E_k: a suffix sum, summed from the end
            if need[1] or need[2]:
                decay = Q * P[..., :-1]  # ∂ log Ā_k
                grad_dt[..., s:e] = (decay * A[..., None]).sum(2)
                if grad_A is not None:
                    grad_A += (decay * dt[:, :, None, s:e]).sum((0, 3))
            if grad_C is not None:
                states = P[..., 1:].mul_(E)
                torch.sum(states.mul_(dy[:, :, None, s:e]), 1, out=grad_C[..., s:e])
            carry = Q[..., 0] * inv_start
            lam = Q.div_(E)
            if grad_B is not None:
                torch.sum(du[:, :, None, s:e] * lam, 1, out=grad_B[..., s:e])
            torch.sum(lam.mul_(B[:, None, :, s:e]), 2, out=grad_du[..., s:e])
        grad_dt.addcmul_(grad_du, u)
        grad_u = grad_du.mul_(dt)
        if D is not None:
            grad_u.addcmul_(dy, D.unsqueeze(-1))
        if ctx.delta_softplus:
            pre = delta if delta_bias is None else delta + delta_bias.unsqueeze(-1)
            grad_dt.mul_(torch.sigmoid(pre))
        return (
            grad_u,
            grad_dt,
            grad_A,
            grad_B,
            grad_C,
            None if D is None or not need[5] else (dy * u).sum((0, 2)),
            None if z is None or not need[6] else grad * y * _dsilu(z),
            None if delta_bias is None or not need[7] else grad_dt.sum((0, 2)),
            None,
            None,
        )


def chunked_selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    max_chunk: int = MAX_CHUNK,
) -> Tensor:
    """The selective scan of eq. 10 in mamba_ssm's layout, in chunks of <= max_chunk steps.

    u, delta, z: (batch, D, L); A: (D, N) real; B, C: (batch, N, L); D, delta_bias: (D,).
    Returns y (batch, D, L) in the inputs' common dtype; half precision is computed in float32.
    Differentiable in every tensor argument.
    """
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    out_dtype = tensors[0].dtype
    for t in tensors[1:]:
        out_dtype = torch.promote_types(out_dtype, t.dtype)
    dtype = out_dtype if out_dtype in _LOG_RANGE else torch.float32

    def cast(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(dtype)

    y = _SelectiveScan.apply(
        cast(u),
        cast(delta),
        cast(A),
        cast(B),
        cast(C),
        cast(D),
        cast(z),
        cast(delta_bias),
        delta_softplus,
        max_chunk,
    )
    return y.to(out_dtype)
