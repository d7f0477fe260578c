"""The Python API validates like the command line (`ssmprobe.inputs`): every mutation of an
argument, drawn by class (container, dtype, shape, values; a string for a list), either works
with the meaning it plainly has or raises one ValueError / TypeError that names the argument."""

from __future__ import annotations

import copy
import itertools
import re

import numpy as np
import pytest
import torch

import ssmprobe

MODEL = ssmprobe.load_model("dss_pgd")
X, Y = ssmprobe.load_dataset("digits", "test").head(4)[:]

CONTAINERS = {"tensor": lambda t: t, "numpy": lambda t: t.numpy(), "list": lambda t: t.tolist()}
DTYPES = {
    "float32": lambda t: t,
    "float64": lambda t: t.double(),
    "float16": lambda t: t.half(),
    "int64": lambda t: (t * 16).long(),
    "uint8": lambda t: (t * 255).to(torch.uint8),
    "bool": lambda t: t > 0.5,
}
SHAPES = {
    "right": lambda t: t,
    "2-d": lambda t: t[..., 0],
    "4-d": lambda t: t[None],
    "shorter": lambda t: t[:, :50],
}
VALUES = {
    "clean": lambda t: t,
    "nan": lambda t: t.masked_fill(torch.arange(t.numel()).view(t.shape) == 3, float("nan")),
    "inf": lambda t: t.masked_fill(torch.arange(t.numel()).view(t.shape) == 3, float("inf")),
    "below": lambda t: t - 0.2,
    "above": lambda t: t + 0.2,
}


def mutations() -> list[tuple[str, ...]]:
    return list(itertools.product(CONTAINERS, DTYPES, SHAPES, VALUES))


@pytest.mark.parametrize(("container", "dtype", "shape", "values"), mutations())
def test_every_mutation_of_x_works_or_names_x(container, dtype, shape, values) -> None:
    x = X.clone()
    x = VALUES[values](x) if dtype.startswith("float") else x
    x = CONTAINERS[container](SHAPES[shape](DTYPES[dtype](x)))
    plain = container != "list" and dtype.startswith("float") and (shape, values) == (
        "right",
        "clean",
    )
    try:
        x_adv = ssmprobe.attack(MODEL, x, Y, "fgsm")
    except (ValueError, TypeError) as err:
        assert not plain, err
        assert str(err).startswith("x "), err
        return
    assert plain, (container, dtype, shape, values)
    assert x_adv.dtype == torch.float32 and x_adv.shape == X.shape


@pytest.mark.parametrize(
    ("y", "works"),
    [
        (Y, True), (Y.numpy(), True), (Y.tolist(), True), (Y.int(), True),
        (Y.float(), False), (Y[:3], False), (Y[None], False), ("0123", False), (None, False),
    ],
)  # fmt: skip
def test_labels_work_or_name_y(y, works: bool) -> None:
    if works:
        assert ssmprobe.attack(MODEL, X, y, "fgsm").shape == X.shape
    else:
        with pytest.raises((ValueError, TypeError), match=r"^y "):
            ssmprobe.attack(MODEL, X, y, "fgsm")


CALLS = {
    "a string of attacks": (lambda: ssmprobe.evaluate("dss_pgd", "pgd1"), TypeError,
                            "attacks must be a list, got the string 'pgd1'"),
    "no attack": (lambda: ssmprobe.evaluate("dss_pgd", []), ValueError, "attacks is empty"),
    "an attack twice": (lambda: ssmprobe.evaluate("dss_pgd", ["fgsm", "fgsm"]), ValueError,
                        "attacks names fgsm more than once"),
    "a string of splits": (lambda: ssmprobe.discrepancy("dss_pgd", splits="test"), TypeError,
                           "splits must be a list"),
    "a split twice": (lambda: ssmprobe.discrepancy("dss_pgd", splits=["test", "test"]),
                      ValueError, "splits names test more than once"),
    "a NaN budget": (lambda: ssmprobe.attack(MODEL, X, Y, "pgd10", eps=float("nan")),
                     ValueError, "eps of an Linf attack must be in (0, 1], got nan"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CALLS))
def test_lists_and_budgets_name_their_argument(case: str) -> None:
    call, error, message = CALLS[case]
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        call()


def test_a_numpy_batch_attacks_like_the_tensor() -> None:
    want = ssmprobe.attack(MODEL, X, Y, "pgd10")
    got = ssmprobe.attack(MODEL, X.numpy().astype(np.float64), Y.numpy(), "pgd10")
    torch.testing.assert_close(got, want)


def test_inputs_take_the_models_dtype() -> None:
    double = copy.deepcopy(MODEL).double()
    assert ssmprobe.attack(double, X, Y, "fgsm").dtype == torch.float64
    assert ssmprobe.attack(MODEL, X.double(), Y, "fgsm").dtype == torch.float32
