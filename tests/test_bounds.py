"""Theorem 4.1.1 bounds: constants, exact errors, spectral norm, and where the bounds hold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from ssmprobe.bounds.theorem import (
    c1_c2,
    causal_conv,
    check,
    diagonal_impulse_response,
    eigen_bounds,
    eigen_bounds_corrected,
    exact_error,
    exact_error_cov,
    geometric_sum,
    kernel_bounds,
    monte_carlo_error,
    perturbation_moments,
    spectral_bound,
    spectral_norm_sq,
)

F64 = torch.float64


def dense_h(h: Tensor) -> Tensor:
    """The lower-triangular Toeplitz matrix H of h (..., L) -> (..., L, L)."""
    length = h.shape[-1]
    idx = torch.arange(length)
    lag = idx[:, None] - idx[None, :]
    return torch.where(lag >= 0, h[..., lag.clamp(min=0)], torch.zeros((), dtype=h.dtype))


def ones_lower(length: int) -> np.ndarray:
    return np.tril(np.ones((length, length)))


def random_psd(length: int, gen: torch.Generator) -> Tensor:
    a = torch.randn(length, length + 3, generator=gen, dtype=F64)
    return a @ a.T / (length + 3)


# --- constants -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 5, 64, 784])
def test_c1_c2_match_eigenvalues_of_ete(length: int) -> None:
    e = ones_lower(length)
    eig = np.linalg.eigvalsh(e.T @ e)
    c1, c2 = c1_c2(length)
    assert c1 == pytest.approx(eig[0], rel=1e-9)
    assert c2 == pytest.approx(eig[-1], rel=1e-9)


def test_geometric_sum_edge_cases() -> None:
    length = 37
    r = torch.tensor([0.0, 0.3, 1.0 - 1e-12, 1.0, 1.0 + 1e-12, 1.05, 2.0], dtype=F64)
    direct = torch.stack([(ri ** torch.arange(length, dtype=F64)).sum() for ri in r])
    torch.testing.assert_close(geometric_sum(r, length), direct, rtol=1e-12, atol=0)
    assert geometric_sum(torch.tensor(1.0, dtype=F64), length).item() == length
    assert geometric_sum(torch.tensor(0.0, dtype=F64), length).item() == 1.0


# --- exact errors ----------------------------------------------------------------------------


def test_exact_error_matches_dense_trace_and_monte_carlo() -> None:
    gen = torch.Generator().manual_seed(3)
    length, mu, sigma2 = 7, 0.3, 0.5
    h = torch.randn(3, length, generator=gen, dtype=F64)
    s = sigma2 * torch.eye(length, dtype=F64) + mu**2 * torch.ones(length, length, dtype=F64)
    big_h = dense_h(h)
    dense = torch.einsum("cij,cik,kj->c", big_h, big_h, s)  # tr(HᵀH S)
    exact = exact_error(h, mu, sigma2)
    torch.testing.assert_close(exact, dense, rtol=1e-12, atol=0)

    def sampler(n: int) -> Tensor:
        return mu + math.sqrt(sigma2) * torch.randn(n, length, generator=gen, dtype=F64)

    mean, stderr = monte_carlo_error(h, sampler, 20_000)
    assert mean.shape == stderr.shape == (3,)
    assert bool(((mean - exact).abs() <= 4 * stderr).all())


def test_exact_error_cov_matches_dense_formula() -> None:
    gen = torch.Generator().manual_seed(4)
    length = 23
    h = torch.randn(4, length, generator=gen, dtype=F64)
    s = random_psd(length, gen)
    big_h = dense_h(h)
    dense = torch.diagonal(big_h @ s @ big_h.mT, dim1=-2, dim2=-1).sum(-1)
    torch.testing.assert_close(exact_error_cov(h, s), dense, rtol=1e-10, atol=1e-12)
    # chunking over channels, batched S, and leading channel dims give the same numbers
    small_chunks = exact_error_cov(h.reshape(2, 2, length), s, chunk_elements=length * length)
    torch.testing.assert_close(small_chunks, dense.reshape(2, 2), rtol=1e-10, atol=1e-12)
    batched = exact_error_cov(h, s.expand(4, length, length))
    torch.testing.assert_close(batched, dense, rtol=1e-10, atol=1e-12)
    # the i.i.d. special case agrees with the O(L) formula
    iid = 0.2 * torch.eye(length, dtype=F64) + 0.7**2 * torch.ones(length, length, dtype=F64)
    torch.testing.assert_close(
        exact_error_cov(h, iid), exact_error(h, 0.7, 0.2), rtol=1e-10, atol=0
    )


def test_causal_conv_is_h_times_u() -> None:
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(2, 11, generator=gen, dtype=F64)
    u = torch.randn(2, 11, generator=gen, dtype=F64)
    expected = (dense_h(h) @ u[..., None])[..., 0]
    torch.testing.assert_close(causal_conv(h, u), expected, rtol=1e-12, atol=1e-12)


def test_perturbation_moments() -> None:
    eps = torch.tensor([[1.0, -2.0, 3.0], [3.0, 0.0, -1.0]], dtype=F64)
    mu, m = perturbation_moments(eps)
    assert mu.item() == pytest.approx(4.0 / 6.0)
    assert m.item() == pytest.approx(5.0)  # E[ε²] per position: 5, 2, 5


# --- spectral norm ---------------------------------------------------------------------------


def test_spectral_norm_sq_matches_dense_eigenvalue() -> None:
    gen = torch.Generator().manual_seed(6)
    length = 50
    random_h = torch.randn(4, length, generator=gen, dtype=F64)
    lam = torch.tensor([[0.95, -0.6], [0.3, 0.99], [-0.9, 0.0]], dtype=F64)
    ssm_h = diagonal_impulse_response(
        lam, torch.ones(2, dtype=F64), torch.randn(3, 2, dtype=F64), length
    )
    for h in (random_h, ssm_h):
        big_h = dense_h(h).numpy()
        ref = np.linalg.eigvalsh(np.swapaxes(big_h, -1, -2) @ big_h)[..., -1]
        np.testing.assert_allclose(spectral_norm_sq(h).numpy(), ref, rtol=1e-6)


def test_the_buffered_normal_operator_is_the_two_convolutions_to_the_bit() -> None:
    from ssmprobe.bounds.theorem import _apply_h, _apply_ht, _NormalOperator

    g = torch.Generator().manual_seed(3)
    h, v = torch.randn(2, 7, 40, generator=g, dtype=torch.float64)
    h_hat = torch.fft.rfft(h, n=80)
    normal = _NormalOperator(7, 40, torch.float64)
    for rows in (7, 4):  # fewer rows reuse the front of the buffers, as converged ones leave
        want = _apply_ht(h_hat[:rows], _apply_h(h_hat[:rows], v[:rows], 40), 40)
        assert torch.equal(normal(h_hat[:rows], v[:rows]), want)


def test_spectral_norm_sq_degenerate_kernels() -> None:
    assert spectral_norm_sq(torch.zeros(3, 5, dtype=F64)).tolist() == [0.0, 0.0, 0.0]
    delta = torch.tensor([[2.0, 0.0, 0.0, 0.0], [-3.0, 0.0, 0.0, 0.0]], dtype=F64)  # H = aI
    torch.testing.assert_close(spectral_norm_sq(delta), torch.tensor([4.0, 9.0], dtype=F64))
    torch.testing.assert_close(
        spectral_norm_sq(torch.tensor([1.5], dtype=F64)), torch.tensor(2.25, dtype=F64)
    )


def test_spectral_norm_sq_is_scale_invariant() -> None:
    """Tiny or huge kernels (found by hypothesis: |h| ~ 1e-89) must not under/overflow."""
    h = torch.tensor([[1.0, 0.5, 0.25], [0.3, -2.0, 1.0]], dtype=F64)
    reference = spectral_norm_sq(h)
    for factor in (1e-150, 1e-89, 1e100):
        torch.testing.assert_close(
            spectral_norm_sq(h * factor) / factor**2, reference, rtol=1e-12, atol=0
        )


def test_spectral_norm_sq_long_many_channels() -> None:
    gen = torch.Generator().manual_seed(7)
    lam = 0.999 * torch.rand(128, 4, generator=gen, dtype=F64) * 2 - 0.999
    c = torch.randn(128, 4, generator=gen, dtype=F64)
    h = diagonal_impulse_response(lam, torch.ones(4, dtype=F64), c, 1024)
    value = spectral_norm_sq(h)
    assert value.shape == (128,)
    assert bool(torch.isfinite(value).all()) and bool((value > 0).all())
    # ||h||² = ||H e_0||² ≤ ||H||² ≤ ||h||₁²
    assert bool((value >= h.square().sum(-1) * (1 - 1e-12)).all())
    assert bool((value <= h.abs().sum(-1).square() * (1 + 1e-12)).all())


def test_spectral_norm_sq_stopping_each_channel_early_changes_nothing() -> None:
    """Kernels with an isolated top singular value (λ = 0.999, white noise) converge in a few
    dozen steps and stop, while fast-decaying ones (a flat top of the spectrum) take all 100:
    each channel equals the run with no early stop, and the fast ones the dense norm."""
    gen = torch.Generator().manual_seed(9)
    lam = torch.cat([0.5 * torch.rand(6, 3, generator=gen, dtype=F64), torch.full((2, 3), 0.999)])
    c = torch.randn(8, 3, generator=gen, dtype=F64)
    h = diagonal_impulse_response(lam, torch.ones(3, dtype=F64), c, 512)
    h = torch.cat([h, torch.randn(4, 512, generator=gen, dtype=F64)])
    early = spectral_norm_sq(h)
    torch.testing.assert_close(early, spectral_norm_sq(h, tol=0.0), rtol=1e-12, atol=0)
    big_h = dense_h(h[6:])
    dense = torch.linalg.eigvalsh(big_h.mT @ big_h)[..., -1]
    torch.testing.assert_close(early[6:], dense, rtol=1e-12, atol=0)


# --- impulse response ------------------------------------------------------------------------


def test_diagonal_impulse_response_matches_recurrence() -> None:
    gen = torch.Generator().manual_seed(8)
    length, n = 20, 3
    radius = 0.5 + 0.49 * torch.rand(2, n, generator=gen, dtype=F64)
    angle = 2 * math.pi * torch.rand(2, n, generator=gen, dtype=F64)
    lam = torch.polar(radius, angle)
    b = torch.randn(2, n, generator=gen, dtype=torch.complex128)
    c = torch.randn(2, n, generator=gen, dtype=torch.complex128)
    state = torch.zeros(2, n, dtype=torch.complex128)
    outputs = []
    for k in range(length):
        u = 1.0 if k == 0 else 0.0
        state = lam * state + b * u
        outputs.append((c * state).sum(-1).real)
    expected = torch.stack(outputs, -1)
    torch.testing.assert_close(
        diagonal_impulse_response(lam, b, c, length), expected, rtol=1e-12, atol=1e-12
    )


# --- where the bounds hold -------------------------------------------------------------------

TOL = 1e-9

eigenvalue = st.floats(-0.99, 0.99, allow_nan=False, allow_infinity=False)
weight = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)


@st.composite
def diagonal_ssms(draw: st.DrawFn) -> tuple[Tensor, Tensor, Tensor, int]:
    n = draw(st.integers(1, 4))
    lam = torch.tensor(draw(st.lists(eigenvalue, min_size=n, max_size=n)), dtype=F64)
    b = torch.tensor(draw(st.lists(weight, min_size=n, max_size=n)), dtype=F64)
    c = torch.tensor(draw(st.lists(weight, min_size=n, max_size=n)), dtype=F64)
    return lam, b, c, draw(st.integers(1, 40))


@settings(max_examples=40, deadline=None)
@given(
    ssm=diagonal_ssms(),
    mu=st.floats(-1.0, 1.0, allow_nan=False),
    sigma2=st.floats(0.0, 1.0, allow_nan=False),
)
def test_kernel_and_spectral_bounds_hold_for_iid_laws(
    ssm: tuple[Tensor, Tensor, Tensor, int], mu: float, sigma2: float
) -> None:
    lam, b, c, length = ssm
    h = diagonal_impulse_response(lam, b, c, length)
    big_m = sigma2 + mu**2
    exact = exact_error(h, mu, sigma2)
    lower, upper = kernel_bounds(h, mu, big_m)
    scale = big_m * h.square().sum() * length**2 + 1e-300
    assert lower <= exact + TOL * scale
    assert exact <= upper + TOL * scale
    assert exact <= spectral_bound(h, big_m) + TOL * scale
    assert check(lower, exact, upper, rtol=TOL)["all_hold"]


@settings(max_examples=40, deadline=None)
@given(ssm=diagonal_ssms(), seed=st.integers(0, 2**31 - 1))
def test_kernel_upper_bound_holds_for_non_iid_laws(
    ssm: tuple[Tensor, Tensor, Tensor, int], seed: int
) -> None:
    lam, b, c, length = ssm
    h = diagonal_impulse_response(lam, b, c, length)
    gen = torch.Generator().manual_seed(seed)
    _, c2 = c1_c2(length)
    energy = h.square().sum()
    lam_max = spectral_norm_sq(h)
    slack = TOL * (c2 * energy + 1e-300)

    # a fixed (deterministic) sign pattern: E[ε_k²] = scale², the paper's E·diag(ε) step fails
    scale = 0.5
    signs = torch.randint(0, 2, (length,), generator=gen).to(F64) * 2 - 1
    err = causal_conv(h, scale * signs).square().sum()
    assert err <= c2 * scale**2 * energy + slack * scale**2
    # the sign pattern of H's top singular vector, the hardest fixed ±scale input
    big_h = dense_h(h)
    _, _, vh = torch.linalg.svd(big_h)
    top = torch.where(vh[0] >= 0, 1.0, -1.0).to(F64)
    err_top = causal_conv(h, scale * top).square().sum()
    assert err_top <= c2 * scale**2 * energy + slack * scale**2

    # a random second moment S: tr(H S Hᵀ) ≤ c2·max(diag S)·||h||² and ≤ L·max(diag S)·λ_max
    s = random_psd(length, gen)
    m = s.diagonal().max()
    err_cov = exact_error_cov(h, s)
    assert err_cov <= c2 * m * energy + slack * m
    assert err_cov <= length * m * lam_max * (1 + 1e-9) + slack * m


def test_kernel_upper_bound_is_attained() -> None:
    """h = top eigenvector of EᵀE and ε ≡ sqrt(M) give E||Hε||² = c2 M ||h||²."""
    length, big_m = 12, 0.25
    e = ones_lower(length)
    _, vecs = np.linalg.eigh(e.T @ e)
    h = torch.from_numpy(np.abs(vecs[:, -1])).to(F64)
    err = causal_conv(h, math.sqrt(big_m) * torch.ones(length, dtype=F64)).square().sum()
    _, upper = kernel_bounds(h, 0.0, big_m)
    torch.testing.assert_close(err, upper, rtol=1e-10, atol=0)


def test_eigen_form_counter_example_is_reported_violated() -> None:
    """λ = (0.9, 0.5), b̄ = (1, 1), c̄ = (1, -1): C̄B̄ = 0 makes the eq. 11 upper bound 0."""
    length, mu, sigma2 = 16, 0.1, 0.01
    lam = torch.tensor([0.9, 0.5], dtype=F64)
    b = torch.tensor([1.0, 1.0], dtype=F64)
    c = torch.tensor([1.0, -1.0], dtype=F64)
    h = diagonal_impulse_response(lam, b, c, length)
    big_m = sigma2 + mu**2
    exact = exact_error(h, mu, sigma2)
    lower, upper = eigen_bounds(lam.abs().min(), lam.abs().max(), (c * b).sum(), length, mu, big_m)
    assert upper.item() == 0.0 and lower.item() == 0.0
    assert exact.item() > 0.0
    report = check(lower, exact, upper)
    assert report["violated"] and not bool(report["upper_holds"])
    assert bool(report["lower_holds"])
    assert math.isinf(report["upper_ratio"].item())
    # the kernel form still holds for the same system
    k_lower, k_upper = kernel_bounds(h, mu, big_m)
    assert check(k_lower, exact, k_upper)["all_hold"]


def test_eigen_lower_step_fails_for_one_state() -> None:
    """The proof's lower step |λ_min|^j (C̄B̄)² ≤ (C̄Ā^jB̄)² has the wrong power: one state
    with λ = 0.5 has (C̄Ā^jB̄)² = λ^{2j} (C̄B̄)², e.g. 0.0156 < 0.125 at j = 3. So eq. 11's lower
    side exceeds the kernel-form lower bound it was derived from; the kernel form holds."""
    length, mu, sigma2 = 8, 0.3, 0.04
    lam, b, c = (torch.tensor([v], dtype=F64) for v in (0.5, 1.0, 1.0))
    h = diagonal_impulse_response(lam, b, c, length)
    j = torch.arange(length, dtype=F64)
    torch.testing.assert_close(h.square(), 0.5 ** (2 * j) * h[0] ** 2, rtol=1e-15, atol=0)
    assert h[3] ** 2 == pytest.approx(0.015625) and 0.5**3 * h[0] ** 2 == 0.125
    assert bool((h[1:] ** 2 < 0.5 ** j[1:] * h[0] ** 2).all())  # fails at every j ≥ 1
    big_m = sigma2 + mu**2
    exact = exact_error(h, mu, sigma2)
    k_lower, k_upper = kernel_bounds(h, mu, big_m)
    assert check(k_lower, exact, k_upper)["all_hold"]
    e_lower, _ = eigen_bounds(lam.abs().min(), lam.abs().max(), h[0], length, mu, big_m)
    assert e_lower > 1.3 * k_lower  # Σ 0.5^j against Σ 0.25^j
    # with the power 2j the eigenvalue form of one state is the kernel form
    c_lower, c_upper = eigen_bounds_corrected(lam, b * c, length, mu, big_m)
    torch.testing.assert_close(c_lower, k_lower, rtol=1e-12, atol=0)
    torch.testing.assert_close(c_upper, k_upper, rtol=1e-12, atol=0)


def dft_system(length: int, rho: float) -> tuple[Tensor, Tensor]:
    """L modes λ_n = ρ e^{2πin/L}, residues r_n = (1 - ρ^{-1} e^{-2πin/L})/L: every |λ_n| = ρ
    and h_k = Re Σ_n r_n λ_n^k = (1, -1, 0, ..., 0) for k < L."""
    omega = torch.exp(2j * math.pi * torch.arange(length, dtype=F64) / length)
    return rho * omega, (1 - omega.conj() / rho) / length


def test_eigen_lower_bound_is_not_a_lower_bound() -> None:
    """`eigen_bounds`' lower side (eq. 11) above the exact error: with h = (1, -1, 0, ...) and
    ε ≡ μ, E||Hε||² = μ², while eq. 11 gives μ² c1 Σ_{j<L} ρ^j = 1.74 μ² (L = 8, ρ = 0.95)."""
    length, rho, mu = 8, 0.95, 0.5
    lam, residues = dft_system(length, rho)
    h = diagonal_impulse_response(lam, residues, torch.ones(length, dtype=F64), length)
    expected = torch.zeros(length, dtype=F64)
    expected[:2] = torch.tensor([1.0, -1.0])
    torch.testing.assert_close(h, expected, rtol=0, atol=1e-12)
    exact = exact_error(h, mu, 0.0)  # ε ≡ μ: mean μ, M = μ²
    assert exact.item() == pytest.approx(mu**2)
    lower, upper = eigen_bounds(lam.abs().min(), lam.abs().max(), h[0], length, mu, mu**2)
    assert lower.item() == pytest.approx(1.7417 * mu**2, rel=1e-4)
    report = check(lower, exact, upper)
    assert not bool(report["lower_holds"]) and bool(report["upper_holds"])
    # even with the power 2j no eigenvalue-form lower bound holds here (h_j = 0, 2 ≤ j < L)
    c1, _ = c1_c2(length)
    assert mu**2 * c1 * geometric_sum(torch.tensor(rho**2, dtype=F64), length) > exact
    # the kernel form holds on both sides; the corrected eigenvalue forms hold (lower: 0)
    k_lower, k_upper = kernel_bounds(h, mu, mu**2)
    assert check(k_lower, exact, k_upper)["all_hold"]
    c_lower, c_upper = eigen_bounds_corrected(lam, residues, length, mu, mu**2)
    assert c_lower.item() == 0.0 and check(c_lower, exact, c_upper)["all_hold"]


@st.composite
def modal_ssms(draw: st.DrawFn) -> tuple[Tensor, Tensor, float, int]:
    """Stable diagonal systems h_j = scale·Re Σ_n r_n λ_n^j: complex λ_n, r_n, scale 1 or 2."""
    n = draw(st.integers(1, 4))
    parts = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=n, max_size=n)
    radius = 0.99 * torch.tensor(draw(parts), dtype=F64)
    angle = 2 * math.pi * torch.tensor(draw(parts), dtype=F64)
    weights = st.lists(weight, min_size=n, max_size=n)
    real, imag = (torch.tensor(draw(weights), dtype=F64) for _ in range(2))
    r = torch.complex(real, imag)
    return (
        torch.polar(radius, angle),
        r,
        draw(st.sampled_from([1.0, 2.0])),
        draw(st.integers(1, 40)),
    )


@st.composite
def sign_definite_ssms(draw: st.DrawFn) -> tuple[Tensor, Tensor, float, int]:
    """Systems where every λ_n is real with one sign and every Re r_n has one sign."""
    n = draw(st.integers(1, 4))
    moduli = st.lists(st.floats(0.0, 0.99, allow_nan=False), min_size=n, max_size=n)
    lam = draw(st.sampled_from([1.0, -1.0])) * torch.tensor(draw(moduli), dtype=F64)
    sizes = st.lists(st.floats(0.0, 2.0, allow_nan=False), min_size=n, max_size=n)
    real = draw(st.sampled_from([1.0, -1.0])) * torch.tensor(draw(sizes), dtype=F64)
    imag = torch.tensor(draw(st.lists(weight, min_size=n, max_size=n)), dtype=F64)
    return (
        lam.to(torch.complex128),
        torch.complex(real, imag),
        draw(st.sampled_from([1.0, 2.0])),
        draw(st.integers(1, 40)),
    )


def modal_kernel(lam: Tensor, r: Tensor, scale: float, length: int) -> Tensor:
    """h_j = scale·Re Σ_n r_n λ_n^j, j < length."""
    return diagonal_impulse_response(lam, r, torch.full_like(r, scale), length)


@settings(max_examples=60, deadline=None)
@given(
    ssm=modal_ssms(),
    mu=st.floats(-1.0, 1.0, allow_nan=False),
    sigma2=st.floats(0.0, 1.0, allow_nan=False),
)
def test_corrected_eigen_bounds_hold(
    ssm: tuple[Tensor, Tensor, float, int], mu: float, sigma2: float
) -> None:
    """The corrected eigenvalue form with the power 2j (`eigen_bounds_corrected`): its upper
    side is above the kernel upper bound (so it holds for every law with E[ε_k²] ≤ M), its lower
    side below the kernel lower bound (0 unless the system is sign-definite)."""
    lam, r, scale, length = ssm
    h = modal_kernel(lam, r, scale, length)
    big_m = sigma2 + mu**2
    exact = exact_error(h, mu, sigma2)
    lower, upper = eigen_bounds_corrected(lam, r, length, mu, big_m, scale)
    k_lower, k_upper = kernel_bounds(h, mu, big_m)
    slack = TOL * (big_m * (scale * r.abs().sum()) ** 2 * length**2 + 1e-300)
    assert k_upper <= upper + slack and lower <= k_lower + slack
    assert check(lower, exact, upper, rtol=TOL)["all_hold"]


@settings(max_examples=60, deadline=None)
@given(ssm=sign_definite_ssms(), mu=st.floats(-1.0, 1.0, allow_nan=False))
def test_corrected_eigen_lower_bound_for_sign_definite_systems(
    ssm: tuple[Tensor, Tensor, float, int], mu: float
) -> None:
    """Every λ_n real of one sign, every Re r_n of one sign: h_j² ≥ |λ_min|^{2j} (C̄B̄)² per
    entry, so μ² c1 Σ_j |λ_min|^{2j} (C̄B̄)² ≤ μ² c1 ||h||² ≤ E||Hε||²."""
    lam, r, scale, length = ssm
    h = modal_kernel(lam, r, scale, length)
    j = torch.arange(length, dtype=F64)
    floor = lam.abs().min() ** (2 * j) * h[0] ** 2
    assert bool((h.square() >= floor * (1 - 1e-12)).all())
    lower, upper = eigen_bounds_corrected(lam, r, length, mu, mu**2, scale)
    expected = mu**2 * c1_c2(length)[0] * floor.sum()
    torch.testing.assert_close(lower, expected, rtol=1e-12, atol=1e-300)
    exact = exact_error(h, mu, 0.0)
    k_lower, _ = kernel_bounds(h, mu, mu**2)
    assert lower <= k_lower * (1 + TOL) + 1e-300
    assert check(lower, exact, upper, rtol=TOL)["all_hold"]


def test_eigen_bounds_scalar_system_values() -> None:
    length, mu, big_m = 9, 0.4, 0.3
    c1, c2 = c1_c2(length)
    lower, upper = eigen_bounds(
        torch.tensor(0.5, dtype=F64),
        torch.tensor(1.0, dtype=F64),
        torch.tensor(-2.0, dtype=F64),
        length,
        mu,
        big_m,
    )
    assert lower.item() == pytest.approx(mu**2 * c1 * 4 * (1 - 0.5**length) / 0.5, rel=1e-12)
    assert upper.item() == pytest.approx(c2 * big_m * 4 * length, rel=1e-12)


def test_check_ratios() -> None:
    report = check(
        torch.tensor([1.0, 0.0, 2.0], dtype=F64),
        torch.tensor([2.0, 0.0, 1.0], dtype=F64),
        torch.tensor([4.0, 0.0, 3.0], dtype=F64),
    )
    assert report["holds"].tolist() == [True, True, False]
    assert report["upper_ratio"].tolist() == [0.5, 1.0, 1.0 / 3.0]
    assert report["lower_ratio"].tolist() == [0.5, 1.0, 2.0]
    assert report["violated"] and not report["all_hold"]
