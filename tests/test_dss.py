"""DSS: FFT forward vs the recurrence, ZOH (eq. 6), DSS-softmax (eq. 7), kernel, gradients."""

from __future__ import annotations

import math
from pathlib import Path

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


@pytest.mark.parametrize("b_norm", ["exp", "softmax"])
def test_gradcheck_input_and_all_parameters(b_norm: str) -> None:
    torch.manual_seed(0)
    layer = DSS(2, d_state=4, dt_min=0.05, dt_max=0.5, b_norm=b_norm).double()
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


# --- DSS-softmax (eq. 7) ---------------------------------------------------------------------


def softmax_layer(seed: int, dt: tuple[float, float] = (0.01, 0.5)) -> DSS:
    torch.manual_seed(seed)
    return DSS(3, d_state=8, dt_min=dt[0], dt_max=dt[1], b_norm="softmax").double()


def eq7_b_bar(layer: DSS, length: int) -> np.ndarray:
    """B̄ = (e^{λΔ} - 1)/(λ(e^{LλΔ} - 1)) (eq. 7) in numpy, from the raw parameters."""
    lam, dt = continuous(layer)
    z = lam * dt[:, None]
    return (np.exp(z) - 1) / (lam * (np.exp(length * z) - 1))


@pytest.mark.parametrize("length", [1, 7, 64])
def test_softmax_b_bar_is_eq7(length: int) -> None:
    layer = softmax_layer(0)
    ssm = layer.discrete_at(length)
    np.testing.assert_allclose(ssm.B_bar.detach().numpy(), eq7_b_bar(layer, length), rtol=1e-12)
    # Ā, C̄, D and Δ do not depend on the normalisation
    exp_ssm = DSS(3, d_state=8).double()
    exp_ssm.load_state_dict(layer.state_dict())
    for name in ("A_bar", "C_bar", "D", "dt", "eigvals"):
        assert torch.equal(getattr(ssm, name), getattr(exp_ssm.discrete(), name))


