"""Output-error bounds of Theorem 4.1.1 (paper §4.1, Appendix A) and the exact error they bound.

Setting. A SISO LTI layer maps u (length L) to y = H u, where H is the L×L lower-triangular
Toeplitz matrix of the impulse response h = h1 = (C̄B̄, C̄ĀB̄, ..., C̄Ā^{L-1}B̄), i.e.
y_k = Σ_{j≤k} h_{k-j} u_j. A perturbation ε of the input changes the output by Hε. The law of ε
is summarised by μ = E[ε_k] (assumed the same for every k) and M ≥ max_k E[ε_k²]. E is the
L×L lower-triangular all-ones matrix; c1 ≤ c2 are the extreme eigenvalues of EᵀE, which are
1/(4 sin²((2k-1)π/(4L+2))), k = 1..L (c2 at k = 1, c1 at k = L).

Kernel form (eq. 14/15):  μ² c1 ||h||² ≤ E||Hε||² ≤ c2 M ||h||².

- Lower bound (eq. 12-14): E||Hε||² ≥ ||E[Hε]||² = μ² ||H1||² = μ² hᵀEᵀE h ≥ μ² c1 ||h||².
  It needs E[ε] = μ·1; with a position-dependent mean it is not guaranteed.
- Upper bound. The paper writes Hε = E·diag(ε)·h, which holds only when ε is constant in
  time. A correct argument for an LTI layer: Hε = T(ε) h, where T(ε) is the lower-triangular
  Toeplitz matrix with T(ε)_{im} = ε_{i-m}. Then E[TᵀT]_{mn} = Σ_{i≥max(m,n)} E[ε_{i-m} ε_{i-n}],
  a sum of L - max(m, n) = (EᵀE)_{mn} terms each bounded in modulus by M (Cauchy-Schwarz:
  |E[ε_a ε_b]| ≤ sqrt(E[ε_a²] E[ε_b²]) ≤ M). So |E[TᵀT]| ≤ M·EᵀE entrywise and
  E||Hε||² = hᵀ E[TᵀT] h ≤ M |h|ᵀ EᵀE |h| ≤ c2 M ||h||².
  The bound is attained: h the top eigenvector of EᵀE (positive entries) and ε ≡ sqrt(M).

Eigenvalue form (eq. 11/16), as the paper writes it, for an LTI layer:
μ² c1 Σ_{j=1}^{L} |λ_min|^{j-1} (C̄B̄)² ≤ E||Hε||² ≤ c2 M Σ_{j=1}^{L} |λ_max|^{j-1} (C̄B̄)².
Its proof (end of Appendix A.1) bounds each kernel entry,
|λ_min|^{j} (C̄B̄)² ≤ (C̄Ā^{j}B̄)² ≤ |λ_max|^{j} (C̄B̄)², and both steps are false:

- Upper step. C̄B̄ can vanish while later entries do not: λ = (0.9, 0.5), b̄ = (1, 1),
  c̄ = (1, -1) has C̄B̄ = 0, so the eigen-form upper bound is 0 while the error is positive.
- Lower step. The power is 2j, not j: one real state has (C̄Ā^{j}B̄)² = λ^{2j} (C̄B̄)², and
  |λ|^{2j} < |λ|^{j} for 0 < |λ| < 1 (λ = 0.5, j = 3: 0.0156 (C̄B̄)² against the claimed
  0.125 (C̄B̄)²). With several states no power of |λ_min| works: the L modes
  λ_n = ρ e^{2πin/L} with residues r_n = (1 - ρ^{-1} e^{-2πin/L})/L have |λ_n| = ρ and kernel
  h = (1, -1, 0, ..., 0), so ε ≡ μ gives E||Hε||² = μ², while eq. 11's lower side is
  μ² c1 Σ_{j<L} ρ^{j} (1.74 μ² at L = 8, ρ = 0.95). So it is not a lower bound either; where it
  is met on trained layers, that is slack (E||Hε||² ≥ μ²||H1||² is often far above
  μ² c1 ||h||²), not the theorem.

`eigen_bounds` implements eq. 11/16 verbatim so that such violations can be shown; `check`
reports them. What holds (tested): the kernel form, both sides, and eigenvalue forms with the
power 2j for a diagonalisable Ā with modes λ_n and residues r_n (h_j = scale·Re Σ_n r_n λ_n^j,
`lti.modal_form`), `eigen_bounds_corrected`:

- upper, always: |h_j| ≤ scale Σ_n |r_n| |λ_n|^j ≤ |λ_max|^j scale Σ_n |r_n|, so
  E||Hε||² ≤ c2 M ||h||² ≤ c2 M Σ_{j<L} |λ_max|^{2j} (scale Σ_n |r_n|)²; (C̄B̄)² has to become
  (scale Σ_n |r_n|)² (the first counter-example).
- lower, for a sign-definite system (every λ_n real, all of one sign; every Re r_n of one sign;
  one real state is one): h_j = Σ_n a_n λ_n^j, a_n = scale·Re r_n, is a sum of terms of one
  sign, so |h_j| = Σ_n |a_n| |λ_n|^j ≥ |λ_min|^j |Σ_n a_n| = |λ_min|^j |C̄B̄| (C̄B̄ = h_0) and
  E||Hε||² ≥ μ² c1 ||h||² ≥ μ² c1 Σ_{j<L} |λ_min|^{2j} (C̄B̄)². Other systems get 0: the
  second counter-example has h_j = 0 for 2 ≤ j < L while every |λ_n| = ρ, so no
  eigenvalue-form lower bound exists for them.

Exact error. E||Hε||² = tr(H S Hᵀ) with S = E[εεᵀ]. For i.i.d. entries with mean μ and variance
σ², S = σ² I + μ² 11ᵀ and E||Hε||² = σ² ||H||_F² + μ² ||H1||², with
||H||_F² = Σ_{k=0}^{L-1} (L-k) h_k² and H1 = cumsum(h): O(L), no L×L matrix.

Spectral bound. For any law, tr(H S Hᵀ) = tr(HᵀH S) ≤ λ_max(HᵀH) tr(S) ≤ λ_max(HᵀH) L M
(S is positive semi-definite). `spectral_norm_sq` computes λ_max(HᵀH) = ||H||₂² matrix-free:
H v is a causal convolution of h with v and Hᵀ w the correlation, both by FFT of length 2L.
The iteration is Lanczos, the Krylov-subspace form of power iteration: after k matvecs its
top Ritz value is never below the power-iteration Rayleigh quotient, and it reaches round-off
accuracy in ~50-100 steps where plain power iteration is still ~1e-3 off (the top singular
values of long Toeplitz matrices cluster). Like the power method, it approaches λ_max from
below, so an unconverged run can underestimate the bound slightly (raise `iters` for kernels
with |λ| close to 1); ||h||² ≤ λ_max(HᵀH) ≤ ||h||₁² always.

Time-varying layers (Mamba, eq. 10). y = Hε with H lower triangular but not Toeplitz:
H_kj = C_k Ā_k ⋯ Ā_{j+1} B̄_j. The exact error and the spectral bound hold for any H
(`exact_error_matrix`, `spectral_bound_matrix`); the kernel form, applied to H's first column
h1 (the response to an impulse at step 0), rests on the Toeplitz structure and need not hold,
and the eigenvalue form (`eigen_bounds_time_varying`) has, besides, the two false steps above
(one state: (C_k Π_i Ā_i B̄)² = Π_i Ā_i² (C_k B̄)², not Π_i |Ā_i| (C_k B̄)²).

All functions take float64 tensors (other dtypes are converted) and are vectorised over the
leading (channel) dimensions of h, shape (..., L).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ssmprobe.models.base import fft_causal_conv

Scalar = float | Tensor

_DTYPE = torch.float64


def _f64(x: Scalar) -> Tensor:
    """`x` as a float64 tensor (complex stays complex128); Python floats never pass float32."""
    if not isinstance(x, Tensor):
        return torch.as_tensor(x, dtype=torch.complex128 if isinstance(x, complex) else _DTYPE)
    return x.to(torch.complex128 if x.is_complex() else _DTYPE)


def _length(h: Tensor) -> int:
    """The sequence length L = h.shape[-1], which must be at least 1."""
    length = h.shape[-1]
    if length < 1:
        raise ValueError("the impulse response needs length L >= 1")
    return length


def c1_c2(L: int) -> tuple[float, float]:
    """(c1, c2): the smallest and largest eigenvalues of EᵀE (Appendix A, eq. 14/15).

    E is the L×L lower-triangular all-ones matrix; the eigenvalues of EᵀE are
    1/(4 sin²((2k-1)π/(4L+2))), k = 1..L; c2 is the k = 1 one, c1 the k = L one.
    """
    if L < 1:
        raise ValueError("L must be >= 1")
    denom = 4 * L + 2
    c2 = 1.0 / (4.0 * math.sin(math.pi / denom) ** 2)
    c1 = 1.0 / (4.0 * math.sin((2 * L - 1) * math.pi / denom) ** 2)
    return c1, c2


def causal_conv(h: Tensor, u: Tensor) -> Tensor:
    """y = H u in float64 (`models.base.fft_causal_conv`); `h` and `u` have the same last
    length L and broadcast over the leading dimensions."""
    h, u = _f64(h), _f64(u)
    if h.shape[-1] != u.shape[-1]:
        raise ValueError(f"h has length {h.shape[-1]}, u has length {u.shape[-1]}")
    return fft_causal_conv(u, h)


def _apply_h(h_hat: Tensor, v: Tensor, length: int) -> Tensor:
    """H v from the length-2L rfft of h."""
    n = 2 * length
    return torch.fft.irfft(h_hat * torch.fft.rfft(v, n=n), n=n)[..., :length]


def _apply_ht(h_hat: Tensor, w: Tensor, length: int) -> Tensor:
    """Hᵀ w = (Σ_{i≥j} h_{i-j} w_i)_j: circular correlation of the zero-padded h and w."""
    n = 2 * length
    return torch.fft.irfft(h_hat.conj() * torch.fft.rfft(w, n=n), n=n)[..., :length]


class _NormalOperator:
    """v -> HᵀH v for rows of kernels, from their length-2L rfft, in buffers kept across
    calls: at S5's 4096 kernels of length 1024 each temporary is 33-67 MB, and a fresh one
    per operation cost more in page faults than the FFTs. The same operations as
    `_apply_ht(h_hat, _apply_h(h_hat, v))`, so the same values to the bit."""

    def __init__(self, rows: int, length: int, dtype: torch.dtype) -> None:
        self.length = length
        self.spectrum = torch.empty(
            rows, length + 1, dtype=torch.promote_types(dtype, torch.cfloat)
        )
        self.signal = torch.empty(rows, 2 * length, dtype=dtype)

    def __call__(self, h_hat: Tensor, v: Tensor) -> Tensor:
        n, length, rows = 2 * self.length, self.length, len(v)
        spectrum, signal = self.spectrum[:rows], self.signal[:rows]
        # zero-padded to 2L in place: rfft(x, n=2L) would pad into a fresh tensor
        signal[:, :length].copy_(v)
        signal[:, length:].zero_()
        torch.fft.rfft(signal, out=spectrum)
        torch.fft.irfft(torch.mul(h_hat, spectrum, out=spectrum), n=n, out=signal)  # H v
        signal[:, length:].zero_()
        torch.fft.rfft(signal, out=spectrum)
        torch.fft.irfft(torch.mul(h_hat.conj(), spectrum, out=spectrum), n=n, out=signal)
        return signal[:, :length]


def kernel_bounds(h: Tensor, mu: Scalar, M: Scalar) -> tuple[Tensor, Tensor]:
    """(μ² c1 ||h||², c2 M ||h||²) per channel: the kernel form of Theorem 4.1.1 (eq. 14/15).

    `h` is (..., L); `mu` and `M` broadcast against the channel shape (...).
    """
    h = _f64(h)
    c1, c2 = c1_c2(_length(h))
    energy = h.square().sum(-1)
    return _f64(mu).square() * c1 * energy, c2 * _f64(M) * energy


def geometric_sum(r: Tensor, L: int) -> Tensor:
    """Σ_{j=0}^{L-1} r^j for r ≥ 0, stable for r near 1 (= L at r = 1) and for r > 1.

    Uses expm1(L log r)/(r - 1), which keeps full relative precision as r -> 1 (r - 1 is exact
    there) and gives 1 at r = 0 (0⁰ = 1); overflows to inf only when the sum does.
    """
    r = _f64(r)
    if bool((r < 0).any()):
        raise ValueError("geometric_sum expects moduli r >= 0")
    one = r == 1
    safe = torch.where(one, torch.full_like(r, 2.0), r)
    value = torch.expm1(L * torch.log(safe)) / (safe - 1)
    return torch.where(one, torch.full_like(r, float(L)), value)


def eigen_bounds(
    lam_min_abs: Tensor, lam_max_abs: Tensor, cb: Tensor, L: int, mu: Scalar, M: Scalar
) -> tuple[Tensor, Tensor]:
    """Eigenvalue form of Theorem 4.1.1 (eq. 11/16) for an LTI layer, exactly as written.

    lower = μ² c1 Σ_{j=1}^{L} |λ_min|^{j-1} (C̄B̄)², upper = c2 M Σ_{j=1}^{L} |λ_max|^{j-1} (C̄B̄)²,
    with |λ_min|, |λ_max| the smallest / largest eigenvalue moduli of Ā and cb = C̄B̄ (complex
    cb enters as |cb|²). Neither side is a valid bound (the module docstring has a
    counter-example to each); `eigen_bounds_corrected` gives eigenvalue forms that are.
    """
    c1, c2 = c1_c2(L)
    cb2 = _f64(cb).abs().square()
    lower = _f64(mu).square() * c1 * geometric_sum(_f64(lam_min_abs), L) * cb2
    upper = c2 * _f64(M) * geometric_sum(_f64(lam_max_abs), L) * cb2
    return lower, upper


def _one_sign(x: Tensor) -> Tensor:
    """Whether all entries along the last dimension are ≥ 0, or all ≤ 0."""
    return (x >= 0).all(-1) | (x <= 0).all(-1)


def eigen_bounds_corrected(
    lam: Tensor, residues: Tensor, L: int, mu: Scalar, M: Scalar, scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Eigenvalue forms of Theorem 4.1.1 that hold (module docstring), for h_j =
    scale·Re Σ_n r_n λ_n^j with modes `lam` and residues r = `residues`, both (..., N):

    upper = c2 M Σ_{j<L} |λ_max|^{2j} (scale Σ_n |r_n|)²   (any such system),
    lower = μ² c1 Σ_{j<L} |λ_min|^{2j} (C̄B̄)², C̄B̄ = h_0, for a sign-definite system (every λ_n
    real, all of one sign, every Re r_n of one sign), else 0.
    """
    lam, r = _f64(lam), scale * _f64(residues)
    c1, c2 = c1_c2(L)
    moduli = lam.abs()
    weight = r.abs().sum(-1)
    upper = c2 * _f64(M) * geometric_sum(moduli.amax(-1).square(), L) * weight.square()
    real_r = r.real if r.is_complex() else r  # h_j = Σ_n Re(r_n) λ_n^j where λ is real
    definite = _one_sign(lam.real) & _one_sign(real_r)
    if lam.is_complex():
        definite &= (lam.imag == 0).all(-1)
    cb2 = real_r.sum(-1).square()
    lower = _f64(mu).square() * c1 * geometric_sum(moduli.amin(-1).square(), L) * cb2
    return torch.where(definite, lower, torch.zeros_like(lower)), upper


