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
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ssmprobe.vocab import ComponentKind


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

    `u` is (..., L) and `kernel` broadcasts against it; zero-padding to 2L makes the circular
    convolution causal.
    """
    length = u.shape[-1]
    n = 2 * length
    spectrum = torch.fft.rfft(u, n=n) * torch.fft.rfft(kernel, n=n)
    return torch.fft.irfft(spectrum, n=n)[..., :length]


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
