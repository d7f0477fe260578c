"""What every sequence layer and block of ssmprobe promises.

A *discrete LTI SSM* is the recurrence (paper eq. 1-5, after discretisation)

    x_k = Ā x_{k-1} + B̄ u_k,    y_k = scale · Re(C̄ x_k) + D u_k,    x_0 = 0,

with impulse response h_k = scale · Re(C̄ Ā^k B̄), k = 0..L-1, so that y = h * u + D u.
`scale` is 2 when the state keeps one member of each complex-conjugate pair (S4, DSS, S5),
and 1 for a real state (Mega's EMA).

SISO layers (S4, DSS, Mega) run one such system per channel h: Ā is (H, N) diagonal or
(H, N, N) dense, B̄ and C̄ are (H, N), D is (H,). The MIMO layer (S5) runs one system over all
channels: Ā is (P,) diagonal, B̄ is (P, H), C̄ is (H, P), D is (H,).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssmprobe.vocab import ComponentKind

# Set to 1 to switch off every speed-up that changes how a result is computed (operators kept
# while the weights are frozen, Toeplitz products, ...); read once at import, `speedups(on)`
# switches them inside a process (benchmarks/attack_speed.py times both in one run).
NO_SPEEDUPS = "SSMPROBE_NO_SPEEDUPS"
_speedups = {"on": os.environ.get(NO_SPEEDUPS, "") in ("", "0")}


def speedups_enabled() -> bool:
    return _speedups["on"]


@contextmanager
def speedups(on: bool) -> Iterator[None]:
    """Speed-ups on or off inside the block (and in what it calls), as before it afterwards."""
    before = _speedups["on"]
    _speedups["on"] = on
    try:
        yield
    finally:
        _speedups["on"] = before


def weights_frozen(module: nn.Module) -> bool:
    """No gradient can reach `module`'s parameters: grad mode off, or none requires grad."""
    return not torch.is_grad_enabled() or not any(p.requires_grad for p in module.parameters())


def frozen_memo(module: nn.Module, key: Hashable, compute: Callable[[], Tensor]) -> Tensor:
    """`compute()`, kept on `module` for as long as its parameters are frozen and unchanged.

    A kept value is reused only where no gradient may reach the parameters through it: grad
    mode off, or no parameter of `module` requiring grad (an attack freezes them). It is keyed on
    every parameter's storage and version counter, which every in-place update bumps (an
    optimizer step, `load_state_dict`, `.copy_()`), so training, which needs the parameters'
    gradients, always computes afresh, and any change of the weights drops the kept value.
    """
    if not (weights_frozen(module) and speedups_enabled()):
        return compute()
    params = list(module.parameters())
    memo = module.__dict__.setdefault("_frozen_memo", {})  # not a buffer: never saved
    kept = memo.get(key)
    # Compared in place: a tuple of states per pass would pile up in Python's free lists.
    if (
        kept is not None
        and len(kept[0]) == len(params)
        and all(
            p.data_ptr() == ptr and p._version == v
            for p, (ptr, v) in zip(params, kept[0], strict=True)
        )
    ):
        return kept[1]
    value = compute()
    memo[key] = (tuple((p.data_ptr(), p._version) for p in params), value)
    return value


@dataclass(frozen=True)
class DiscreteSSM:
    """Discrete parameters of an LTI SSM layer, per channel (see the module docstring).

    `eigvals` are the eigenvalues of Ā ((H, N) SISO, (P,) MIMO). `A_bar` is Ā itself: equal
    to `eigvals` for diagonal layers, the dense (H, N, N) matrix for S4. `dt` is the step Δ,
    per channel ((H,)) or per state ((P,) for S5).
    """

    A_bar: Tensor
    B_bar: Tensor
    C_bar: Tensor
    D: Tensor
    dt: Tensor
    eigvals: Tensor
    scale: float
    mimo: bool = False

    @property
    def diagonal(self) -> bool:
        return self.A_bar.shape == self.eigvals.shape


