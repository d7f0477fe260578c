"""Models from checkpoints: a path or a bundled name, on a device that exists.

Every analysis (evaluation, attacks, probes, bounds) loads through here; the trainer keeps its
own resume logic. A reference-code state dict is converted in memory (`ssmprobe.interop`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ssmprobe.checkpoint import checkpoint_from_bytes, load_into, read_bytes, resolve_checkpoint
from ssmprobe.interop.reference import Reference
from ssmprobe.models import build_model


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
    return device


def load_model(
    path: str | Path, device: torch.device | str | None = "cpu", reference: Reference | None = None
) -> tuple[nn.Module, dict]:
    """The model stored in a checkpoint (a path, or a bundled name like `s4_pgd.pt`), in eval
    mode, and the checkpoint's metadata with its model config under "config". With `reference`,
    `path` is a state dict of the paper's reference code, converted in memory."""
    device = resolve_device(device)
    if reference is not None:
        model, meta = reference.load(path)
        return model.to(device).eval(), meta
    resolved = resolve_checkpoint(path)
    data = read_bytes(resolved)
    ckpt = checkpoint_from_bytes(data, resolved, map_location=device)
    model = load_into(build_model(ckpt.config).to(device), ckpt)
    file = {"path": str(resolved), "sha256": hashlib.sha256(data).hexdigest()}
    return model.eval(), {**ckpt.meta, "config": ckpt.config, "file": file}


def load(name_or_path: str | Path, device: torch.device | str | None = "cpu") -> nn.Module:
    """The model alone, as torchattacks, ART or RobustBench users expect it: a bundled name
    (`"s4_pgd"`, see `ssmprobe.list_models()`) or a checkpoint path, in eval mode, taking
    (B, L, C) sequences in [0, 1] and returning logits; the checkpoint's metadata (dataset,
    training budget, config) is `model.meta`."""
    model, meta = load_model(name_or_path, device)
    model.meta = meta
    return model