def eigen_bounds_time_varying(
    lam_min_abs: Tensor, lam_max_abs: Tensor, cb: Tensor, mu: Scalar, M: Scalar
) -> tuple[Tensor, Tensor]:
    """Eq. 11 for a time-varying layer: per-step extreme eigenvalue moduli of Ā_k and C̄_k B̄_k,
    all (..., L). lower = μ² c1 Σ_k [Π_{i=1}^{k} |λ_i^min|] (C̄_k B̄_k)², upper likewise with
    |λ^max| and c2 M (k = 0..L-1; the product runs over the k transitions an impulse at step 0
    crosses to reach step k, so constant parameters give `eigen_bounds`). Like `eigen_bounds`,
    not a valid bound on either side (module docstring)."""
    cb2 = _f64(cb).abs().square()
    c1, c2 = c1_c2(_length(cb2))

    def crossed(moduli: Tensor) -> Tensor:
        logs = torch.log(_f64(moduli)[..., 1:]).cumsum(dim=-1)
        return torch.exp(torch.cat([torch.zeros_like(logs[..., :1]), logs], dim=-1))

    lower = _f64(mu).square() * c1 * (crossed(lam_min_abs) * cb2).sum(-1)
    upper = c2 * _f64(M) * (crossed(lam_max_abs) * cb2).sum(-1)
    return lower, upper


