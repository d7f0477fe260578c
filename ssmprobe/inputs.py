"""What a user hands the Python API, checked as the command line checks it: converted where the
meaning is clear (a NumPy array, float64, a list of labels), refused where it is not, in a
ValueError or TypeError that names the argument."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def as_inputs(
    x: Any,
    name: str = "x",
    length: int | None = None,
    what: str = "",
    dtype: torch.dtype | None = None,
) -> Tensor:
    """`x` as a (batch, length, channels) tensor in [0, 1], finite, of `length` steps where the
    model expects one (`what` says whose length it is), in `dtype` (the model's) if given, else
    float32 or float64 as it came (float16 and bfloat16 become float32)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a tensor or a NumPy array, got {type(x).__name__}")
    if not (x.is_floating_point()):
        raise TypeError(
            f"{name} must hold floats in [0, 1], got {x.dtype}: scale integer pixels first "
            "(x / 255)"
        )
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (batch, length, channels), got {tuple(x.shape)}")
    if length is not None and x.shape[1] != length:
        raise ValueError(f"{name} has length {x.shape[1]}; {what or 'the model'} expects {length}")
    x = x.detach()
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or Inf")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{x.min():g}, {x.max():g}]")
    if dtype is not None:
        return x.to(dtype)
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def as_labels(y: Any, n: int, name: str = "y") -> Tensor:
    """`y` as n int64 class labels (a tensor, an array or a list of ints)."""
    if isinstance(y, np.ndarray | list | tuple):
        y = torch.as_tensor(np.asarray(y))
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a tensor of class labels, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class labels, got {y.dtype}")
    if y.dim() != 1 or len(y) != n:
        raise ValueError(f"{name} must have shape ({n},) to match x, got {tuple(y.shape)}")
    return y.long()


def as_names(value: Any, name: str, example: str) -> list[str]:
    """A list of names (attacks, splits): a string is refused (it would be read letter by
    letter), as are an empty list and repeats."""
    if isinstance(value, str):
        raise TypeError(f"{name} must be a list, got the string {value!r} (write [{value!r}])")
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of strings such as {example}, got {value!r}")
    if not value:
        raise ValueError(f"{name} is empty: name at least one, such as {example}")
    repeated = sorted({v for v in value if list(value).count(v) > 1})
    if repeated:
        raise ValueError(f"{name} names {', '.join(repeated)} more than once")
    return list(value)
