"""Mamba's selective scan (paper §2, eq. 6 and 10) in PyTorch: chunked, fused, own backward.

Per inner channel d, state n and step k, with Δ_k = softplus(delta_k + bias) (or delta_k):

    h_k = exp(Δ_k A) ⊙ h_{k-1} + Δ_k u_k B_k,   y_k = C_k · h_k + D u_k,   out_k = y_k SiLU(z_k).

A is constant in time, so log Ā_k = Δ_k A is exact and the decay from step j to step k is
exp(A (c_k - c_j)) with c_k = Δ_0 + … + Δ_k. Within a chunk of T steps entered with state
h_start, and any offset m per channel,

    E_k = exp(A (c_k - m)),   P_k = h_start / E_{-1} + Σ_{j≤k} Δ_j u_j B_j / E_j,   h_k = E_k P_k,

(E_{-1} = exp(-A m)), so a chunk is one exponential, one cumsum and a few products over its
(batch, D, N, T) block, contracted with C at once: the full (batch, L, D, N) state never
exists. m is the middle of c's range in the chunk, and chunks end where |A|·(c_k - c_j) would
leave `_LOG_RANGE`, so E and 1/E stay finite (a single step is always a valid chunk: its own
decay, however large, only scales h_start, where underflow to 0 is the right answer). On CPU
the batch is cut into tiles of rows whose blocks stay in cache, each with its own chunks.

Backward runs the chunks in reverse, recomputing each from its saved h_start. The adjoint
λ_k = C_k dy_k + Ā_{k+1} λ_{k+1} has the same form reversed in time: λ_k E_k = Q_k =
Σ_{j≥k} E_j C_j dy_j + E_{T-1} Ā_T λ_T. Then ∂(Δu B)_k = λ_k and, because E_k/E_{k-1} = Ā_k,
∂(log Ā_k) = λ_k ⊙ Ā_k h_{k-1} = Q_k ⊙ P_{k-1}, free of E. Only the inputs, Δ, the states
entering the chunks and the pre-gate output are kept for backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .scan import linear_scan

# Largest |A|·(c_k - c_j) within a chunk, so every E_k lies in e^{±LOG_RANGE/2}. The exponent
# is rounded once, so each factor carries a relative error of about eps · LOG_RANGE/2.
_LOG_RANGE = {torch.float64: 400.0, torch.float32: 64.0}
MAX_CHUNK = 16
# Elements of one (rows, D, N, T) block on CPU: a tile of batch rows whose few blocks stay in
# cache. Larger tiles are memory-bound, smaller ones pay Python overhead per op.
_TILE = 1 << 20


def step_size(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """Δ = softplus(delta + delta_bias) as the scan applies it; delta (B, D, L), bias (D,)."""
    if delta_bias is not None:
        delta = delta + delta_bias.unsqueeze(-1)
    return F.softplus(delta) if delta_softplus else delta


def _chunks(dt: Tensor, A: Tensor, max_len: int) -> list[tuple[int, int]]:
    """Split [0, L) into runs [s, e) of at most max_len steps whose decay stays in range.

    A run may grow while max over (batch, d) of max_n |A_dn| · Σ_{s<i<e} |Δ_i| <= the range;
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