class LTISSM(nn.Module):
    """A sequence-mixing SSM layer with time-invariant parameters: (B, L, H) -> (B, L, H)."""

    d_model: int

    def discrete(self) -> DiscreteSSM:
        """The discrete parameters (Ā, B̄, C̄, D, Δ) that `forward` uses."""
        raise NotImplementedError

    def discrete_at(self, length: int) -> DiscreteSSM:
        """The discrete parameters `forward` uses on inputs of `length` steps: `discrete()`,
        unless B̄ depends on the sequence length (DSS-softmax, eq. 7), which overrides this."""
        return self.discrete()

    def impulse_response(self, length: int) -> Tensor:
        """h_k = scale·Re(C̄ Ā^k B̄) for k < length: (H, length) SISO, (H, H, length) MIMO."""
        raise NotImplementedError


class ConvSSM(LTISSM):
    """An LTI SSM layer whose forward is the convolution y = h * u + skip ⊙ u (S4, DSS, Mega's
    EMA): `skip` is the layer's D."""

    @property
    def skip(self) -> Tensor:
        raise NotImplementedError

    def conv_kernel(self, length: int) -> Tensor:
        """h + skip·δ (H, length): the impulse response with the skip term in its step 0."""
        return self.impulse_response(length) + F.pad(self.skip.unsqueeze(-1), (0, length - 1))

    def forward(self, u: Tensor) -> Tensor:
        """y = h * u + skip ⊙ u for u (B, L, H), causal along L.

        Short sequences (L <= `DIRECT_MAX_LENGTH`) multiply by the kernel's Toeplitz matrix,
        longer ones go through `time_conv`; either operator is computed once while the weights
        are frozen (`frozen_memo`), and once per training batch inside `shared_kernels`.
        With `SSMPROBE_NO_SPEEDUPS` set, the FFT of h and the separate skip of every pass as
        before (for side-by-side benchmarks).
        """
        length = u.shape[1]
        if not speedups_enabled():
            kernel = self.impulse_response(length)
            return fft_causal_conv(u.transpose(1, 2), kernel).transpose(1, 2) + self.skip * u
        if length <= DIRECT_MAX_LENGTH:
            weights = frozen_memo(
                self, ("toeplitz", length), lambda: toeplitz(self.conv_kernel(length))
            )
            return torch.bmm(u.permute(2, 0, 1).contiguous(), weights).permute(1, 2, 0).contiguous()
        shared = _batch_kernels["kept"]
        kept = shared.get((self, length)) if shared else None
        if kept is None:
            if weights_frozen(self):
                spectrum = frozen_memo(
                    self, ("spectrum", length), lambda: kernel_spectrum(self.conv_kernel(length))
                )
                return time_conv(u, spectrum)
            kernel = self.conv_kernel(length)
            kept = (kernel, kernel_spectrum(kernel.detach()))
        kernel, spectrum = kept
        if weights_frozen(self):  # an attack's step: no gradient may reach the weights
            return time_conv(u, spectrum)
        return kernel_conv(u, kernel, spectrum)


# The kernels of one training batch while `shared_kernels` runs: {(layer, L): (kernel, spectrum)}.
_batch_kernels: dict[str, dict[tuple[ConvSSM, int], tuple[Tensor, Tensor]] | None] = {"kept": None}


@contextmanager
def shared_kernels(model: nn.Module, length: int) -> Iterator[None]:
    """One training batch of adversarial training: the weights stay as they are from the
    attack's first step to the training loss's backward, so every convolutional layer builds
    its kernel once, with its graph, before the attack. The attack's steps convolve with it
    detached (its spectrum), the training forward (and TRADES's second one) with the graph, so
    the loss's gradient reaches the weights as it would through a kernel built in that forward.
    Short sequences (the Toeplitz path, already kept while frozen) and `SSMPROBE_NO_SPEEDUPS`
    leave everything as it is. Nothing outlives the block.
    """
    if not speedups_enabled() or length <= DIRECT_MAX_LENGTH:
        yield
        return
    kept = {}
    for layer in model.modules():
        if isinstance(layer, ConvSSM):
            kernel = layer.conv_kernel(length)
            kept[layer, length] = (kernel, kernel_spectrum(kernel.detach()))
    before = _batch_kernels["kept"]
    _batch_kernels["kept"] = kept
    try:
        yield
    finally:
        _batch_kernels["kept"] = before


