"""A user's data for a wrapped model: tensors (x, y), a Dataset, a DataLoader, or a `.pt` /
`.npz` file holding `x` and `y`, streamed as batches in the attack's space (`WrappedModel
.prepare`: inputs rescaled from the declared range to [0, 1], token ids embedded).

`.pt` files are read with `weights_only=True` (no code runs); `.npz` without pickles.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssmprobe.interop.wrap import WrapError, WrappedModel

UserData = tuple[Tensor, Tensor] | Dataset | DataLoader | str | Path


def read_data_file(path: str | Path) -> tuple[Tensor, Tensor]:
    """(x, y) of a `.pt` (a dict with tensors `x`, `y`) or `.npz` file (arrays `x`, `y`)."""
    path = Path(path)
    if not path.is_file():
        raise WrapError(f"no such data file: {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                found = {k: torch.from_numpy(arrays[k]) for k in ("x", "y") if k in arrays}
        elif path.suffix == ".pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            found = loaded if isinstance(loaded, dict) else {}
        else:
            raise WrapError(f"{path}: data files are .pt or .npz")
    except (OSError, ValueError, RuntimeError, EOFError) as err:
        raise WrapError(f"{path} is not a readable data file ({err})") from None
    if not all(isinstance(found.get(k), Tensor) for k in ("x", "y")):
        raise WrapError(f"{path} must hold tensors (or arrays) named x and y")
    return found["x"], found["y"]


def _pairs(data: UserData, batch_size: int) -> Iterable[tuple[Any, Any]]:
    if isinstance(data, str | Path):
        data = read_data_file(data)
    if (
        isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(t, Tensor | np.ndarray) for t in data)
    ):
        x, y = (torch.as_tensor(t) for t in data)
        if len(x) != len(y):
            raise WrapError(f"x and y differ in length: {len(x)} inputs, {len(y)} labels")
        return (
            (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
        )
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size)
    raise WrapError(
        "data must be (x, y) tensors, a Dataset, a DataLoader or a .pt/.npz path, got "
        f"{type(data).__name__}"
    )


def model_meta(
    model: nn.Module, device: torch.device | str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A model given in memory (`wrap`'s, or any module with `components()`), on `device`, and
    its meta: the wrap's, or a bare one (dataset "custom", no training budget)."""
    if not hasattr(model, "components"):
        raise TypeError(
            f"{type(model).__name__} lists no components: wrap it first "
            "(ssmprobe.wrap(model, components={...}))"
        )
    if device is not None:
        model = model.to(device)
    meta = dict(getattr(model, "meta", None) or {"dataset": "custom", "train": {}})
    meta.setdefault("model", type(model).__name__)
    return model, meta


def first_samples(model: WrappedModel, data: UserData, n: int) -> tuple[Tensor, Tensor]:
    """The first `n` samples of `data` as one batch in the attack's space."""
    parts = list(user_batches(model, data, batch_size=n, n=n))
    if not parts:
        raise WrapError("data holds no samples")
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def user_batches(
    model: WrappedModel, data: UserData, batch_size: int = 100, n: int | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches (x in [0, 1] of the attack's space, y int64) of at most `n` samples."""
    count = 0
    for x, y in _pairs(data, batch_size):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if len(x) != len(y):
            raise WrapError(f"a batch holds {len(x)} inputs and {len(y)} labels")
        if n is not None:
            x, y = x[: n - count], y[: n - count]
        if y.dim() != 1 or y.is_floating_point():
            raise WrapError(
                f"labels must be integers of shape (N,), got {y.dtype} {tuple(y.shape)}"
            )
        yield model.prepare(x), y.long()
        count += len(y)
        if n is not None and count >= n:
            return
