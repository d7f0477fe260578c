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


def frozen_memo(module: nn.Module, key: Hashable, compute: Callable[[], Tensor]) -> Tensor:
    """`compute()`, kept on `module` for as long as its parameters are frozen and unchanged.

    A kept value is reused only where no gradient may reach the parameters through it: grad
    mode off, or no parameter of `module` requiring grad (an attack freezes them). It is keyed on
    every parameter's storage and version counter, which every in-place update bumps (an
    optimizer step, `load_state_dict`, `.copy_()`), so training, which needs the parameters'
    gradients, always computes afresh, and any change of the weights drops the kept value.
    """
    params = list(module.parameters())
    frozen = not torch.is_grad_enabled() or not any(p.requires_grad for p in params)
    if not (frozen and speedups_enabled()):
        return compute()
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

    def convolve(self, u: Tensor, skip: Tensor) -> Tensor:
        """y = h * u + skip ⊙ u for a SISO layer's input (B, L, H), causal along L: the
        convolution with the kernel h + skip·δ, whose step 0 carries the skip term (D u).

        Short sequences (L <= `DIRECT_MAX_LENGTH`) multiply by that kernel's Toeplitz matrix,
        longer ones go through `time_conv`; either operator is computed once while the weights
        are frozen (`frozen_memo`), every pass otherwise. With `SSMPROBE_NO_SPEEDUPS` set, the
        FFT of h and the separate skip of every pass as before (for side-by-side benchmarks).
        """
        length = u.shape[1]
        if not speedups_enabled():
            kernel = self.impulse_response(length)
            return fft_causal_conv(u.transpose(1, 2), kernel).transpose(1, 2) + skip * u

        def kernel() -> Tensor:
            return self.impulse_response(length) + F.pad(skip.unsqueeze(-1), (0, length - 1))

        if length <= DIRECT_MAX_LENGTH:
            weights = frozen_memo(self, ("toeplitz", length), lambda: toeplitz(kernel()))
            return torch.bmm(u.permute(2, 0, 1).contiguous(), weights).permute(1, 2, 0).contiguous()
        spectrum = frozen_memo(self, ("spectrum", length), lambda: kernel_spectrum(kernel()))
        return time_conv(u, spectrum)


@dataclass(frozen=True)
class Site:
    """A tensor a forward hook can see: the first input or the output of `module`."""

    module: nn.Module
    side: Literal["input", "output"]


@dataclass(frozen=True)
class Component:
    """A named place in a model whose input and output features can be recorded.

    `name` is stable across models of a family (`layers.0.ssm`), `kind` groups components
    across layers and families. The component's input is `entry`, its output `exit`; both are
    usually the same module, but a fused block (Mamba) can end a component at the input of
    its next sub-module.
    """

    name: str
    kind: ComponentKind
    entry: Site
    exit: Site


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


def _conv_along_time(u: Tensor, spectrum: Tensor) -> Tensor:
    """irfft(rfft(u) · spectrum) along dim 1 of u (B, L, H), the first L steps, with spectrum
    (H, L + 1). The FFTs run over a contiguous time-last copy, and the result is made
    contiguous again: an FFT over a strided axis, or a strided result that every later
    elementwise op and its backward would walk, costs several times more (measured)."""
    length = u.shape[1]
    y = torch.fft.irfft(torch.fft.rfft(u.transpose(1, 2).contiguous(), n=2 * length) * spectrum)
    return y[..., :length].transpose(1, 2).contiguous()


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
    (H, L + 1) (`kernel_spectrum`); differentiable in both."""
    if spectrum.requires_grad:
        return _conv_along_time(u, spectrum)
    return _TimeConv.apply(u, spectrum)


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