def _tiles(u: Tensor, n: int, max_chunk: int, buffers: int) -> tuple[list[slice], list[Tensor]]:
    """Batch slices of at most `_TILE` elements per (rows, D, N, max_chunk + 1) block on CPU
    (the whole batch elsewhere), and flat buffers for such blocks, reused by every chunk."""
    batch, dim, _ = u.shape
    per_row = dim * n * (max_chunk + 1)
    rows = max(1, min(batch, _TILE // per_row)) if u.device.type == "cpu" else batch
    work = [u.new_empty(rows * per_row) for _ in range(buffers)]
    return [slice(i, min(i + rows, batch)) for i in range(0, batch, rows)], work


def _block(buffer: Tensor, *shape: int) -> Tensor:
    """A contiguous view of the given shape at the start of a flat buffer."""
    return buffer[: math.prod(shape)].view(shape)


def _chunk_states(
    dt: Tensor, du: Tensor, A: Tensor, B: Tensor, start: Tensor | None, work: list[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """E (rows, D, N, T) in work[0]; P (rows, D, N, T+1) in work[1], P[..., k+1] = P_k and
    P[..., 0] = P_{-1}, so h_k = E_k P[..., k+1]; and 1/E_{-1} (rows, D, N).

    One chunk: dt = Δ, du = Δu (rows, D, T); B (rows, N, T); start = h_start (rows, D, N),
    None for a zero state.
    """
    rows, dim, length = dt.shape
    shape = (rows, dim, A.shape[1], length)
    c = dt.to(torch.float64).cumsum(-1)  # float64, so c_k - c_j keeps its digits
    mid = (c.amax(-1, keepdim=True) + c.amin(-1, keepdim=True)) / 2
    c = (c - mid).to(dt.dtype)
    A = A * math.log2(math.e)  # exp as exp2: several times faster on CPU, as accurate
    E = torch.mul(A[:, :, None], c[:, :, None, :], out=_block(work[0], *shape)).exp2_()
    inv_start = torch.exp2(A * mid.to(dt.dtype))  # 0 after a huge Δ_0: h_start is forgotten
    P = _block(work[1], *shape[:-1], length + 1)
    if start is None:
        P[..., 0].zero_()
    else:
        torch.mul(start, inv_start, out=P[..., 0])
    torch.mul(du[:, :, None, :], B[:, None], out=P[..., 1:]).div_(E)
    P.view(-1, length + 1).cumsum_(-1)
    return E, P, inv_start


@dataclass
class _Inputs:
    """What every chunk reads: dt = Δ and du = Δu (batch, D, L); B, C (batch, N, L); A (D, N)."""

    dt: Tensor
    du: Tensor
    B: Tensor
    C: Tensor
    A: Tensor


def _forward_tile(
    x: _Inputs, rows: slice, y: Tensor, max_chunk: int, work: list[Tensor]
) -> tuple[list[tuple[int, int]], Tensor]:
    """Writes Σ_n C_k h_k into y for a slice of batch rows; returns the slice's chunks and the
    states entering chunks 1, 2, … (chunk 0 starts from zero)."""
    dt, du, B, C = x.dt[rows], x.du[rows], x.B[rows], x.C[rows]
    chunks = _chunks(dt, x.A, max_chunk)
    starts = dt.new_empty(max(len(chunks) - 1, 0), *dt.shape[:2], x.A.shape[1])
    for i, (s, e) in enumerate(chunks):
        start = starts[i - 1] if i else None
        E, P, _ = _chunk_states(dt[..., s:e], du[..., s:e], x.A, B[..., s:e], start, work)
        states = P[..., 1:].mul_(E)
        if i < len(starts):
            starts[i].copy_(states[..., -1])
        torch.sum(states.mul_(C[:, None, :, s:e]), 2, out=y[rows, :, s:e])
    return chunks, starts


@dataclass
class _Grads:
    """Gradients filled by `_backward_tile`: dt, through the decay only; du = Σ_n λ B, the
    gradient of Δu; A, B, C, each None where not needed."""

    dt: Tensor
    du: Tensor
    A: Tensor | None
    B: Tensor | None
    C: Tensor | None


def _backward_tile(
    x: _Inputs,
    dy: Tensor,
    rows: slice,
    chunks: list[tuple[int, int]],
    starts: Tensor,
    grads: _Grads,
    work: list[Tensor],
) -> None:
    """The chunks of one slice of batch rows in reverse: λ from ∂y (batch, D, L) into `grads`."""
    dt, du, B, C, dy, A = x.dt[rows], x.du[rows], x.B[rows], x.C[rows], dy[rows], x.A
    carry = None  # Ā λ at the first step of the chunk after this one
    for i in reversed(range(len(chunks))):
        s, e = chunks[i]
        start = starts[i - 1] if i else None
        E, P, inv_start = _chunk_states(dt[..., s:e], du[..., s:e], A, B[..., s:e], start, work)
        blocks = [_block(w, *E.shape) for w in work[2:]]
        # G_j = E_j C_j dy_j, plus E_{T-1} carry at the last step: Q_k = λ_k E_k = Σ_{j≥k} G_j,
        # a product with a triangle of ones.
        scaled_dy = torch.mul(E, dy[:, :, None, s:e], out=blocks[0])
        G = torch.mul(scaled_dy, C[:, None, :, s:e], out=blocks[1])
        if carry is not None:
            G[..., -1].addcmul_(E[..., -1], carry)
        Q = blocks[2]
        suffix = torch.ones(e - s, e - s, dtype=E.dtype, device=E.device).tril_()
        torch.mm(G.view(-1, e - s), suffix, out=Q.view(-1, e - s))
        if grads.C is not None:  # ∂C_k = Σ_d dy_k h_k = Σ_d (E_k dy_k) P_k
            torch.sum(scaled_dy.mul_(P[..., 1:]), 1, out=grads.C[rows, :, s:e])
        decay = torch.mul(Q, P[..., :-1], out=blocks[1])  # ∂ log Ā_k = λ_k Ā_k h_{k-1}
        torch.sum(torch.mul(decay, A[..., None], out=blocks[0]), 2, out=grads.dt[rows, :, s:e])
        if grads.A is not None:
            grads.A += decay.mul_(dt[:, :, None, s:e]).sum((0, 3))
        carry = Q[..., 0] * inv_start
        lam = Q.div_(E)
        if grads.B is not None:
            lam_du = torch.mul(lam, du[:, :, None, s:e], out=blocks[0])
            torch.sum(lam_du, 1, out=grads.B[rows, :, s:e])
        torch.sum(lam.mul_(B[:, None, :, s:e]), 2, out=grads.du[rows, :, s:e])


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
        u, B, C = u.contiguous(), B.contiguous(), C.contiguous()
        dt = step_size(delta, delta_bias, delta_softplus).contiguous()
        x = _Inputs(dt, dt * u, B, C, A)
        y = torch.empty_like(u)
        tiles, work = _tiles(u, A.shape[1], max_chunk, buffers=2)
        ctx.chunks, starts = [], []
        for rows in tiles:
            chunks, start = _forward_tile(x, rows, y, max_chunk, work)
            ctx.chunks.append(chunks)
            starts.append(start)
        if D is not None:
            y.addcmul_(D.unsqueeze(-1), u)
        ctx.delta_softplus = delta_softplus
        ctx.max_chunk = max_chunk
        # Δ stands in for delta and its bias: softplus'(x) = σ(x) = 1 - exp(-softplus(x)).
        ctx.save_for_backward(u, dt, A, B, C, D, z, y, *starts)
        return y if z is None else F.silu(z).mul_(y)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        u, dt, A, B, C, D, z, y, *starts = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad = grad.contiguous()
        grad_z = None
        if z is None:
            dy = grad
        else:  # out = y SiLU(z): ∂y = grad SiLU(z), ∂z = grad y σ(z)(1 + z(1 - σ(z)))
            sig = torch.sigmoid(z)
            dy = torch.mul(z, sig).mul_(grad)
            grad_z = torch.sub(1, sig).mul_(z).add_(1).mul_(sig).mul_(grad).mul_(y)
        x = _Inputs(dt, dt * u, B, C, A)
        grads = _Grads(
            dt=torch.empty_like(u),
            du=torch.empty_like(u),
            A=torch.zeros_like(A) if need[2] else None,
            B=torch.empty_like(B) if need[3] else None,
            C=torch.empty_like(C) if need[4] else None,
        )
        tiles, work = _tiles(u, A.shape[1], ctx.max_chunk, buffers=5)
        for rows, chunks, start in zip(tiles, ctx.chunks, starts, strict=True):
            _backward_tile(x, dy, rows, chunks, start, grads, work)
        grad_dt = grads.dt.addcmul_(grads.du, u)  # through Δu B: ∂Δ += u Σ_n λ B
        grad_u = grads.du.mul_(dt)
        if D is not None:
            grad_u.addcmul_(dy, D.unsqueeze(-1))
        if ctx.delta_softplus:
            grad_dt.mul_(torch.neg(dt).expm1_().neg_())
        grad_D = (dy * u).sum((0, 2)) if need[5] else None
        grad_bias = grad_dt.sum((0, 2)) if need[7] else None
        return grad_u, grad_dt, grads.A, grads.B, grads.C, grad_D, grad_z, grad_bias, None, None


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
    if max_chunk < 1:
        raise ValueError(f"max_chunk must be at least 1, got {max_chunk}")
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
    y = torch.einsum("bldn,bnl->bdl", h, C)
    if D is not None:
        y = y + D.unsqueeze(-1) * u
    return y if z is None else y * F.silu(z)
