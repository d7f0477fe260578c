"""HiPPO-LegS initialisation (S4 §3, "HiPPO" eq. 2) and its normal-plus-low-rank form.

LegS:  A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k,  -(n+1) for n = k,  0 for n < k;
       B_n = sqrt(2n+1).
NPLR:  A = S - P Pᵀ with P_n = sqrt(n + 1/2), where S = -I/2 + (skew-symmetric) is normal,
       so S = V Λ V* with Re Λ = -1/2.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def legs(n: int) -> tuple[Tensor, Tensor]:
    """The dense LegS matrices (A, B) of state size n, float64."""
    q = torch.sqrt(2 * torch.arange(n, dtype=torch.float64) + 1)
    a = -torch.tril(q[:, None] * q[None, :], -1) - torch.diag(torch.arange(1, n + 1.0).double())
    return a, q.clone()


def legs_nplr(n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(Λ, P̃, B̃, V) with LegS = V (diag Λ - P̃ P̃*) V*, keeping one of each conjugate pair.

    Returns the n/2 eigenvalues with positive imaginary part and P̃ = V*P, B̃ = V*B restricted
    to them (complex128). Used by S4 (NPLR) and, through Λ alone, by DSS and S5.
    """
    if n % 2:
        raise ValueError(f"state size must be even for conjugate symmetry, got {n}")
    a, b = legs(n)
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    s = a + p[:, None] * p[None, :]
    # S + I/2 is skew-symmetric, so -i(S + I/2) is Hermitian: eigh gives an orthonormal V.
    skew = s + 0.5 * torch.eye(n, dtype=torch.float64)
    imag, v = torch.linalg.eigh(-1j * skew.to(torch.complex128))
    keep = imag > 0
    lam = torch.complex(torch.full_like(imag[keep], -0.5), imag[keep])
    v = v[:, keep]
    vh = v.conj().T
    return lam, vh @ p.to(torch.complex128), vh @ b.to(torch.complex128), v


def log_uniform(shape: tuple[int, ...], low: float, high: float) -> Tensor:
    """Samples exp(U[log low, log high]): the usual initialisation of the step Δ."""
    u = torch.rand(shape, dtype=torch.float64)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
