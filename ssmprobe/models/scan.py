"""Diagonal linear recurrence over time, computed in chunks (S5 eq. 8, Mamba's selective scan).

    x_k = a_k ⊙ x_{k-1} + b_k,   x_{-1} = 0,   along dim 1 of b (B, L, ...).

Within a chunk of T steps, with P_k = a_1 ⋯ a_k (a cumulative product inside the chunk),

    x_k = P_k ⊙ (x_start + Σ_{j<=k} b_j / P_j),

so a chunk is one cumprod, one cumsum and a few elementwise ops: O(L) work with L/T Python
steps to carry the state between chunks. 1/P_j must stay representable, so T is chosen from
the data: T · max|log|a|| <= `_LOG_RANGE`, which keeps every factor within e^±30 (T = 1, the
plain loop, when some |a| is 0 or huge). Backward is the adjoint recurrence run backwards in
time, λ_k = g_k + conj(a_{k+1}) λ_{k+1}, with ∂b_k = λ_k and ∂a_k = λ_k conj(x_{k-1}): only x is
kept for it, not the intermediates of the chunked forward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG_RANGE = 30.0
_MAX_CHUNK = 64


def _chunk_size(a: Tensor, length: int) -> int:
    worst = a.abs().log().abs().max().item() if a.numel() else 0.0
    if not math.isfinite(worst):
        return 1
    t = _MAX_CHUNK if worst == 0 else int(_LOG_RANGE / worst)
    return max(1, min(t, _MAX_CHUNK, length))


def _scan(a: Tensor, b: Tensor) -> Tensor:
    """Forward recurrence without autograd; a already has b's shape."""
    batch, length = b.shape[:2]
    rest = b.shape[2:]
    # a_0 multiplies the zero initial state, so it is free: 1 keeps it out of the chunk choice.
    a = torch.cat([a.new_ones((batch, 1, *rest)), a[:, 1:]], dim=1)
    t = _chunk_size(a, length)
    if t == 1:
        x = torch.empty_like(b)
        x[:, 0] = b[:, 0]
        for k in range(1, length):
            x[:, k] = a[:, k] * x[:, k - 1] + b[:, k]
        return x
    chunks = -(-length // t)
    pad = chunks * t - length
    if pad:
        a = torch.cat([a, a.new_ones((batch, pad, *rest))], dim=1)
        b = torch.cat([b, b.new_zeros((batch, pad, *rest))], dim=1)
    a = a.reshape(batch, chunks, t, *rest)
    b = b.reshape(batch, chunks, t, *rest)
    prod = torch.cumprod(a, dim=2)
    x = prod * torch.cumsum(b / prod, dim=2)  # each chunk from a zero state
    carry = None
    for c in range(chunks):
        if carry is not None:
            x[:, c] += prod[:, c] * carry.unsqueeze(1)
        carry = x[:, c, -1]
    return x.reshape(batch, chunks * t, *rest)[:, :length]


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        x = _scan(a.expand_as(b), b)
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        a, x = ctx.saved_tensors
        a_full = a.expand_as(x)
        # a_next[k] = a[k+1]; the last step has no successor.
        a_next = torch.cat([a_full[:, 1:], torch.zeros_like(a_full[:, :1])], dim=1)
        lam = _scan(a_next.conj().flip(1), grad.flip(1)).flip(1)
        x_prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        grad_a = (lam * x_prev.conj()).sum_to_size(a.shape)
        return grad_a, lam


def linear_scan(a: Tensor, b: Tensor) -> Tensor:
    """x_k = a_k x_{k-1} + b_k along dim 1 of b (B, L, ...); a broadcasts to b.

    Real or complex; a and b are promoted to a common dtype. Differentiable in a and b.
    """
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    if a.dim() < b.dim():
        a = a.reshape((1,) * (b.dim() - a.dim()) + a.shape)
    return _LinearScan.apply(a, b)
