"""DSS (paper eq. 6-7): FFT-kernel forward vs the recurrence, ZOH, kernel, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_checks import gradcheck_all, phi1_reference, recurrence_error, relative_error

from ssmprobe.models import discretize, hippo
from ssmprobe.models.dss import DSS


def continuous(layer: DSS) -> tuple[np.ndarray, np.ndarray]:
    """λ (H, N/2) and Δ (H,) rebuilt in numpy float64 from the raw parameters."""
    lnr, imag = layer.log_neg_real.detach().double().numpy(), layer.imag.detach().double().numpy()
    return -np.exp(lnr) + 1j * imag, np.exp(layer.log_dt.detach().double().numpy())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("length", [1, 7, 33, 100])
def test_forward_matches_recurrence(seed: int, length: int) -> None:
    torch.manual_seed(seed)
    layer = DSS(4, d_state=8)
    assert recurrence_error(layer, torch.randn(3, length, 4)) < 1e-4


@pytest.mark.parametrize("dt", [(1e-4, 1e-3), (0.3, 3.0)])
def test_forward_matches_recurrence_extreme_steps(dt: tuple[float, float]) -> None:
    torch.manual_seed(3)
    layer = DSS(3, d_state=16, dt_min=dt[0], dt_max=dt[1])
    assert recurrence_error(layer, torch.randn(2, 57, 3)) < 1e-4
    assert recurrence_error(layer.double(), torch.randn(2, 57, 3).double()) < 1e-11


def test_parameters_and_init() -> None:
    layer = DSS(3, d_state=8, dt_min=1e-3, dt_max=1e-1)
    # DSS learns no B: only λ, W = C, Δ and D.
    assert dict(layer.named_parameters()).keys() == {"log_neg_real", "imag", "W", "log_dt", "D"}
    assert all(p.dtype == torch.float32 for p in layer.parameters())
    lam, dt = continuous(layer)
    # λ are the eigenvalues of LegS's normal part S = A + PPᵀ, one per conjugate pair.
    a, _ = hippo.legs(8)
    p = np.sqrt(np.arange(8) + 0.5)
    eig = np.linalg.eigvals(a.numpy() + np.outer(p, p))
    expected = eig[eig.imag > 0]
    expected = expected[np.argsort(expected.imag)]
    for row in lam:
        np.testing.assert_allclose(row[np.argsort(row.imag)], expected, rtol=1e-6)
    assert np.all((dt >= 1e-3 * (1 - 1e-6)) & (dt <= 1e-1 * (1 + 1e-6)))


def test_eigvals_are_exp_lambda_dt() -> None:
    torch.manual_seed(0)
    layer = DSS(5, d_state=8)
    with torch.no_grad():  # any parameter value keeps Re λ < 0
        layer.log_neg_real.normal_(0, 2)
        layer.imag.normal_(0, 10)
    ssm = layer.discrete()
    lam, dt = continuous(layer)
    expected = np.exp(lam * dt[:, None])
    assert ssm.eigvals.shape == (5, 4) and ssm.diagonal and ssm.scale == 2
    np.testing.assert_allclose(ssm.eigvals.detach().numpy(), expected, rtol=1e-6)
    assert torch.equal(ssm.A_bar, ssm.eigvals)
    assert (ssm.eigvals.abs() < 1).all()
    np.testing.assert_allclose(ssm.dt.detach().numpy(), dt, rtol=1e-6)


def test_b_bar_matches_textbook_zoh() -> None:
    """B̄ = (Ā - I) A^{-1} B with B = 1, in float64 where |λΔ| > 1e-2 keeps it well conditioned."""
    torch.manual_seed(1)
    layer = DSS(4, d_state=16, dt_min=0.05, dt_max=0.5).double()
    lam, dt = continuous(layer)
    z = lam * dt[:, None]
    assert np.abs(z).min() > 1e-2
    textbook = (np.exp(z) - 1) / lam
    np.testing.assert_allclose(layer.discrete().B_bar.detach().numpy(), textbook, rtol=1e-12)


def test_b_bar_accurate_for_tiny_dt() -> None:
    """At Δ = 1e-9 the float32 layer keeps full precision; the naive quotient does not."""
    layer = DSS(2, d_state=16)
    with torch.no_grad():
        layer.log_dt.fill_(math.log(1e-9))
    lam, dt = continuous(layer)
    reference = np.vectorize(phi1_reference)(lam * dt[:, None]) * dt[:, None]
    stable = layer.discrete().B_bar.detach()
    assert stable.dtype == torch.complex64
    assert relative_error(stable, torch.from_numpy(reference)) < 1e-6
    lam32 = torch.complex(-layer.log_neg_real.exp(), layer.imag).detach()
    _, naive = discretize.zoh_naive(lam32, layer.log_dt.exp().detach()[:, None])
    naive_err = (naive.to(torch.complex128) - torch.from_numpy(reference)).abs().max()
    assert naive_err / np.abs(reference).max() > 0.1


def test_impulse_response_matches_explicit_powers() -> None:
    torch.manual_seed(2)
    layer = DSS(3, d_state=8, dt_min=0.01, dt_max=0.5).double()
    ssm = layer.discrete()
    length = 40
    power = torch.ones_like(ssm.A_bar)
    expected = []
    for _ in range(length):
        expected.append(2 * (ssm.C_bar * power * ssm.B_bar).sum(-1).real)
        power = power * ssm.A_bar
    kernel = layer.impulse_response(length)
    assert kernel.shape == (3, length)
    assert relative_error(kernel, torch.stack(expected, -1)) < 1e-12


def test_gradcheck_input_and_all_parameters() -> None:
    torch.manual_seed(0)
    layer = DSS(2, d_state=4, dt_min=0.05, dt_max=0.5).double()
    assert gradcheck_all(layer, torch.randn(2, 5, 2))


_CAUSAL_LAYER = DSS(3, d_state=8).double()


@settings(max_examples=30, deadline=None)
@given(
    length=st.integers(1, 40),
    cut=st.integers(0, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_causal(length: int, cut: int, seed: int) -> None:
    """Changing u at times >= cut leaves y at times < cut unchanged."""
    cut = min(cut, length)
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(2, length, 3, generator=gen, dtype=torch.float64)
    v = u.clone()
    v[:, cut:] = torch.randn(2, length - cut, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y, w = _CAUSAL_LAYER(u), _CAUSAL_LAYER(v)
    torch.testing.assert_close(y[:, :cut], w[:, :cut], rtol=0, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_vandermonde_equals_direct_powers(length: int, seed: int) -> None:
    """The split exp(zqT)·exp(zr) equals exp(zk) for every length, square or not."""
    from ssmprobe.models.base import vandermonde

    g = torch.Generator().manual_seed(seed)
    z = torch.complex(
        -torch.rand(2, 3, generator=g, dtype=torch.float64),
        4 * torch.randn(2, 3, generator=g, dtype=torch.float64),
    )
    direct = torch.exp(z.unsqueeze(-1) * torch.arange(length, dtype=torch.float64))
    torch.testing.assert_close(vandermonde(z, length), direct, rtol=1e-12, atol=1e-14)