@dataclass(frozen=True)
class Site:
    """A tensor a forward hook can see: the input or the output of `module`.

    `index` picks the tensor out of a tuple (a block's `(hidden, residual)`, a module called
    with several positional inputs); `layout` says how it holds its features: `bld` (B, L, d),
    `bdl` (B, d, L), or `auto`, decided from the sequence length of the recorded batch.
    """

    module: nn.Module
    side: Literal["input", "output"]
    index: int = 0
    layout: Literal["auto", "bld", "bdl"] = "bld"

    def features(self, value: object, length: int | None = None) -> Tensor:
        """The (B, L, d) features in what the hook saw (`value`: the output, or the inputs)."""
        where = f"the {self.side} of {type(self.module).__name__}"
        if isinstance(value, tuple | list):
            if not -len(value) <= self.index < len(value):
                raise TypeError(f"{where} has {len(value)} elements, no index {self.index}")
            value = value[self.index]
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{where} is a {type(value).__name__}, not a tensor: declare an extractor "
                "(the index of the tensor in a tuple)"
            )
        if self.layout == "bdl":
            return value.transpose(1, 2)
        if self.layout == "bld" or value.dim() != 3 or length is None:
            return value
        fits = [value.shape[1] == length, value.shape[2] == length]
        if all(fits):
            raise ValueError(
                f"{where} is {tuple(value.shape)}: with d = L = {length} its layout is "
                "ambiguous; declare layout='bld' or 'bdl'"
            )
        if not any(fits):
            raise ValueError(
                f"{where} is {tuple(value.shape)}, neither (B, L, d) nor (B, d, L) for "
                f"L = {length}: declare its layout or pick another module"
            )
        return value if fits[0] else value.transpose(1, 2)


@dataclass(frozen=True)
class Component:
    """A named place in a model whose input and output features can be recorded.

    `name` is stable across models of a family (`layers.0.ssm`), `kind` groups components
    across layers and families; `layer` and `part` place it in the model for tables and figures
    (set by whoever builds the list, never parsed back from the name). The component's input is
    `entry`, its output `exit`; both are usually the same module, but a fused block (Mamba) can
    end a component at the input of its next sub-module.
    """

    name: str
    kind: ComponentKind
    entry: Site
    exit: Site
    layer: int = 0  # the block it belongs to, or its order among the components of its kind
    part: str = ""  # what it is inside that block (`ssm`, `linear`, ...; default the name)


def module_component(name: str, kind: ComponentKind, module: nn.Module) -> Component:
    """A component that is exactly one module: its input to its output."""
    return Component(name, kind, Site(module, "input"), Site(module, "output"))


def fft_causal_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """y[..., k] = Σ_{j<=k} kernel[..., k-j] u[..., j] along the last axis, via FFT of length 2L.

    `u` is (..., L) and `kernel` (..., L) broadcasts against it; zero-padding to 2L makes the
    circular convolution causal.
    """
    return spectral_conv(u, kernel_spectrum(kernel))


# Up to this length a causal convolution is one batched matrix product with the kernel's
# Toeplitz matrix (exact sums; at L = 64, d = 64, batch 100: 1.3 ms against 4.4 ms for the
# FFT, measured); beyond it the FFT's L log L wins and the (H, L, L) matrix grows too large.
DIRECT_MAX_LENGTH = 128


def toeplitz(kernel: Tensor) -> Tensor:
    """T (H, L, L) with T[h, j, k] = kernel[h, k - j] for k >= j, else 0, from kernel (H, L):
    (u @ T)[..., k] = Σ_{j<=k} kernel[k - j] u[j], the causal convolution as a product."""
    length = kernel.shape[-1]
    steps = torch.arange(length, device=kernel.device)
    lag = steps[None, :] - steps[:, None]  # k - j
    return kernel[:, lag.clamp(min=0)] * (lag >= 0)


