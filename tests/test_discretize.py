"""Discretisation rules (paper eq. 3-4, 6-7): φ₁, ZOH (stable and naive), bilinear."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_checks import phi1_reference

from ssmprobe.models import discretize

_SETTINGS = settings(max_examples=60, deadline=None)


def phi1_series(z: complex, terms: int = 30) -> complex:
    """Σ_k z^k/(k+1)!, accurate in float64 for |z| <= 1."""
    total, term = 0j, 1 + 0j
    for k in range(terms):
        total += term
        term *= z / (k + 2)
    return total


def tensor(z: complex, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(z, dtype=dtype)


def float64_args(lam: complex, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(λ, Δ) as complex128 / float64 tensors."""
    return tensor(lam, torch.complex128), tensor(dt, torch.float64)


small = st.floats(-1.0, 1.0, allow_subnormal=False)


@_SETTINGS
@given(x=small, y=small, dtype=st.sampled_from([torch.complex64, torch.complex128]))
def test_phi1_complex_matches_series_for_small_z(x: float, y: float, dtype: torch.dtype) -> None:
    """No cancellation near 0: relative error at the dtype's precision, even for |z| ~ 1e-30."""
    z = complex(x, y)
    if dtype == torch.complex64:  # the input itself must be representable
        z = complex(tensor(z, dtype).item())
    got = complex(discretize.phi1(tensor(z, dtype)).item())
    eps = torch.finfo(tensor(z, dtype).real.dtype).eps
    assert abs(got - phi1_series(z)) <= 8 * eps * abs(phi1_series(z))


