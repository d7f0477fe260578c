"""S4: the Cauchy/Woodbury kernel against dense matrix powers and the plain recurrence."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from ssmprobe.models import hippo
from ssmprobe.models.recurrence import run_recurrence
from ssmprobe.models.s4 import S4


def make_layer(seed: int, d_model: int = 3, d_state: int = 8, jitter: float = 0.0, **kw) -> S4:
    """A float64 S4 layer; `jitter` perturbs every parameter so no init structure is assumed."""
    torch.manual_seed(seed)
    layer = S4(d_model, d_state, **kw).double()
    with torch.no_grad():
        for param in layer.parameters():
            param.add_(jitter * torch.randn_like(param))
    return layer


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).norm() / ref.norm()).item()


def dense_a(layer: S4) -> torch.Tensor:
    """Continuous A = diag(Λ, Λ̄) - p p* with p = (P̃, P̃̄), built from the raw parameters."""
    lam = torch.complex(-torch.exp(layer.log_neg_re_lam), layer.im_lam)
    p = torch.view_as_complex(layer.P)
    lam, p = torch.cat([lam, lam.conj()], -1), torch.cat([p, p.conj()], -1)
    return torch.diag_embed(lam) - p[..., :, None] * p.conj()[..., None, :]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("length", [1, 7, 33, 100])
def test_forward_float32_matches_float64_recurrence(seed: int, length: int) -> None:
    torch.manual_seed(seed)
    layer = S4(4, 16)
    u = torch.randn(2, length, 4)
    y = layer(u)
    assert y.dtype == torch.float32 and y.shape == u.shape
    ref = run_recurrence(layer.double().discrete(), u.double())
    assert relative_error(y, ref) < 1e-4


@pytest.mark.parametrize("length", [1, 8, 37])
def test_forward_float64_matches_recurrence_exactly(length: int) -> None:
    layer = make_layer(3, jitter=0.1)
    u = torch.randn(2, length, 3, dtype=torch.float64)
    assert relative_error(layer(u), run_recurrence(layer.discrete(), u)) < 1e-10


@pytest.mark.parametrize("length", [1, 5, 16, 37])
@pytest.mark.parametrize("dt", [1e-3, 0.5])
def test_impulse_response_is_dense_matrix_powers(length: int, dt: float) -> None:
    layer = make_layer(4, jitter=0.1, dt_min=dt, dt_max=dt)
    ssm = layer.discrete()
    ref = torch.stack(
        [
            ssm.scale
            * (
                ssm.C_bar[:, None, :]
                @ torch.linalg.matrix_power(ssm.A_bar, k)
                @ ssm.B_bar[..., None]
            )
            .squeeze((1, 2))
            .real
            for k in range(length)
        ],
        dim=-1,
    )
    kernel = layer.impulse_response(length)
    assert kernel.shape == (3, length)
    assert relative_error(kernel, ref) < 1e-10


def test_discrete_is_bilinear_of_dense_continuous_a() -> None:
    layer = make_layer(5, jitter=0.2)
    ssm = layer.discrete()
    a = dense_a(layer)
    dt = torch.exp(layer.log_dt)[:, None, None]
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    b, c = (torch.view_as_complex(x) for x in (layer.B, layer.C))
    b, c = torch.cat([b, b.conj()], -1), torch.cat([c, c.conj()], -1)
    torch.testing.assert_close(ssm.A_bar, torch.linalg.solve(eye - dt / 2 * a, eye + dt / 2 * a))
    # The defining (Cayley) identities, with products only.
    torch.testing.assert_close((eye - dt / 2 * a) @ ssm.A_bar, eye + dt / 2 * a)
    torch.testing.assert_close(((eye - dt / 2 * a) @ ssm.B_bar[..., None])[..., 0], dt[..., 0] * b)
    torch.testing.assert_close(ssm.C_bar, c)
    torch.testing.assert_close(ssm.dt, dt[:, 0, 0])
    assert ssm.scale == 1 and not ssm.diagonal and ssm.A_bar.shape == (3, 8, 8)
    # Eigenvalues of Ā are the bilinear images of those of A (matched by nearest neighbour).
    lam = torch.linalg.eigvals(a)
    mapped = (1 + dt[..., 0] / 2 * lam) / (1 - dt[..., 0] / 2 * lam)
    gap = (ssm.eigvals[..., :, None] - mapped[..., None, :]).abs()
    assert gap.amin(-1).max() < 1e-10 and gap.amin(-2).max() < 1e-10


def test_init_is_legs_in_nplr_form() -> None:
    n = 8
    layer = make_layer(6, d_state=n, dt_min=1e-3, dt_max=1e-1)
    legs_a, legs_b = hippo.legs(n)
    _, _, _, v = hippo.legs_nplr(n)
    lam, p, b, _ = layer.continuous()
    assert lam.shape == (layer.d_model, n)
    w = torch.cat([v, v.conj()], dim=1)  # LegS's full unitary eigenbasis (V, V̄)
    torch.testing.assert_close(w.conj().T @ w, torch.eye(n, dtype=w.dtype))
    for h in range(layer.d_model):
        # The layer's A = diag(Λ) - p p* is LegS itself in the basis (V, V̄), not an approximation.
        a = torch.diag(lam[h]) - p[h][:, None] * p[h].conj()[None, :]
        torch.testing.assert_close(w @ a @ w.conj().T, legs_a.to(w.dtype), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            w @ p[h], torch.sqrt(torch.arange(n) + 0.5).to(w.dtype), atol=1e-6, rtol=1e-6
        )
        torch.testing.assert_close(w @ b[h], legs_b.to(w.dtype), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(lam.real, torch.full_like(lam.real, -0.5))
    dt = torch.exp(layer.log_dt)
    assert ((dt >= 1e-3 * (1 - 1e-6)) & (dt <= 1e-1 * (1 + 1e-6))).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_stable_at_init(seed: int) -> None:
    torch.manual_seed(seed)
    eigvals = S4(8, 64).discrete().eigvals
    assert eigvals.shape == (8, 64)
    assert (eigvals.abs() < 1).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), jitter=st.floats(0.0, 2.0), log_dt=st.floats(-8.0, 2.0))
def test_a_bar_is_a_contraction_for_any_parameters(seed: int, jitter: float, log_dt: float) -> None:
    """A + A* = 2 Re diag(Λ, Λ̄) - 2 p p* < 0 for every parameter value, so ||Ā||₂ < 1."""
    layer = make_layer(seed, jitter=jitter)
    with torch.no_grad():
        layer.log_dt.fill_(log_dt)
    assert torch.linalg.matrix_norm(layer.discrete().A_bar, ord=2).max() < 1


def test_gradcheck_input_and_every_parameter() -> None:
    layer = make_layer(7, d_model=2, d_state=4, jitter=0.1)
    names = [name for name, _ in layer.named_parameters()]
    params = tuple(param.detach().clone().requires_grad_() for param in layer.parameters())
    u = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)

    def run(u: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, dict(zip(names, values, strict=True)), (u,))

    assert torch.autograd.gradcheck(run, (u, *params))
    grads = torch.autograd.grad(run(u, *params).square().sum(), params)
    assert all(grad.abs().sum() > 0 for grad in grads)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), length=st.integers(1, 24), data=st.data())
def test_time_invariant_and_causal(seed: int, length: int, data: st.DataObject) -> None:
    layer = make_layer(seed, d_model=2, d_state=4, jitter=0.1)
    shift = data.draw(st.integers(0, length - 1))
    u = torch.randn(1, length, 2, dtype=torch.float64)
    y = layer(u)
    # Delaying the input by `shift` steps delays the output and leaves zeros before it.
    delayed = torch.cat([torch.zeros(1, shift, 2, dtype=u.dtype), u[:, : length - shift]], dim=1)
    y_delayed = layer(delayed)
    torch.testing.assert_close(y_delayed[:, shift:], y[:, : length - shift])
    head = y_delayed[:, :shift]
    torch.testing.assert_close(head, torch.zeros_like(head), atol=1e-12, rtol=0)
    # Changing the input after step `shift` leaves the output up to `shift` unchanged.
    changed = u.clone()
    changed[:, shift + 1 :] = torch.randn_like(changed[:, shift + 1 :])
    torch.testing.assert_close(layer(changed)[:, : shift + 1], y[:, : shift + 1])


def test_double_converts_every_parameter() -> None:
    layer = S4(2, 4).double()
    assert all(param.dtype == torch.float64 for param in layer.parameters())
    assert layer(torch.randn(1, 3, 2, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    layer = S4(4, 16)
    u = torch.randn(2, 50, 4)
    torch.testing.assert_close(layer.cuda()(u.cuda()).cpu(), layer.cpu()(u), atol=1e-5, rtol=1e-4)


def test_init_eigenvalues_are_legs() -> None:
    """At init A is LegS, whose eigenvalues are -1, ..., -N: Ā's are their bilinear images.

    LegS is far from normal, so its eigenvalues are ill-conditioned (the float64 error grows
    about 100x per two states: 4e-8 at N=4, 3e-4 at N=8); N=4 checks them to 1e-6.
    """
    n, dt = 4, 0.05
    layer = make_layer(0, d_state=n, dt_min=dt, dt_max=dt)
    eig = torch.sort(layer.discrete().eigvals.real[0]).values
    lam = -torch.arange(1, n + 1.0, dtype=torch.float64)
    expected = torch.sort((1 + dt / 2 * lam) / (1 - dt / 2 * lam)).values
    torch.testing.assert_close(eig, expected, atol=1e-6, rtol=1e-6)
