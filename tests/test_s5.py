"""S5 (paper eq. 8): scan forward vs the recurrence, ZOH per state, MIMO kernel, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_checks import gradcheck_all, phi1_reference, recurrence_error, relative_error

from ssmprobe.models import discretize, hippo
from ssmprobe.models.s5 import S5


def continuous(layer: S5) -> tuple[np.ndarray, np.ndarray]:
    """Λ (P/2,) and Δ (P/2,) rebuilt in numpy float64 from the raw parameters."""
    lnr, imag = layer.log_neg_real.detach().double().numpy(), layer.imag.detach().double().numpy()
    return -np.exp(lnr) + 1j * imag, np.exp(layer.log_dt.detach().double().numpy())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("length", [1, 7, 33, 100])
def test_forward_matches_recurrence(seed: int, length: int) -> None:
    torch.manual_seed(seed)
    layer = S5(4, d_state=8)
    assert recurrence_error(layer, torch.randn(3, length, 4)) < 1e-4


@pytest.mark.parametrize("dt", [(1e-4, 1e-3), (0.3, 3.0)])
def test_forward_matches_recurrence_extreme_steps(dt: tuple[float, float]) -> None:
    torch.manual_seed(3)
    layer = S5(3, d_state=16, dt_min=dt[0], dt_max=dt[1])
    assert recurrence_error(layer, torch.randn(2, 157, 3)) < 1e-4
    assert recurrence_error(layer.double(), torch.randn(2, 157, 3).double()) < 1e-11


def test_parameters_and_init() -> None:
    torch.manual_seed(0)
    layer = S5(6, d_state=8, dt_min=1e-3, dt_max=1e-1)
    shapes = {name: tuple(p.shape) for name, p in layer.named_parameters()}
    # complex B̃ (P/2, H) and C̃ (H, P/2) are stored as trailing (re, im) pairs
    assert shapes == {
        "log_neg_real": (4,),
        "imag": (4,),
        "B": (4, 6, 2),
        "C": (6, 4, 2),
        "log_dt": (4,),
        "D": (6,),
    }
    lam, dt = continuous(layer)
    expected = hippo.legs_nplr(8)[0].numpy()
    np.testing.assert_allclose(lam, expected, rtol=1e-6)
    assert np.all((dt >= 1e-3 * (1 - 1e-6)) & (dt <= 1e-1 * (1 + 1e-6)))


def test_eigvals_are_exp_lambda_dt_per_state() -> None:
    torch.manual_seed(0)
    layer = S5(3, d_state=10)
    with torch.no_grad():  # any parameter value keeps Re Λ < 0
        layer.log_neg_real.normal_(0, 2)
        layer.imag.normal_(0, 10)
        layer.log_dt.normal_(-3, 2)
    ssm = layer.discrete()
    lam, dt = continuous(layer)
    assert ssm.mimo and ssm.diagonal and ssm.scale == 2
    assert ssm.eigvals.shape == (5,) and ssm.B_bar.shape == (5, 3) and ssm.C_bar.shape == (3, 5)
    np.testing.assert_allclose(ssm.eigvals.detach().numpy(), np.exp(lam * dt), rtol=1e-6)
    assert torch.equal(ssm.A_bar, ssm.eigvals)
    assert (ssm.eigvals.abs() < 1).all()
    np.testing.assert_allclose(ssm.dt.detach().numpy(), dt, rtol=1e-6)


def test_b_bar_matches_textbook_zoh() -> None:
    """B̄ = (Λ̄ - I) Λ^{-1} B̃ in float64 where |ΛΔ| > 1e-2 keeps it well conditioned."""
    torch.manual_seed(1)
    layer = S5(4, d_state=16, dt_min=0.05, dt_max=0.5).double()
    lam, dt = continuous(layer)
    assert np.abs(lam * dt).min() > 1e-2
    b = torch.view_as_complex(layer.B).detach().numpy()
    textbook = np.diag((np.exp(lam * dt) - 1) / lam) @ b
    np.testing.assert_allclose(layer.discrete().B_bar.detach().numpy(), textbook, rtol=1e-12)


def test_b_bar_accurate_for_tiny_dt() -> None:
    """At Δ = 1e-9 the float32 layer keeps full precision; the naive quotient does not."""
    torch.manual_seed(2)
    layer = S5(3, d_state=16)
    with torch.no_grad():
        layer.log_dt.fill_(math.log(1e-9))
    lam, dt = continuous(layer)
    scale = np.vectorize(phi1_reference)(lam * dt) * dt
    b = torch.view_as_complex(layer.B).detach().to(torch.complex128).numpy()
    stable = layer.discrete().B_bar.detach()
    assert stable.dtype == torch.complex64
    assert relative_error(stable, torch.from_numpy(scale[:, None] * b)) < 1e-6
    lam32 = torch.complex(-layer.log_neg_real.exp(), layer.imag).detach()
    _, naive = discretize.zoh_naive(lam32, layer.log_dt.exp().detach())
    naive_err = np.abs(naive.numpy().astype(np.complex128) - scale).max()
    assert naive_err / np.abs(scale).max() > 0.1


def test_impulse_response_matches_explicit_powers() -> None:
    torch.manual_seed(2)
    layer = S5(3, d_state=8, dt_min=0.01, dt_max=0.5).double()
    ssm = layer.discrete()
    length = 40
    power = torch.ones_like(ssm.A_bar)
    expected = []
    for _ in range(length):
        expected.append(2 * (ssm.C_bar @ torch.diag(power) @ ssm.B_bar).real)
        power = power * ssm.A_bar
    kernel = layer.impulse_response(length)
    assert kernel.shape == (3, 3, length)
    assert relative_error(kernel, torch.stack(expected, -1)) < 1e-12
    off_diagonal = kernel[~torch.eye(3, dtype=torch.bool)]
    assert off_diagonal.abs().max() > 1e-3  # MIMO: channels mix


def test_forward_is_mimo_convolution() -> None:
    """y_k[i] = Σ_{m<=k} Σ_j K_{k-m}[i, j] u_m[j] + D_i u_k[i], summed directly."""
    torch.manual_seed(4)
    layer = S5(3, d_state=6, dt_min=0.05, dt_max=0.5).double()
    batch, length = 2, 12
    u = torch.randn(batch, length, 3, dtype=torch.float64)
    kernel = layer.impulse_response(length).detach()
    expected = torch.zeros_like(u)
    for k in range(length):
        for m in range(k + 1):
            expected[:, k] += u[:, m] @ kernel[:, :, k - m].T
    expected += layer.D.detach() * u
    with torch.no_grad():
        assert relative_error(layer(u), expected) < 1e-12


def test_gradcheck_input_and_all_parameters() -> None:
    torch.manual_seed(0)
    layer = S5(2, d_state=4, dt_min=0.05, dt_max=0.5).double()
    assert gradcheck_all(layer, torch.randn(2, 5, 2))


_SHIFT_LAYER = S5(3, d_state=8, dt_min=0.01, dt_max=0.5).double()


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 40), shift=st.integers(0, 40), seed=st.integers(0, 2**31 - 1))
def test_time_invariant(length: int, shift: int, seed: int) -> None:
    """Delaying the input by `shift` zero steps delays the output by the same amount."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(2, length, 3, generator=gen, dtype=torch.float64)
    delayed = torch.cat([torch.zeros(2, shift, 3, dtype=torch.float64), u], dim=1)
    with torch.no_grad():
        y, y_delayed = _SHIFT_LAYER(u), _SHIFT_LAYER(delayed)
    torch.testing.assert_close(y_delayed[:, :shift], torch.zeros(2, shift, 3, dtype=u.dtype))
    torch.testing.assert_close(y_delayed[:, shift:], y, rtol=1e-10, atol=1e-12)