@_SETTINGS
@given(x=small, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_phi1_real_matches_series_for_small_z(x: float, dtype: torch.dtype) -> None:
    x = tensor(x, dtype).item()
    got = discretize.phi1(tensor(x, dtype)).item()
    assert abs(got - phi1_series(x).real) <= 8 * torch.finfo(dtype).eps * phi1_series(x).real


@pytest.mark.parametrize("z", [1e-30, -1e-12, 1e-12j, 3e-9 - 2e-8j, -1e-7 + 1e-7j])
def test_phi1_tiny_z_float32(z: complex) -> None:
    dtype = torch.complex64 if isinstance(z, complex) else torch.float32
    got = discretize.phi1(tensor(z, dtype)).item()
    assert abs(got - 1) < 1e-6  # φ₁(z) = 1 + z/2 + ..., and |z| < 1e-6


def test_phi1_at_zero_is_one() -> None:
    for dtype in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        assert discretize.phi1(torch.zeros(3, dtype=dtype)).eq(1).all()


@pytest.mark.parametrize("z", [1e-310j, 1e-320 + 0j])
def test_phi1_subnormal_complex(z: complex) -> None:
    """Complex division by a subnormal z overflows; φ₁ must not divide there."""
    assert discretize.phi1(tensor(z, torch.complex128)).item() == 1 + z / 2


@_SETTINGS
@given(
    x=st.floats(-40.0, 5.0, allow_subnormal=False), y=st.floats(-6.0, 6.0, allow_subnormal=False)
)
def test_phi1_matches_high_precision(x: float, y: float) -> None:
    """Away from 0 too (|Im z| < 2π keeps e^z - 1 away from its zeros)."""
    z = complex(x, y)
    got = complex(discretize.phi1(tensor(z, torch.complex128)).item())
    assert abs(got - phi1_reference(z)) <= 1e-13 * abs(phi1_reference(z))


eigenvalue = st.builds(complex, st.floats(-20.0, -1e-3), st.floats(-50.0, 50.0))
log_step = st.floats(math.log(1e-4), math.log(1.0))


@_SETTINGS
@given(lam=eigenvalue, log_dt=log_step)
def test_zoh_matches_matrix_exponential(lam: complex, log_dt: float) -> None:
    """Van Loan: expm([[λΔ, Δ], [0, 0]]) = [[Ā, B̄], [0, 1]] for B = 1 (eq. 6)."""
    dt = math.exp(log_dt)
    block = scipy.linalg.expm(np.array([[lam * dt, dt], [0, 0]], dtype=np.complex128))
    a_bar, b_bar = discretize.zoh(*float64_args(lam, dt))
    assert abs(a_bar.item() - block[0, 0]) <= 1e-12 * abs(block[0, 0]) + 1e-300
    assert abs(b_bar.item() - block[0, 1]) <= 1e-12 * abs(block[0, 1])


@_SETTINGS
@given(lam=eigenvalue, log_dt=log_step)
def test_zoh_agrees_with_naive_when_well_conditioned(lam: complex, log_dt: float) -> None:
    dt = math.exp(log_dt)
    if abs(lam * dt) < 1e-2:
        return
    args = float64_args(lam, dt)
    (a_bar, b_bar), (a_naive, b_naive) = discretize.zoh(*args), discretize.zoh_naive(*args)
    assert a_bar.item() == a_naive.item()
    assert abs(b_bar.item() - b_naive.item()) <= 1e-12 * abs(b_naive.item())


@pytest.mark.parametrize("lam", [-0.5, -0.5 + 0.43j, -0.5 + 19.9j, -3.0])
def test_zoh_tiny_step_float32(lam: complex) -> None:
    """Δ = 1e-9: the stable form keeps float32 precision, the naive one loses it (§4.1)."""
    dtype = torch.complex64 if isinstance(lam, complex) else torch.float32
    lam32, dt = tensor(lam, dtype), torch.tensor(1e-9)
    exact = 1e-9 * phi1_reference(complex(lam32.item()) * float(dt))
    _, b_bar = discretize.zoh(lam32, dt)
    _, b_naive = discretize.zoh_naive(lam32, dt)
    assert abs(b_bar.item() - exact) <= 1e-6 * abs(exact)
    assert abs(b_naive.item() - exact) > 1e-2 * abs(exact)


@_SETTINGS
@given(lam=eigenvalue, log_dt=log_step)
def test_bilinear_matches_eq3(lam: complex, log_dt: float) -> None:
    """Ā = (I - Δ/2 A)^{-1}(I + Δ/2 A), B̄ = (I - Δ/2 A)^{-1} Δ B, with dense 2x2 A = diag."""
    dt = math.exp(log_dt)
    a = torch.diag(torch.tensor([lam, lam.conjugate()], dtype=torch.complex128))
    eye = torch.eye(2, dtype=torch.complex128)
    left = eye - dt / 2 * a
    a_dense = torch.linalg.solve(left, eye + dt / 2 * a)
    b_dense = torch.linalg.solve(left, dt * torch.ones(2, 1, dtype=torch.complex128))
    a_bar, b_bar = discretize.bilinear(*float64_args(lam, dt))
    torch.testing.assert_close(a_dense.diagonal()[0], a_bar, rtol=1e-12, atol=0)
    torch.testing.assert_close(b_dense[0, 0], b_bar, rtol=1e-12, atol=0)


@_SETTINGS
@given(lam=eigenvalue, log_dt=st.floats(math.log(1e-4), math.log(1e3)))
def test_stable_eigenvalues_stay_in_unit_disk(lam: complex, log_dt: float) -> None:
    """Re λ < 0 gives |Ā| < 1 under both rules (up to rounding)."""
    args = float64_args(lam, math.exp(log_dt))
    assert abs(discretize.zoh(*args)[0].item()) < 1
    assert abs(discretize.bilinear(*args)[0].item()) <= 1


@_SETTINGS
@given(lam=eigenvalue, log_dt=log_step)
def test_bilinear_is_third_order_close_to_zoh(lam: complex, log_dt: float) -> None:
    """exp(z) - (1 + z/2)/(1 - z/2) = -z³/12 + O(z⁴)."""
    z = lam * math.exp(log_dt)
    if abs(z) > 0.1:
        return
    args = float64_args(lam, math.exp(log_dt))
    gap = abs(discretize.zoh(*args)[0].item() - discretize.bilinear(*args)[0].item())
    assert gap <= abs(z) ** 3 / 12 * 1.2 + 1e-15