def kernel_spectrum(kernel: Tensor) -> Tensor:
    """The real FFT of a length-L kernel zero-padded to 2L: (..., L) -> (..., L + 1)."""
    return torch.fft.rfft(kernel, n=2 * kernel.shape[-1])


def spectral_conv(u: Tensor, spectrum: Tensor) -> Tensor:
    """`fft_causal_conv` of u (..., L) with a kernel given by its `kernel_spectrum`."""
    length = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * spectrum, n=2 * length)[..., :length]


# Batch elements per FFT on a CPU: chunks of a few sequences stay in cache and below the size
# at which every allocation is a fresh mmap (measured at B = 64, L = 784, H = 128: 120 ms for
# the whole batch at once, 31 ms in chunks of 4, the same numbers to the bit).
_CPU_FFT_CHUNK = 4


def _batch_chunks(u: Tensor) -> list[slice]:
    """Slices of u's batch: `_CPU_FFT_CHUNK` elements each on a CPU, the whole batch elsewhere."""
    step = _CPU_FFT_CHUNK if u.device.type == "cpu" else max(u.shape[0], 1)
    return [slice(start, start + step) for start in range(0, u.shape[0], step)]


class _Padded:
    """A reused (chunk, H, 2L) buffer whose second half stays zero: a chunk of u (B, L, H) is
    copied time-last into its first half, which is the zero padding and the layout change in
    one copy (rfft's own padding allocates and fills a new tensor every call)."""

    def __init__(self, u: Tensor) -> None:
        batch, length, channels = u.shape
        step = _batch_chunks(u)[0].stop if batch else 1
        self.length = length
        self.buffer = u.new_zeros((min(step, batch), channels, 2 * length))

    def spectrum(self, part: Tensor) -> Tensor:
        """rfft of `part` (b, L, H) zero-padded to 2L along time: (b, H, L + 1)."""
        view = self.buffer[: part.shape[0]]
        view[..., : self.length].copy_(part.transpose(1, 2))
        return torch.fft.rfft(view)


def _conv_along_time(u: Tensor, spectrum: Tensor) -> Tensor:
    """irfft(rfft(u) · spectrum) along dim 1 of u (B, L, H), the first L steps, with spectrum
    (H, L + 1), computed a few batch elements at a time (`_CPU_FFT_CHUNK`) into one (B, L, H)
    result."""
    length = u.shape[1]
    out = torch.empty(
        u.shape, dtype=torch.promote_types(u.dtype, spectrum.real.dtype), device=u.device
    )
    padded = _Padded(u)
    for chunk in _batch_chunks(u):
        y = torch.fft.irfft(padded.spectrum(u[chunk]) * spectrum, n=2 * length)
        out[chunk] = y[..., :length].transpose(1, 2)
    return out


def _kernel_grad(u: Tensor, grad: Tensor) -> Tensor:
    """∂loss/∂kernel (H, L) of y = kernel * u: Σ_b Σ_t g_b[t] u_b[t - j], the correlation of
    the output's gradient with the input, as irfft(Σ_b conj(U_b) G_b)[:L] (the padding to 2L
    keeps the circular correlation exact for lags j < L); the sum over the batch is taken in
    the frequency domain, a few elements at a time."""
    inputs, grads = _Padded(u), _Padded(grad)
    total = sum(
        (inputs.spectrum(u[chunk]).conj() * grads.spectrum(grad[chunk])).sum(0)
        for chunk in _batch_chunks(u)
    )
    return torch.fft.irfft(total, n=2 * u.shape[1])[..., : u.shape[1]]


