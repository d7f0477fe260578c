"""Mamba's selective scan (paper §2, eq. 6 and 10) in PyTorch: sequential, checkpointed, own
backward.

Per inner channel d, state n and step k, with Δ_k = softplus(delta_k + bias) (or delta_k):

    h_k = Ā_k ⊙ h_{k-1} + Δ_k u_k B_k,   Ā_k = exp(Δ_k A),   y_k = C_k · h_k + D u_k,
    out_k = y_k SiLU(z_k).

The recurrence is stepped one time index at a time, as written, so it is exact for any Δ (an
Ā_k that underflows to 0 forgets the state, as it should). What makes it fast on a CPU is the
layout: time runs over chunks of `CHUNK` steps whose (T, batch, N, D) blocks stay in cache; Ā
and Δ u B are formed for a whole chunk in one operation each, a step is one fused multiply-add
on a (batch, N, D) slice, and the contractions over N (y = C · h) and over D (∂C, ∂B) are
batched matrix products over the chunk, with D innermost so that they vectorise.

Backward runs the chunks in reverse, recomputing each chunk's states from the state entering it
(the only states kept), and steps the adjoint λ_k = C_k dy_k + Ā_{k+1} λ_{k+1} back in time.
Then ∂(Δu)_k = Σ_n λ_k B_k, ∂B_k = Σ_d λ_k Δ_k u_k, ∂C_k = Σ_d dy_k h_k, and through the decay
∂(log Ā_k) = λ_k ⊙ Ā_k ⊙ h_{k-1}, which gives ∂Δ_k = Σ_n A ⊙ ∂(log Ā_k) and ∂A = Σ_k Δ_k ∂(log Ā_k).
The full (batch, L, D, N) state never exists in either direction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ssmprobe.models.scan import linear_scan

# Steps per chunk: the states of one chunk are recomputed in backward, so memory is
# 4 · CHUNK · batch · N · D, independent of L.
CHUNK = 8
_COMPUTE_DTYPES = (torch.float32, torch.float64)


def step_size(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """Δ = softplus(delta + delta_bias) as the scan applies it; delta (B, D, L), bias (D,)."""
    if delta_bias is not None:
        delta = delta + delta_bias.unsqueeze(-1)
    return F.softplus(delta) if delta_softplus else delta


def _time_major(t: Tensor) -> Tensor:
    """(batch, C, L) -> contiguous (L, batch, C): one time step is one contiguous slice."""
    return t.permute(2, 0, 1).contiguous()


def _chunk_states(
    dt: Tensor, du: Tensor, B: Tensor, A_log2: Tensor, start: Tensor | None, work: list[Tensor]
) -> tuple[Tensor, Tensor]:
    """Ā (T, batch, N, D) in work[0] and the states h (same shape) in work[1] of one chunk.

    dt = Δ, du = Δu (T, batch, D); B (T, batch, N); A_log2 = A log2(e) as (N, D); start: the
    state entering the chunk (batch, N, D), None for zero.
    """
    length = dt.shape[0]
    # exp as exp2: several times faster on CPU, as accurate
    a_bar = torch.mul(dt[:, :, None, :], A_log2, out=work[0][:length]).exp2_()
    h = torch.mul(du[:, :, None, :], B[..., None], out=work[1][:length])
    if start is not None:
        h[0].addcmul_(a_bar[0], start)
    for k in range(1, length):
        h[k].addcmul_(a_bar[k], h[k - 1])
    return a_bar, h


def _chunks(length: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, length)) for s in range(0, length, chunk)]


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
        chunk: int,
    ) -> Tensor:
        # Everything runs time-major (L, batch, ·) and contiguous: elementwise work on the
        # (batch, D, L) views the block passes in is several times slower.
        u_t, B_t, C_t = _time_major(u), _time_major(B), _time_major(C)
        dt_t = _time_major(delta)
        if delta_bias is not None:
            dt_t = dt_t + delta_bias
        if delta_softplus:
            dt_t = F.softplus(dt_t)
        length, batch, dim = u_t.shape
        n = A.shape[1]
        A_log2 = (A * math.log2(math.e)).T.contiguous()
        du = dt_t * u_t
        work = [u.new_empty(chunk, batch, n, dim) for _ in range(2)]
        y_t = u.new_empty(length, batch, dim)
        chunks = _chunks(length, chunk)
        starts = u.new_empty(len(chunks) - 1, batch, n, dim)
        for i, (s, e) in enumerate(chunks):
            start = starts[i - 1] if i else None
            _, h = _chunk_states(dt_t[s:e], du[s:e], B_t[s:e], A_log2, start, work)
            torch.bmm(C_t[s:e].view(-1, 1, n), h.view(-1, n, dim), out=y_t[s:e].view(-1, 1, dim))
            if i < len(starts):
                starts[i].copy_(h[-1])
        if D is not None:
            y_t.addcmul_(u_t, D)
        z_t = None if z is None else _time_major(z)
        ctx.chunk = chunk
        ctx.delta_softplus = delta_softplus
        # Δ stands in for delta and its bias: softplus'(x) = σ(x) = 1 - exp(-softplus(x)).
        ctx.save_for_backward(u_t, dt_t, A, B_t, C_t, D, z_t, y_t, starts)
        out = y_t if z_t is None else F.silu(z_t).mul_(y_t)
        return out.permute(1, 2, 0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        u_t, dt_t, A, B_t, C_t, D, z_t, y_t, starts = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_t = _time_major(grad)
        grad_z = None
        if z_t is None:
            dy_t = grad_t
        else:  # out = y SiLU(z): ∂y = grad SiLU(z), ∂z = grad y σ(z)(1 + z(1 - σ(z)))
            sig = torch.sigmoid(z_t)
            dy_t = torch.mul(z_t, sig).mul_(grad_t)
            grad_z = torch.sub(1, sig).mul_(z_t).add_(1).mul_(sig).mul_(grad_t).mul_(y_t)
        length, batch, dim = u_t.shape
        n = A.shape[1]
        A_log2 = (A * math.log2(math.e)).T.contiguous()
        A_nd = A.T.contiguous()
        du = dt_t * u_t
        work = [u_t.new_empty(ctx.chunk, batch, n, dim) for _ in range(4)]
        grad_decay_dt = torch.empty_like(u_t)  # ∂Δ through Ā
        grad_du = torch.empty_like(u_t)
        grad_A = torch.zeros_like(A_nd) if need[2] else None
        grad_B = torch.empty_like(B_t) if need[3] else None
        grad_C = torch.empty_like(C_t) if need[4] else None
        chunks = _chunks(length, ctx.chunk)
        carry = None  # Ā_e λ_e, e the first step of the chunk after this one
        for i in reversed(range(len(chunks))):
            s, e = chunks[i]
            start = starts[i - 1] if i else None
            a_bar, h = _chunk_states(dt_t[s:e], du[s:e], B_t[s:e], A_log2, start, work)
            lam = torch.mul(C_t[s:e, :, :, None], dy_t[s:e, :, None, :], out=work[2][: e - s])
            if carry is not None:
                lam[-1].add_(carry)
            for k in range(e - s - 2, -1, -1):
                lam[k].addcmul_(a_bar[k + 1], lam[k + 1])
            carry = a_bar[0] * lam[0]
            # Products go to work buffers: a fresh (T, batch, N, D) tensor per product costs
            # more in page faults than the product itself. work[3] holds the ∂C and ∂B
            # products first, then the decay term.
            decay = work[3][: e - s]
            if grad_C is not None:
                torch.sum(torch.mul(h, dy_t[s:e, :, None, :], out=decay), -1, out=grad_C[s:e])
            if grad_B is not None:
                torch.sum(torch.mul(lam, du[s:e, :, None, :], out=decay), -1, out=grad_B[s:e])
            out = grad_du[s:e].view(-1, 1, dim)
            torch.bmm(B_t[s:e].view(-1, 1, n), lam.view(-1, n, dim), out=out)
            torch.mul(a_bar[1:], h[:-1], out=decay[1:])  # decay: λ_k Ā_k h_{k-1}
            if start is None:
                decay[0].zero_()
            else:
                torch.mul(a_bar[0], start, out=decay[0])
            decay.mul_(lam)
            if grad_A is not None:  # into work[1]: h is spent
                grad_A += torch.mul(decay, dt_t[s:e, :, None, :], out=h).sum((0, 1))
            torch.sum(decay.mul_(A_nd), 2, out=grad_decay_dt[s:e])
        grad_dt = grad_decay_dt.addcmul_(grad_du, u_t)  # + u Σ_n λ B
        grad_u = grad_du.mul_(dt_t)
        if D is not None:
            grad_u.addcmul_(dy_t, D)
        if ctx.delta_softplus:
            grad_dt.mul_(torch.neg(dt_t).expm1_().neg_())
        grad_D = (dy_t * u_t).sum((0, 1)) if need[5] else None
        grad_bias = grad_dt.sum((0, 1)) if need[7] else None

        def batch_major(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.permute(1, 2, 0)

        return (
            batch_major(grad_u),
            batch_major(grad_dt),
            None if grad_A is None else grad_A.T,
            batch_major(grad_B),
            batch_major(grad_C),
            grad_D,
            batch_major(grad_z),
            grad_bias,
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
    chunk: int = CHUNK,
) -> Tensor:
    """The selective scan of eq. 10 in mamba_ssm's layout, checkpointed every `chunk` steps.

    u, delta, z: (batch, D, L); A: (D, N) real; B, C: (batch, N, L); D, delta_bias: (D,).
    Returns y (batch, D, L) in the inputs' common dtype; half precision is computed in float32.
    Differentiable in every tensor argument.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    out_dtype = tensors[0].dtype
    for t in tensors[1:]:
        out_dtype = torch.promote_types(out_dtype, t.dtype)
    dtype = out_dtype if out_dtype in _COMPUTE_DTYPES else torch.float32

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
        chunk,
    )
    return y.to(out_dtype)


def full_state_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """`selective_scan`'s math with the whole (batch, L, D, N) state stored and one
    `linear_scan` over time."""
    dt = step_size(delta, delta_bias, delta_softplus).transpose(1, 2)  # (batch, L, D)
    a_bar = torch.exp(dt.unsqueeze(-1) * A)
    bu = (dt * u.transpose(1, 2)).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)
    h = linear_scan(a_bar, bu)
    return skip_and_gate(torch.einsum("bldn,bnl->bdl", h, C), u, D, z)


def skip_and_gate(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """The scan's output C·h (batch, D, L) with the skip D ⊙ u added and the gate SiLU(z)
    applied, each where given."""
    if D is not None:
        y = y + D.unsqueeze(-1) * u
    return y if z is None else y * F.silu(z)