@pytest.mark.parametrize("length", [1, 5, 40])
def test_softmax_forward_matches_hand_recurrence(length: int) -> None:
    """x_k = Ā x_{k-1} + B̄ u_k, y_k = 2 Re(C̄ x_k) + D u_k, B̄ from eq. 7 for this L."""
    layer = softmax_layer(1)
    lam, dt = continuous(layer)
    a_bar = np.exp(lam * dt[:, None])
    b_bar = eq7_b_bar(layer, length)
    c_bar = torch.view_as_complex(layer.W.detach()).numpy()
    d = layer.D.detach().numpy()
    u = np.random.default_rng(length).standard_normal((2, length, 3))
    x = np.zeros((2, *a_bar.shape), dtype=complex)
    expected = []
    for k in range(length):
        x = a_bar * x + b_bar * u[:, k, :, None]
        expected.append(2 * (c_bar * x).sum(-1).real + d * u[:, k])
    with torch.no_grad():
        y = layer(torch.from_numpy(u))
    np.testing.assert_allclose(y.numpy(), np.stack(expected, 1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("length", [1, 9, 64])
def test_softmax_is_exp_with_w_over_s(length: int) -> None:
    """Absorption: DSS-softmax with W = DSS-exp with W_n / s_n, s_n = e^{Lλ_nΔ} - 1, and
    DSS-exp with W = DSS-softmax with W_n s_n (same kernels, so same outputs)."""
    soft = softmax_layer(2)
    lam, dt = continuous(soft)
    s = np.exp(length * lam * dt[:, None]) - 1
    w = torch.view_as_complex(soft.W.detach()).clone()
    exp = DSS(3, d_state=8).double()
    exp.load_state_dict({**soft.state_dict(), "W": torch.view_as_real(w / torch.from_numpy(s))})
    with torch.no_grad():
        torch.testing.assert_close(
            soft.impulse_response(length), exp.impulse_response(length), rtol=1e-10, atol=1e-14
        )
        u = torch.randn(2, length, 3, dtype=torch.float64)
        torch.testing.assert_close(soft(u), exp(u), rtol=1e-10, atol=1e-12)
        soft.W.copy_(torch.view_as_real(w * torch.from_numpy(s)))
        exp.W.copy_(torch.view_as_real(w))
        torch.testing.assert_close(
            soft.impulse_response(length), exp.impulse_response(length), rtol=1e-10, atol=1e-14
        )


def test_softmax_discrete_needs_the_length() -> None:
    layer = softmax_layer(3)
    with pytest.raises(ValueError, match="discrete_at"):
        layer.discrete()
    # discrete_at(L) is what impulse_response(L) uses: h_k = 2 Re Σ C̄ Ā^k B̄
    ssm = layer.discrete_at(30)
    powers = ssm.A_bar[..., None] ** torch.arange(30)
    expected = 2 * torch.einsum("hn,hnk->hk", ssm.C_bar * ssm.B_bar, powers).real
    torch.testing.assert_close(layer.impulse_response(30), expected, rtol=1e-10, atol=1e-14)
    # DSS-exp: one B̄ for every L
    exp = DSS(3, d_state=8).double()
    assert torch.equal(exp.discrete().B_bar, exp.discrete_at(17).B_bar)


def test_softmax_b_bar_accurate_for_tiny_dt() -> None:
    """At Δ = 1e-9, float32: B̄ -> 1/(Lλ) at full precision, no 0/0."""
    layer = DSS(2, d_state=16, b_norm="softmax")
    with torch.no_grad():
        layer.log_dt.fill_(math.log(1e-9))
    lam, _ = continuous(layer)
    b_bar = layer.discrete_at(10).B_bar.detach()
    assert b_bar.dtype == torch.complex64
    assert relative_error(b_bar, torch.from_numpy(1 / (10 * lam))) < 1e-6


def test_b_norm_in_config_and_old_configs_load() -> None:
    from ssmprobe.checkpoint import bundled_dir, load_checkpoint
    from ssmprobe.loading import load_model
    from ssmprobe.models import build_model, model_config
    from ssmprobe.models.registry import ModelConfig

    config = model_config("dss", "digits", d_model=8, n_layers=1, b_norm="softmax")
    model = build_model(config.to_dict())
    assert [layer.b_norm for layer in model.ssm_layers().values()] == ["softmax"]
    with pytest.raises(ValueError, match="b_norm"):
        model_config("s4", "digits", b_norm="softmax")
    with pytest.raises(ValueError, match="b_norm"):
        model_config("dss", "digits", b_norm="zoh")
    # a config written before the option existed (the bundled checkpoints) is DSS-exp
    old = {k: v for k, v in config.to_dict().items() if k != "b_norm"}
    assert ModelConfig.from_dict(old).b_norm == "exp"
    ckpt = bundled_dir() / "dss_pgd.pt"
    assert "b_norm" not in load_checkpoint(ckpt).config
    bundled = load_model(ckpt)
    meta = bundled.meta
    assert {layer.b_norm for layer in bundled.ssm_layers().values()} == {"exp"}
    assert ModelConfig.from_dict(meta["config"]).b_norm == "exp"


def test_train_b_norm_flag(tmp_path: Path) -> None:
    from ssmprobe.cli import main
    from ssmprobe.loading import load_model

    args = "train --model dss --b-norm softmax --epochs 1 --d-model 8 --n-layers 1 --d-state 4"
    args += f" --train-eval-size 16 --test-eval-size 16 --steps 1 --quiet --out {tmp_path}"
    assert main(args.split()) == 0
    model = load_model(tmp_path / "dss_st_digits" / "last.pt")
    meta = model.meta
    assert meta["config"]["b_norm"] == "softmax"
    assert [layer.b_norm for layer in model.ssm_layers().values()] == ["softmax"]
