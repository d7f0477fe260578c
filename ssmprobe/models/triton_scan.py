"""Mamba's selective scan (paper §2, eq. 10) as Triton kernels: the GPU path without mamba-ssm.

The kernels do only the work on the (batch, D, L, N) state; Δ = softplus(delta + bias), the
D u skip and the SiLU gate are elementwise on (batch, D, L) and stay in PyTorch. With Δ given,

    h_k = exp(Δ_k A) ⊙ h_{k-1} + (Δ_k u_k) B_k,    y_k = C_k · h_k.

Forward: one program per (sequence, block of `BLOCK_D` channels) keeps its (BLOCK_D, N) state in
registers and steps through time; at the start of every chunk of `CHUNK` steps it stores the
state, so memory is L / CHUNK states, never the full state.

Backward, per the same program, runs the chunks in reverse: it recomputes a chunk's states from
its stored start into a scratch buffer, then steps the adjoint back in time,

    λ_k = C_k dy_k + Ā_{k+1} ⊙ λ_{k+1},   g_k = λ_k ⊙ Ā_k ⊙ h_{k-1}   (= ∂ log Ā_k),
    ∂u_k = Δ_k Σ_n λ_k B_k,   ∂Δ_k = u_k Σ_n λ_k B_k + Σ_n g_k A,   ∂A = Σ_k Δ_k g_k,
    ∂B_k = Σ_d λ_k Δ_k u_k,   ∂C_k = Σ_d dy_k h_k,

the sums over channels and sequences that cross programs (∂A, ∂B, ∂C) written per program and
added up in PyTorch. Steps past L are padding: Δ = 0 there makes them the identity.

On a machine without a GPU the same kernels run in Triton's interpreter
(`TRITON_INTERPRET=1`, set before this module is imported), which is how they are tested.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

CHUNK = 16
BLOCK_D = 16


@triton.jit
def _scan_forward(
    u_ptr,  # (batch, L, D): time-major per sequence, so a step's channels are contiguous
    dt_ptr,  # (batch, L, D)
    a_ptr,  # (D, N)
    b_ptr,  # (batch, L, N)
    c_ptr,  # (batch, L, N)
    y_ptr,  # (batch, L, D) out
    start_ptr,  # (batch, n_chunks, D, N) out: the state entering each chunk
    length,
    dim,
    n_state,
    n_chunks,
    CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    seq = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok, n_ok = d < dim, n < n_state
    tile = d_ok[:, None] & n_ok[None, :]
    a = tl.load(a_ptr + d[:, None] * n_state + n[None, :], mask=tile, other=0.0)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(0, n_chunks):
        start = start_ptr + ((seq * n_chunks + c) * dim + d[:, None]) * n_state + n[None, :]
        tl.store(start, h, mask=tile)
        for i in range(0, CHUNK):
            t = c * CHUNK + i
            row = (seq * length + t) * dim + d
            step_ok = d_ok & (d * 0 + t < length)  # vector masks: the interpreter needs them
            n_step = n_ok & (n * 0 + t < length)
            dt = tl.load(dt_ptr + row, mask=step_ok, other=0.0)
            u = tl.load(u_ptr + row, mask=step_ok, other=0.0)
            bn = tl.load(b_ptr + (seq * length + t) * n_state + n, mask=n_step, other=0.0)
            cn = tl.load(c_ptr + (seq * length + t) * n_state + n, mask=n_step, other=0.0)
            h = tl.exp(dt[:, None] * a) * h + (dt * u)[:, None] * bn[None, :]
            tl.store(y_ptr + row, tl.sum(h * cn[None, :], axis=1), mask=step_ok)


@triton.jit
def _scan_backward(
    u_ptr,
    dt_ptr,
    a_ptr,
    b_ptr,
    c_ptr,
    dy_ptr,  # (batch, L, D)
    start_ptr,  # (batch, n_chunks, D, N) from the forward
    scratch_ptr,  # (batch, n_blocks, CHUNK, BLOCK_D, BLOCK_N): h_{k-1} of the current chunk
    du_ptr,  # (batch, L, D) out
    ddt_ptr,  # (batch, L, D) out
    da_ptr,  # (batch, D, N) out: this sequence's part of ∂A
    db_ptr,  # (batch, n_blocks, L, N) out: this channel block's part of ∂B
    dc_ptr,  # (batch, n_blocks, L, N) out
    length,
    dim,
    n_state,
    n_chunks,
    n_blocks,
    CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    seq = tl.program_id(0)
    block = tl.program_id(1)
    d = block * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok, n_ok = d < dim, n < n_state
    tile = d_ok[:, None] & n_ok[None, :]
    local = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]
    scratch = scratch_ptr + (seq * n_blocks + block) * CHUNK * BLOCK_D * BLOCK_N + local
    a = tl.load(a_ptr + d[:, None] * n_state + n[None, :], mask=tile, other=0.0)
    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # Ā_{k+1} ⊙ λ_{k+1}
    grad_a = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for back in range(0, n_chunks):
        c = n_chunks - 1 - back
        start = start_ptr + ((seq * n_chunks + c) * dim + d[:, None]) * n_state + n[None, :]
        h = tl.load(start, mask=tile, other=0.0)
        # scratch is written and read back by the program's threads: the barriers keep a thread
        # from reading a state before another has written it, or overwriting one still unread
        tl.debug_barrier()
        for i in range(0, CHUNK):  # the chunk's states again, h_{k-1} kept for each step
            t = c * CHUNK + i
            row = (seq * length + t) * dim + d
            step_ok = d_ok & (d * 0 + t < length)  # vector masks: the interpreter needs them
            n_step = n_ok & (n * 0 + t < length)
            tl.store(scratch + i * BLOCK_D * BLOCK_N, h)
            dt = tl.load(dt_ptr + row, mask=step_ok, other=0.0)
            u = tl.load(u_ptr + row, mask=step_ok, other=0.0)
            bn = tl.load(b_ptr + (seq * length + t) * n_state + n, mask=n_step, other=0.0)
            h = tl.exp(dt[:, None] * a) * h + (dt * u)[:, None] * bn[None, :]
        tl.debug_barrier()
        for j in range(0, CHUNK):
            i = CHUNK - 1 - j
            t = c * CHUNK + i
            row = (seq * length + t) * dim + d
            step_ok = d_ok & (d * 0 + t < length)
            n_step = n_ok & (n * 0 + t < length)
            previous = tl.load(scratch + i * BLOCK_D * BLOCK_N)
            dt = tl.load(dt_ptr + row, mask=step_ok, other=0.0)
            u = tl.load(u_ptr + row, mask=step_ok, other=0.0)
            dy = tl.load(dy_ptr + row, mask=step_ok, other=0.0)
            bn = tl.load(b_ptr + (seq * length + t) * n_state + n, mask=n_step, other=0.0)
            cn = tl.load(c_ptr + (seq * length + t) * n_state + n, mask=n_step, other=0.0)
            a_bar = tl.exp(dt[:, None] * a)
            h = a_bar * previous + (dt * u)[:, None] * bn[None, :]
            lam = dy[:, None] * cn[None, :] + carry
            g = lam * a_bar * previous
            grad_du = tl.sum(lam * bn[None, :], axis=1)
            tl.store(du_ptr + row, dt * grad_du, mask=step_ok)
            tl.store(ddt_ptr + row, u * grad_du + tl.sum(g * a, axis=1), mask=step_ok)
            part = ((seq * n_blocks + block) * length + t) * n_state + n
            tl.store(db_ptr + part, tl.sum(lam * (dt * u)[:, None], axis=0), mask=n_step)
            tl.store(dc_ptr + part, tl.sum(dy[:, None] * h, axis=0), mask=n_step)
            grad_a += g * dt[:, None]
            carry = a_bar * lam
    tl.store(da_ptr + (seq * dim + d[:, None]) * n_state + n[None, :], grad_a, mask=tile)


def _launch_shape(batch: int, length: int, dim: int, n_state: int) -> dict[str, int]:
    return {
        "n_chunks": triton.cdiv(length, CHUNK),
        "n_blocks": triton.cdiv(dim, BLOCK_D),
        "BLOCK_N": triton.next_power_of_2(n_state),
    }


class _TritonScan(torch.autograd.Function):
    """y = C · h of the recurrence above for float32 (batch, L, ·) inputs."""

    @staticmethod
    def forward(ctx, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:  # type: ignore[override]
        batch, length, dim = u.shape
        n_state = A.shape[1]
        shape = _launch_shape(batch, length, dim, n_state)
        y = torch.empty_like(u)
        starts = u.new_empty(batch, shape["n_chunks"], dim, n_state)
        _scan_forward[(batch, shape["n_blocks"])](
            u, dt, A, B, C, y, starts, length, dim, n_state, shape["n_chunks"],
            CHUNK=CHUNK, BLOCK_D=BLOCK_D, BLOCK_N=shape["BLOCK_N"],
        )  # fmt: skip
        ctx.save_for_backward(u, dt, A, B, C, starts)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        u, dt, A, B, C, starts = ctx.saved_tensors
        batch, length, dim = u.shape
        n_state = A.shape[1]
        shape = _launch_shape(batch, length, dim, n_state)
        blocks, width = shape["n_blocks"], shape["BLOCK_N"]
        scratch = u.new_empty(batch, blocks, CHUNK, BLOCK_D, width)
        du, ddt = torch.empty_like(u), torch.empty_like(u)
        da = u.new_empty(batch, dim, n_state)
        db = u.new_empty(batch, blocks, length, n_state)
        dc = u.new_empty(batch, blocks, length, n_state)
        _scan_backward[(batch, blocks)](
            u, dt, A, B, C, dy.contiguous(), starts, scratch, du, ddt, da, db, dc,
            length, dim, n_state, shape["n_chunks"], blocks,
            CHUNK=CHUNK, BLOCK_D=BLOCK_D, BLOCK_N=width,
        )  # fmt: skip
        return du, ddt, da.sum(0), db.sum(1), dc.sum(1)


def triton_selective_scan(
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
    """`mamba.selective_scan` with the state work in the Triton kernels: u, delta, z
    (batch, D, L); A (D, N); B, C (batch, N, L); D, delta_bias (D,). Computes in float32 and
    returns y (batch, D, L) in u's dtype; differentiable in every tensor argument."""
    from ssmprobe.models.selective_scan import skip_and_gate, step_size

    def time_major(t: Tensor) -> Tensor:
        return t.float().transpose(1, 2).contiguous()

    dt = step_size(
        delta.float(), None if delta_bias is None else delta_bias.float(), delta_softplus
    )
    y = _TritonScan.apply(
        time_major(u), time_major(dt), A.float().contiguous(), time_major(B), time_major(C)
    ).transpose(1, 2)
    y = skip_and_gate(
        y, u.float(), None if D is None else D.float(), None if z is None else z.float()
    )
    return y.to(u.dtype)
