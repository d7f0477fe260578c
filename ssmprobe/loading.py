"""Models from checkpoints: a path or a bundled name, on a device that exists.

Every analysis (evaluation, attacks, probes, bounds) loads through here; the trainer keeps its
own resume logic. A reference-code state dict is converted in memory (`ssmprobe.interop`)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

from ssmprobe.checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_from_bytes,
    load_into,
    read_bytes,
    resolve_checkpoint,
)
from ssmprobe.data import DATASETS
from ssmprobe.interop.reference import Reference
from ssmprobe.models import build_model
from ssmprobe.models.registry import ModelConfig
from ssmprobe.vocab import METHODS


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """`name` as a device (None: `default_device()`); a CUDA device on a machine without CUDA
    is a ValueError that says so (rather than a failure deep inside loading or training)."""
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type not in ("cpu", "cuda"):  # meta holds no data; mps, xpu, ... are untested
        raise ValueError(f"device {name!r} is not supported: use cpu or cuda[:N]")
    return device


def check_checkpoint(ckpt: Checkpoint, path: str | Path) -> ModelConfig:
    """The checkpoint's model config, after its metadata is checked as a schema: each field's
    type and range, the config fitting the dataset's classes and channels, finite weights.
    A problem is one CheckpointError naming the file and the field."""
    try:
        config = ModelConfig.from_dict(ckpt.config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: config: {err}") from None
    meta = ckpt.meta
    dataset = meta.get("dataset")
    if not isinstance(dataset, str) or dataset not in (*DATASETS, "custom"):
        known = f"{sorted(DATASETS)} or 'custom' (trained by `fit` on your data)"
        raise CheckpointError(f"{path}: meta.dataset must be one of {known}, got {dataset!r}")
    info = DATASETS.get(dataset)
    fits = [] if info is None else [("n_classes", info.num_classes), ("d_input", info.channels)]
    for field, want in fits:
        if getattr(config, field) != want:
            raise CheckpointError(f"{path}: config.{field} = {getattr(config, field)} does not "
                                  f"fit {dataset}, which has {want}")  # fmt: skip
    methods = (None, *METHODS, "reference")  # "reference": imported from the paper's code
    if not isinstance(meta.get("method"), str | None) or meta.get("method") not in methods:
        raise CheckpointError(f"{path}: meta.method must be one of {methods[1:]}, "
                              f"got {meta['method']!r}")  # fmt: skip
    train = meta.get("train", {})
    if not isinstance(train, dict):
        raise CheckpointError(f"{path}: meta.train must be a dict, got {type(train).__name__}")
    for field, high in (("eps", 1.0), ("alpha", 1.0), ("steps", math.inf)):
        value = train.get(field)
        if value is None:
            continue
        if type(value) not in (int, float) or not 0 < value <= high:
            raise CheckpointError(f"{path}: meta.train.{field} must be a number in (0, {high}], "
                                  f"got {value!r}")  # fmt: skip
    bad = [
        name for name, t in ckpt.state_dict.items()
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())
    ]  # fmt: skip
    if bad:
        raise CheckpointError(f"{path}: weights hold NaN or Inf: {', '.join(bad[:5])}"
                              + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))  # fmt: skip
    return config


def load_model(
    path: str | Path, device: torch.device | str | None = "cpu", reference: Reference | None = None
) -> nn.Module:
    """The model stored in a checkpoint, as torchattacks, ART or RobustBench users expect it: a
    bundled name (`"s4_pgd"`, see `ssmprobe.list_models()`) or a path, in eval mode, taking
    (B, L, C) sequences in [0, 1] and returning logits. The checkpoint's metadata (dataset,
    training budget, its model config under "config", the file) is `model.meta`. With
    `reference`, `path` is a state dict of the paper's reference code, converted in memory."""
    device = resolve_device(device)
    if reference is not None:
        model, meta = reference.load(path)
        return _with_meta(model.to(device).eval(), meta)
    resolved = resolve_checkpoint(path)
    data = read_bytes(resolved)
    ckpt = checkpoint_from_bytes(data, resolved, map_location=device)
    check_checkpoint(ckpt, resolved)
    try:
        model = load_into(build_model(ckpt.config).to(device), ckpt)
    except (CheckpointError, ValueError) as err:  # weights that do not fit, no memory for them
        raise CheckpointError(f"{resolved}: {err}") from None
    file = {"path": str(resolved), "sha256": hashlib.sha256(data).hexdigest()}
    return _with_meta(model.eval(), {**ckpt.meta, "config": ckpt.config, "file": file})


def _with_meta(model: nn.Module, meta: dict) -> nn.Module:
    model.meta = meta  # type: ignore[assignment]
    return model