def exact_error_matrix(H: Tensor, mu: Scalar, sigma2: Scalar) -> Tensor:
    """E||Hε||² = σ² ||H||_F² + μ² ||H1||² for any (..., L, L) matrix H and i.i.d. ε."""
    H = _f64(H)
    fro = H.square().sum(dim=(-2, -1))
    return _f64(sigma2) * fro + _f64(mu).square() * H.sum(-1).square().sum(-1)


def spectral_bound_matrix(H: Tensor, M: Scalar) -> Tensor:
    """M·L·λ_max(HᵀH) for a dense (..., L, L) H: valid for any H and any law with E[ε_k²] ≤ M."""
    H = _f64(H)
    return _f64(M) * H.shape[-1] * torch.linalg.matrix_norm(H, ord=2).square()


def exact_error(h: Tensor, mu: Scalar, sigma2: Scalar) -> Tensor:
    """E||Hε||² = σ² ||H||_F² + μ² ||H1||² for i.i.d. ε_k with mean μ, variance σ² (eq. 12).

    ||H||_F² = Σ_{k=0}^{L-1} (L-k) h_k² and H1 = cumsum(h); O(L) per channel.
    """
    h = _f64(h)
    length = _length(h)
    weights = torch.arange(length, 0, -1, dtype=_DTYPE)
    frobenius = (weights * h.square()).sum(-1)
    mean_part = torch.cumsum(h, dim=-1).square().sum(-1)
    return _f64(sigma2) * frobenius + _f64(mu).square() * mean_part


