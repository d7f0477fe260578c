"""Reference checks shared by the SSM layer tests (imported by test_dss.py and test_s5.py)."""

from __future__ import annotations

import dataclasses

import mpmath
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ssmprobe.models.base import LTISSM, DiscreteSSM
from ssmprobe.models.recurrence import run_recurrence


def to_float64(ssm: DiscreteSSM) -> DiscreteSSM:
    """The same discrete parameters in float64 / complex128, detached."""

    def widen(t: Tensor) -> Tensor:
        return t.detach().to(torch.complex128 if t.is_complex() else torch.float64)

    tensors = {
        f.name: widen(getattr(ssm, f.name))
        for f in dataclasses.fields(ssm)
        if isinstance(getattr(ssm, f.name), Tensor)
    }
    return dataclasses.replace(ssm, **tensors)


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """‖actual - expected‖ / ‖expected‖ in float64."""
    expected = expected.detach().to(torch.complex128 if expected.is_complex() else torch.float64)
    diff = actual.detach().to(expected.dtype) - expected
    return (diff.norm() / expected.norm()).item()


def recurrence_error(layer: LTISSM, u: Tensor) -> float:
    """Relative error of `layer(u)` against the float64 step-by-step recurrence of its params."""
    with torch.no_grad():
        y = layer(u)
        ssm = layer.discrete()
    assert y.shape == u.shape and y.dtype == u.dtype
    return relative_error(y, run_recurrence(to_float64(ssm), u.double()))


def phi1_reference(z: complex, dps: int = 50) -> complex:
    """(e^z - 1)/z in high precision (mpmath), 1 at z = 0."""
    with mpmath.workdps(dps):
        zm = mpmath.mpc(z)
        return complex(mpmath.expm1(zm) / zm) if zm != 0 else 1.0


def gradcheck_all(layer: nn.Module, u: Tensor) -> bool:
    """gradcheck of a float64 layer w.r.t. the input and every parameter (as explicit inputs)."""
    names, values = zip(*layer.named_parameters(), strict=True)
    inputs = (u.double().requires_grad_(), *(v.detach().double().requires_grad_() for v in values))

    def run(x: Tensor, *params: Tensor) -> Tensor:
        return functional_call(layer, dict(zip(names, params, strict=True)), (x,))

    return torch.autograd.gradcheck(run, inputs)