class _TimeConv(torch.autograd.Function):
    """`time_conv` with a constant spectrum: its gradient to u is the correlation with the same
    kernel, irfft(rfft(g) · conj(spectrum)) (zero padding to 2L keeps it exact), two real FFTs
    where autograd's would differentiate rfft through a complex FFT of the padded input."""

    @staticmethod
    def forward(ctx, u: Tensor, spectrum: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(spectrum)
        return _conv_along_time(u, spectrum)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (spectrum,) = ctx.saved_tensors
        return _conv_along_time(grad, spectrum.conj()), None


def time_conv(u: Tensor, spectrum: Tensor) -> Tensor:
    """The causal convolution of u (B, L, H) along L with kernels given by their spectrum
    (H, L + 1) (`kernel_spectrum`), a constant: differentiable in u (`kernel_conv` for a
    kernel that needs its gradient too)."""
    return _TimeConv.apply(u, spectrum.detach())


class _KernelConv(torch.autograd.Function):
    """`kernel_conv`: the gradient to u as in `_TimeConv`, to the kernel by `_kernel_grad`."""

    @staticmethod
    def forward(ctx, u: Tensor, kernel: Tensor, spectrum: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(u, spectrum)
        return _conv_along_time(u, spectrum)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        u, spectrum = ctx.saved_tensors
        grad_u = _conv_along_time(grad, spectrum.conj()) if ctx.needs_input_grad[0] else None
        grad_kernel = _kernel_grad(u, grad) if ctx.needs_input_grad[1] else None
        return grad_u, grad_kernel, None


def kernel_conv(u: Tensor, kernel: Tensor, spectrum: Tensor) -> Tensor:
    """The causal convolution of u (B, L, H) with `kernel` (H, L), whose `kernel_spectrum` is
    given (computed once for many calls); differentiable in u and in the kernel."""
    return _KernelConv.apply(u, kernel, spectrum.detach())


def real_parameter(values: Tensor) -> nn.Parameter:
    """A parameter in the default float dtype; complex values are stored as (..., 2) real.

    Module.double() converts only floating-point parameters, so complex ones are kept real.
    """
    if values.is_complex():
        values = torch.view_as_real(values)
    return nn.Parameter(values.to(torch.get_default_dtype(), copy=True).contiguous())


def as_complex(param: Tensor) -> Tensor:
    """The complex tensor stored by `real_parameter`."""
    return torch.view_as_complex(param)


def stable_eigenvalues(log_neg_real: Tensor, imag: Tensor) -> Tensor:
    """λ = -exp(log_neg_real) + i·imag: Re λ < 0 for every parameter value."""
    return torch.complex(-torch.exp(log_neg_real), imag)


def vandermonde(z: Tensor, length: int) -> Tensor:
    """exp(z k) for k < length, as (..., length).

    Written k = q·T + r with T ≈ sqrt(length): exp(zk) = exp(zqT)·exp(zr) takes 2·sqrt(length)
    complex exponentials per z instead of `length` (the costliest part of a DSS kernel), and
    each power is still one product of two exponentials, so no rounding builds up over k.
    """
    t = max(1, math.isqrt(length - 1) + 1) if length > 0 else 1
    steps = torch.arange(t, device=z.device, dtype=z.real.dtype)
    coarse = torch.exp(z.unsqueeze(-1) * (steps * t))  # exp(z q T), q < T
    fine = torch.exp(z.unsqueeze(-1) * steps)  # exp(z r), r < T
    return (coarse.unsqueeze(-1) * fine.unsqueeze(-2)).flatten(-2)[..., :length]


def vandermonde_kernel(z: Tensor, left: Tensor, right: Tensor, length: int) -> Tensor:
    """K_k = 2 Re Σ_n left_{..n} exp(z_n k) right_{n..} for k < length, one batched product.

    `z` is (N,) or (H, N); `left` and `right` are the weights on each side of exp(zk): for SISO
    (H, N) each and the result is (H, L); for MIMO (H, N) and (N, H), and the result is (H, H, L).
    """
    powers = vandermonde(z, length)
    if z.dim() == 2:  # SISO: z, left, right are (H, N)
        return 2 * torch.einsum("hn,hnl->hl", left * right, powers).real
    return 2 * torch.einsum("in,nl,nj->ijl", left, powers, right).real
