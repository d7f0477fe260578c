"""Discretisation rules for diagonal continuous-time SSMs (paper eq. 3-4 and 6-7).

For a diagonal A = diag(λ) and step Δ:

- ZOH (eq. 6):      Ā = exp(λΔ),  B̄ = (Ā - 1)(λΔ)^{-1} Δ B = Δ φ₁(λΔ) B,  φ₁(z) = (e^z - 1)/z.
- Bilinear (eq. 3): Ā = (1 + λΔ/2)/(1 - λΔ/2),  B̄ = Δ B / (1 - λΔ/2).

The naive ZOH form evaluates (e^z - 1)/z as written, which cancels catastrophically as
Δ -> 0 (§4.1); `phi1` computes e^z - 1 without subtracting nearly equal numbers, so B̄ keeps
full relative precision for every Δ. `zoh_naive` is kept on purpose, for the bounds tool to
show the blow-up.
"""

from __future__ import annotations

import torch
from torch import Tensor


def expm1(z: Tensor) -> Tensor:
    """e^z - 1 to full relative precision for real and complex z.

    For z = x + iy: e^z - 1 = expm1(x) cos y - 2 sin²(y/2) + i e^x sin y, which has no
    cancellation for small |z| (torch's complex expm1 is not guaranteed to avoid it).
    """
    if not z.is_complex():
        return torch.expm1(z)
    x, y = z.real, z.imag
    real = torch.expm1(x) * torch.cos(y) - 2 * torch.sin(y / 2) ** 2
    return torch.complex(real, torch.exp(x) * torch.sin(y))


def phi1(z: Tensor) -> Tensor:
    """φ₁(z) = (e^z - 1)/z, stable for z -> 0.

    Below machine epsilon φ₁(z) = 1 + z/2 exactly in floating point; using it there also avoids
    dividing by z = 0 or by a subnormal z, whose complex division overflows.
    """
    real_dtype = z.real.dtype if z.is_complex() else z.dtype
    tiny = z.abs() < torch.finfo(real_dtype).eps
    safe = torch.where(tiny, torch.ones_like(z), z)
    return torch.where(tiny, 1 + z / 2, expm1(safe) / safe)


def zoh(lam: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
    """ZOH for diagonal A: returns (Ā, B̄/B) = (exp(λΔ), Δ φ₁(λΔ)), broadcasting λ and Δ."""
    z = lam * dt
    return torch.exp(z), dt * phi1(z)


def zoh_naive(lam: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
    """ZOH exactly as eq. 6 writes it, (Ā - I)(ΔA)^{-1}ΔB: ill-conditioned for small Δ."""
    z = lam * dt
    a_bar = torch.exp(z)
    return a_bar, (a_bar - 1) / z * dt


def bilinear(lam: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear (Tustin) for diagonal A: returns (Ā, B̄/B)."""
    half = lam * dt / 2
    return (1 + half) / (1 - half), dt / (1 - half)
