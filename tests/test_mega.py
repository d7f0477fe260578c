"""Mega: EMA against the recurrence and hand-computed kernels, gated attention against a
position-by-position reference, causality, and gradients to every parameter."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from ssmprobe.models.mega import EMA, GatedAttention
from ssmprobe.models.recurrence import run_recurrence


def randomize(module: torch.nn.Module, seed: int, std: float = 0.5) -> None:
    """Every parameter N(0, std²), so that no gate or projection sits at its init value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("length", [1, 7, 33, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ema_forward_matches_recurrence(length: int, seed: int) -> None:
    torch.manual_seed(seed)
    layer = EMA(d_model=5, d_state=6)
    u = torch.randn(3, length, 5)
    reference = copy.deepcopy(layer).double()
    with torch.no_grad():
        expected = run_recurrence(reference.discrete(), u.double())
        assert rel_err(layer(u), expected) < 1e-4
        assert rel_err(reference(u.double()), expected) < 1e-10


def test_ema_kernel_hand_computed() -> None:
    # α = δ = sigmoid(0) = 1/2, β = η = 1: Ā = 3/4, B̄ = 1/2, so K_k = (1/2)(3/4)^k.
    layer = EMA(d_model=1, d_state=1).double()
    with torch.no_grad():
        layer.alpha_logit.zero_()
        layer.delta_logit.zero_()
        layer.beta.fill_(1.0)
        layer.eta.fill_(1.0)
        layer.omega.fill_(2.0)
        kernel = layer.impulse_response(4)
        step_response = layer(torch.ones(1, 4, 1, dtype=torch.float64))
    torch.testing.assert_close(kernel, torch.tensor([[0.5, 0.375, 0.28125, 0.2109375]]).double())
    # Unit step: partial sums of K plus ω·1.
    expected = torch.tensor([2.5, 2.875, 3.15625, 3.3671875]).double()
    torch.testing.assert_close(step_response.flatten(), expected)
    ssm = layer.discrete()
    torch.testing.assert_close(ssm.A_bar, torch.tensor([[0.75]]).double())
    torch.testing.assert_close(ssm.B_bar, torch.tensor([[0.5]]).double())
    assert ssm.scale == 1.0 and not ssm.mimo and ssm.diagonal
    torch.testing.assert_close(ssm.dt, torch.ones(1).double())


def test_ema_kernel_matches_explicit_powers() -> None:
    torch.manual_seed(3)
    layer = EMA(d_model=4, d_state=3).double()
    ssm = layer.discrete()
    length = 20
    expected = torch.zeros(4, length, dtype=torch.float64)
    with torch.no_grad():
        for h in range(4):
            a = torch.diag(ssm.A_bar[h])
            power = torch.eye(3, dtype=torch.float64)
            for k in range(length):
                expected[h, k] = ssm.C_bar[h] @ power @ ssm.B_bar[h]
                power = power @ a
        torch.testing.assert_close(layer.impulse_response(length), expected)


logits = st.floats(-15.0, 15.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(a=st.lists(logits, min_size=6, max_size=6), d=st.lists(logits, min_size=6, max_size=6))
def test_ema_eigvals_are_one_minus_alpha_delta(a: list[float], d: list[float]) -> None:
    layer = EMA(d_model=2, d_state=3).double()
    with torch.no_grad():
        layer.alpha_logit.copy_(torch.tensor(a, dtype=torch.float64).view(2, 3))
        layer.delta_logit.copy_(torch.tensor(d, dtype=torch.float64).view(2, 3))
        eig = layer.discrete().eigvals
    sig = [1 / (1 + math.exp(-x)) for x in a], [1 / (1 + math.exp(-x)) for x in d]
    expected = torch.tensor([1 - p * q for p, q in zip(*sig, strict=True)], dtype=torch.float64)
    torch.testing.assert_close(eig, expected.view(2, 3), rtol=1e-12, atol=1e-15)
    assert bool(((eig > 0) & (eig < 1)).all())


@settings(max_examples=30, deadline=None)
@given(value=st.floats(-60.0, 60.0, allow_nan=False))
def test_ema_saturated_gates_stay_finite(value: float) -> None:
    # float32 sigmoids round to 0 or 1 here: Ā may hit 0 or 1 but never leaves [0, 1], and
    # neither the output nor any gradient becomes NaN or infinite.
    layer = EMA(d_model=2, d_state=2)
    with torch.no_grad():
        layer.alpha_logit.fill_(value)
        layer.delta_logit.fill_(value)
    eig = layer.discrete().eigvals
    assert bool(((eig >= 0) & (eig <= 1)).all())
    layer(torch.randn(1, 9, 2)).square().sum().backward()
    for p in layer.parameters():
        assert torch.isfinite(p.grad).all()


def dense_gated_attention(att: GatedAttention, ema_out: torch.Tensor, u: torch.Tensor):
    """The module docstring's formulas, one sample and one position at a time."""
    d, z, v = att.d_model, att.d_qk, att.d_v
    w, b = att.ema_proj.weight, att.ema_proj.bias
    rows = {"phi": slice(0, d), "z": slice(d, d + z), "gamma": slice(d + z, d + z + v)}
    rows["h"] = slice(d + z + v, 2 * d + z + v)
    silu = torch.nn.functional.silu
    out = torch.empty_like(u)
    for n in range(u.shape[0]):
        xp = silu(ema_out[n])
        lin = {key: xp @ w[r].T + b[r] for key, r in rows.items()}
        zz = silu(lin["z"])
        q = att.qk_gain[0] * zz + att.qk_bias[0]
        k = att.qk_gain[1] * zz + att.qk_bias[1]
        vv = silu(u[n] @ att.v_proj.weight.T + att.v_proj.bias)
        for t in range(u.shape[1]):
            scores = torch.stack([q[t] @ k[s] / math.sqrt(z) for s in range(t + 1)])
            weights = torch.exp(scores - scores.max())
            o = sum(weights[s] * vv[s] for s in range(t + 1)) / weights.sum()
            gamma = silu(lin["gamma"][t])
            phi = torch.sigmoid(lin["phi"][t])
            h = silu(lin["h"][t] + (gamma * o) @ att.h_proj.weight.T)
            out[n, t] = phi * h + (1 - phi) * u[n, t]
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_gated_attention_matches_dense_reference(seed: int) -> None:
    att = GatedAttention(d_model=4, d_qk=3, d_v=5).double()
    randomize(att, seed)
    gen = torch.Generator().manual_seed(seed + 10)
    ema_out = torch.randn(2, 6, 4, generator=gen, dtype=torch.float64)
    u = torch.randn(2, 6, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(att(ema_out, u), dense_gated_attention(att, ema_out, u))


def test_gated_attention_defaults_and_float32() -> None:
    att = GatedAttention(d_model=6)
    assert (att.d_qk, att.d_v) == (64, 6)
    y = att(torch.randn(2, 5, 6), torch.randn(2, 5, 6))
    assert y.shape == (2, 5, 6) and y.dtype == torch.float32
    assert att.double()(torch.randn(1, 3, 6).double(), torch.randn(1, 3, 6).double()).dtype == (
        torch.float64
    )


@settings(max_examples=15, deadline=None)
@given(step=st.integers(0, 10), seed=st.integers(0, 2**16))
def test_ema_then_attention_is_causal(step: int, seed: int) -> None:
    torch.manual_seed(seed)
    ema, att = EMA(d_model=4, d_state=3).double(), GatedAttention(d_model=4, d_qk=3).double()
    randomize(att, seed)
    u = torch.randn(2, 12, 4, dtype=torch.float64)
    changed = u.clone()
    changed[:, step + 1 :] = torch.randn_like(changed[:, step + 1 :])
    with torch.no_grad():
        y, y_changed = att(ema(u), u), att(ema(changed), changed)
    torch.testing.assert_close(y[:, : step + 1], y_changed[:, : step + 1], rtol=0, atol=1e-12)
    # The change must show afterwards, or the check above could not fail.
    assert not torch.allclose(y[:, step + 1 :], y_changed[:, step + 1 :])


def gradcheck_with_parameters(module: torch.nn.Module, *inputs: torch.Tensor) -> None:
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def fn(*args: torch.Tensor) -> torch.Tensor:
        values = dict(zip(names, args[len(inputs) :], strict=True))
        return functional_call(module, values, args[: len(inputs)])

    inputs = tuple(x.detach().clone().requires_grad_() for x in inputs)
    assert torch.autograd.gradcheck(fn, (*inputs, *params))


def test_ema_gradcheck() -> None:
    torch.manual_seed(0)
    layer = EMA(d_model=2, d_state=4).double()
    gradcheck_with_parameters(layer, torch.randn(2, 5, 2, dtype=torch.float64))


def test_gated_attention_gradcheck() -> None:
    att = GatedAttention(d_model=2, d_qk=3, d_v=2).double()
    randomize(att, 0)
    gen = torch.Generator().manual_seed(1)
    ema_out = torch.randn(1, 4, 2, generator=gen, dtype=torch.float64)
    u = torch.randn(1, 4, 2, generator=gen, dtype=torch.float64)
    gradcheck_with_parameters(att, ema_out, u)