def exact_error_cov(h: Tensor, second_moment: Tensor, chunk_elements: int = 1 << 23) -> Tensor:
    """E||Hε||² = tr(H S Hᵀ) for a given second moment S = E[εεᵀ] (L, L) (eq. 15, first line).

    Computed as two batches of FFT convolutions (H applied to the columns of S, then to the
    rows of HS), O(L² log L) time per channel. A shared (L, L) S is processed a few channels
    at a time (about `chunk_elements` L×L entries at once) to bound memory; a batched
    (..., L, L) S broadcasts against the channel shape of `h` and is done in one go.
    """
    h = _f64(h)
    s = _f64(second_moment)
    length = _length(h)
    if s.shape[-2:] != (length, length):
        raise ValueError(f"second_moment must end in ({length}, {length}), got {tuple(s.shape)}")
    if s.dim() > 2 or h.dim() == 1:
        return _trace_hsh(h, s, length)
    flat = h.reshape(-1, length)
    per_chunk = max(1, chunk_elements // (length * length))
    parts = [_trace_hsh(flat[i : i + per_chunk], s, length) for i in range(0, len(flat), per_chunk)]
    return torch.cat(parts).reshape(h.shape[:-1])


def _trace_hsh(h: Tensor, s: Tensor, length: int) -> Tensor:
    """tr(H S Hᵀ) by two FFT convolutions over the rows of L×L matrices."""
    h_hat = torch.fft.rfft(h, n=2 * length)[..., None, :]
    hs_t = _apply_h(h_hat, s.mT, length)  # row j: H s_j, i.e. (H S)ᵀ
    hsh = _apply_h(h_hat, hs_t.mT, length)  # row i: H (row i of HS)ᵀ, i.e. (H S Hᵀ)ᵀ
    return torch.diagonal(hsh, dim1=-2, dim2=-1).sum(-1)


def _ritz_max(alphas: Tensor, betas: Tensor) -> Tensor:
    """Largest eigenvalue of the symmetric tridiagonal matrices (alphas, betas)."""
    t = torch.diag_embed(alphas)
    if betas.shape[-1] > 0:
        t = t + torch.diag_embed(betas, offset=1) + torch.diag_embed(betas, offset=-1)
    return torch.linalg.eigvalsh(t)[..., -1]


def spectral_norm_sq(h: Tensor, iters: int = 100, tol: float = 1e-10) -> Tensor:
    """λ_max(HᵀH) = ||H||₂² per channel, matrix-free (the factor of `spectral_bound`).

    Krylov (Lanczos) power iteration on HᵀH: each step costs one H and one Hᵀ matvec, both FFT
    convolutions of length 2L, plus O(L) vector work, and keeps only two basis vectors. The
    estimate is the top eigenvalue of the Lanczos tridiagonal matrix; it rises towards λ_max
    and, even after the basis loses orthogonality in floating point, exceeds it only by
    round-off (lost orthogonality only repeats converged Ritz values). Runs at most `iters`
    steps; every 10 steps, a channel whose estimate changed by less than `tol` (relative) at
    this check and the one before stops (a 10-step plateau can still rise), so the work follows
    the slowest channels only: most of a trained S5 layer's 4096 kernels stop after 30-40
    steps, a few need 80. On breakdown (an invariant subspace) the channel restarts from a
    fresh vector with a zero coupling, which keeps every Ritz value inside the spectrum. The
    start vectors come from a fixed seed, so results are reproducible.
    """
    h = _f64(h)
    length = _length(h)
    batch = h.shape[:-1]
    flat = h.reshape(-1, length)
    steps = max(1, iters)
    # Work with h / max|h|: HᵀH v is quadratic in h and its norm quartic, which would
    # overflow or underflow for |h| far from 1.
    peak = flat.abs().amax(dim=-1)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    h_hat = torch.fft.rfft(flat / peak[:, None], n=2 * length)
    gen = torch.Generator().manual_seed(0)

    def random_unit(rows: int) -> Tensor:
        r = torch.randn((rows, length), generator=gen, dtype=_DTYPE)
        return r / r.norm(dim=-1, keepdim=True)

    count = flat.shape[0]
    normal = _NormalOperator(count, length, _DTYPE)
    # products and the residual w, reused (see _NormalOperator)
    scratch, residual = torch.empty(2, count, length, dtype=_DTYPE)

    def product(a: Tensor, b: Tensor) -> Tensor:
        return torch.mul(a, b, out=scratch[: len(b)])

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return product(a, b).sum(-1, keepdim=True)

    def minus(w: Tensor, c: Tensor, u: Tensor) -> Tensor:
        """w - c u, in place."""
        return w.sub_(product(c, u))

    alphas, betas = flat.new_zeros((count, steps)), flat.new_zeros((count, steps))
    top = flat.new_zeros(count)
    active = torch.arange(count)  # the channels still iterating, and their state below
    v = random_unit(count)
    v_prev = torch.zeros_like(v)
    beta_prev = flat.new_zeros((count, 1))
    scale = flat.new_zeros((count, 1))
    previous = torch.full((count,), math.inf, dtype=_DTYPE)
    calm = torch.zeros(count, dtype=torch.bool)  # stable at the last check
    for j in range(steps):
        w = torch.sub(normal(h_hat, v), product(beta_prev, v_prev), out=residual[: len(v)])
        alpha = dot(w, v)
        w = minus(w, alpha, v)
        on_v, on_prev = dot(w, v), dot(w, v_prev)
        w = minus(minus(w, on_v, v), on_prev, v_prev)  # local re-orthogonalisation
        alphas[active, j] = alpha[:, 0]
        if j == steps - 1:
            break
        beta = w.norm(dim=-1, keepdim=True)
        scale = torch.maximum(scale, torch.maximum(alpha.abs(), beta))
        broke = beta <= 1e-13 * scale
        nxt = w / beta.clamp_min(torch.finfo(_DTYPE).tiny)
        if bool(broke.any()):
            nxt = torch.where(broke, random_unit(len(active)), nxt)
            beta = torch.where(broke, torch.zeros_like(beta), beta)
        betas[active, j] = beta[:, 0]
        v_prev, v, beta_prev = v, nxt, beta
        if (j + 1) % 10 == 0:
            estimate = _ritz_max(alphas[active, : j + 1], betas[active, :j])
            still = (estimate - previous).abs() <= tol * estimate.abs()
            done = still & calm  # unchanged over 20 steps: a 10-step plateau can still rise
            top[active[done]] = estimate[done]
            going = ~done
            active, previous, calm = active[going], estimate[going], still[going]
            if len(active) == 0:
                break
            h_hat, v, v_prev = h_hat[going], v[going], v_prev[going]
            beta_prev, scale = beta_prev[going], scale[going]
    if len(active):
        top[active] = _ritz_max(alphas[active, : j + 1], betas[active, :j])
    return (top.clamp_min(0.0) * peak.square()).reshape(batch)


def spectral_bound(h: Tensor, M: Scalar, iters: int = 100, tol: float = 1e-10) -> Tensor:
    """M·L·λ_max(HᵀH): E||Hε||² = tr(H S Hᵀ) ≤ λ_max(HᵀH)·tr(S) ≤ λ_max(HᵀH)·L·M.

    Valid for any law of ε with max_k E[ε_k²] ≤ M; `iters` and `tol` go to
    `spectral_norm_sq`.
    """
    h = _f64(h)
    return _f64(M) * _length(h) * spectral_norm_sq(h, iters=iters, tol=tol)


def monte_carlo_error(
    h: Tensor, sampler: Callable[[int], Tensor], n: int, chunk: int = 512
) -> tuple[Tensor, Tensor]:
    """(mean, standard error) of ||Hε||² over n draws ε = sampler(n) of shape (n, L).

    The estimate of the left-hand side of eq. 12/15; H ε is an FFT convolution, done `chunk`
    samples at a time. Returns tensors of the channel shape of `h`.
    """
    h = _f64(h)
    length = _length(h)
    eps = _f64(sampler(n))
    if eps.shape != (n, length):
        raise ValueError(f"sampler({n}) must return shape ({n}, {length}), got {tuple(eps.shape)}")
    h_hat = torch.fft.rfft(h, n=2 * length)[..., None, :]
    parts = [
        _apply_h(h_hat, eps[start : start + chunk], length).square().sum(-1)
        for start in range(0, n, chunk)
    ]
    energies = torch.cat(parts, dim=-1)  # (..., n)
    mean = energies.mean(-1)
    if n < 2:
        return mean, torch.full_like(mean, float("inf"))
    return mean, energies.std(dim=-1, correction=1) / math.sqrt(n)


def perturbation_moments(eps: Tensor) -> tuple[Tensor, Tensor]:
    """(μ, M) of Theorem 4.1.1 estimated from samples `eps` of shape (n, ..., L).

    μ is the mean over samples and positions; M = max_k E[ε_k²] with E the sample mean.
    Extra middle dimensions (e.g. channels) are kept. μ is pooled, so the lower bound is
    only meaningful if the per-position means are (close to) equal.
    """
    eps = _f64(eps)
    mu = eps.mean(dim=(0, -1))
    second = eps.square().mean(dim=0).amax(dim=-1)
    return mu, second


def diagonal_impulse_response(lam: Tensor, b: Tensor, c: Tensor, L: int) -> Tensor:
    """h_k = Re Σ_n c_n λ_n^k b_n, k = 0..L-1, for a diagonal (possibly complex) SISO system.

    `lam`, `b`, `c` are (..., N) (Ā's eigenvalues, B̄, C̄); returns float64 (..., L). Powers are
    built by cumulative products, so λ = 0 gives h_k = 0 for k ≥ 1. For a state keeping one
    member of each conjugate pair, pass 2·C̄ (the `scale` of `ssmprobe.models.base`).
    """
    if L < 1:
        raise ValueError("L must be >= 1")
    lam, b, c = _f64(lam), _f64(b), _f64(c)
    complex_case = lam.is_complex() or b.is_complex() or c.is_complex()
    dtype = torch.complex128 if complex_case else _DTYPE
    lam, b, c = torch.broadcast_tensors(lam.to(dtype), b.to(dtype), c.to(dtype))
    steps = lam[..., None].expand(*lam.shape, L - 1)
    powers = torch.cat([torch.ones_like(lam)[..., None], torch.cumprod(steps, dim=-1)], dim=-1)
    h = ((c * b)[..., None] * powers).sum(-2)
    return h.real if complex_case else h


def check(
    lower: Scalar, measured: Scalar, upper: Scalar, rtol: float = 1e-9
) -> dict[str, Tensor | bool]:
    """Whether lower ≤ measured ≤ upper holds (per channel) and how tight each side is.

    Returns tensors `lower_holds`, `upper_holds`, `holds` (with relative slack `rtol` for
    round-off), `upper_ratio` = measured/upper and `lower_ratio` = lower/measured (≤ 1 when
    the bound holds; inf when dividing a positive number by 0, 1 for 0/0), plus Python bools
    `all_hold` and `violated`.
    """
    lower, measured, upper = _f64(lower), _f64(measured), _f64(upper)
    lower_holds = lower <= measured + rtol * measured.abs()
    upper_holds = measured <= upper + rtol * upper.abs()
    holds = lower_holds & upper_holds
    all_hold = bool(holds.all())
    return {
        "lower_holds": lower_holds,
        "upper_holds": upper_holds,
        "holds": holds,
        "upper_ratio": _ratio(measured, upper),
        "lower_ratio": _ratio(lower, measured),
        "all_hold": all_hold,
        "violated": not all_hold,
    }


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num/den with 0/0 = 1 (an exact zero bound on a zero quantity)."""
    num, den = torch.broadcast_tensors(num, den)
    both_zero = (num == 0) & (den == 0)
    return torch.where(both_zero, torch.ones_like(num), num / den)
