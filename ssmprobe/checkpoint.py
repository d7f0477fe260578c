"""Checkpoints: one file holding a model's config, its weights and the run's metadata.

The file is `torch.save` of a dict of plain containers and tensors:

    {"format": "ssmprobe.checkpoint", "format_version": 1,
     "config": {...},        # how to rebuild the model (str/int/float/bool/None, lists, dicts)
     "state_dict": {...},    # parameter / buffer name -> tensor (saved on the CPU)
     "meta": {...},          # dataset, method, epoch, metrics, ... (plain values only)
     "extra": {...}}         # anything else a resumed run needs (optimizer state, RNG tensors)

Loading uses `torch.load(..., weights_only=True)`, whose unpickler rebuilds only tensors and
plain containers: a file asking for any other Python object (for instance a pickle whose
`__reduce__` calls `os.system`) is refused before anything from it runs. Every way a file can
be unusable (missing, corrupt, truncated, refused, not ours, unknown version, weights that do
not fit the model) raises the one exception `CheckpointError`.

Writes are atomic: the checkpoint goes to a temporary file in the same folder, is flushed and
fsync'ed, then `os.replace`d over the target, so a crash mid-write leaves the previous file
intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import pickletools
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from ssmprobe.io import atomic_file, bundled_dir

FORMAT_NAME = "ssmprobe.checkpoint"
FORMAT_VERSION = 1

_SCALARS = (type(None), bool, int, float, str)


class CheckpointError(Exception):
    """A checkpoint cannot be used: missing, corrupt, refused, foreign or not fitting a model."""


@dataclass
class Checkpoint:
    config: dict[str, Any]
    state_dict: dict[str, Tensor]
    meta: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model_config: Mapping[str, Any],
    state_dict: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a checkpoint atomically to `path` (parent folders are created); returns the path.

    `model_config` and `meta` may hold only None, bool, int, float, str, lists, tuples and
    dicts; `extra` may hold tensors too. Anything else raises TypeError here, instead of a
    checkpoint that could not be loaded safely later.
    """
    path = Path(path)
    _check_plain(model_config, "model_config", tensors=False)
    _check_plain(meta, "meta", tensors=False)
    _check_plain(extra or {}, "extra", tensors=True)
    weights = {}
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, Tensor):
            raise TypeError(f"state_dict entry {name!r} must map a str to a tensor")
        weights[name] = tensor.detach().cpu()
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": dict(model_config),
        "state_dict": weights,
        "meta": dict(meta),
        "extra": dict(extra or {}),
    }
    with atomic_file(path, "wb") as f:
        torch.save(payload, f)
    return path


def resolve_checkpoint(name: str | Path) -> Path:
    """`name` itself when it is a file or names a folder; else the bundled checkpoint of that
    name (`s4_pgd.pt` or `s4_pgd`) when one exists; else `name` (whose loading then reports
    it missing)."""
    path = Path(name)
    if path.exists() or len(path.parts) != 1:
        bundled = bundled_dir() / path.name
        if len(path.parts) == 1 and bundled.is_file() and path.resolve() != bundled.resolve():
            warnings.warn(
                f"{name} is the local file {path.resolve()}, not the bundled checkpoint of that "
                "name (give the bundled one's path to use it)",
                stacklevel=2,
            )
        return path
    for candidate in (path.name, f"{path.name}.pt"):
        bundled = bundled_dir() / candidate
        if bundled.is_file():
            return bundled
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Checkpoint:
    """Reads a checkpoint written by `save_checkpoint` without executing anything from it; a
    bundled one only after its SHA-256 matches the manifest (`verify_bundled`)."""
    path = Path(path)
    return checkpoint_from_bytes(read_bytes(path, "checkpoint"), path, map_location)


def checkpoint_from_bytes(data: bytes, path: str | Path, map_location: Any = "cpu") -> Checkpoint:
    """The checkpoint in `data`, the content of `path` (named in errors), read as
    `load_checkpoint` reads it; for callers that also need the bytes (to hash or copy them)."""
    path = Path(path)
    verify_bundled(path, data)  # the bytes read once serve the hash and the unpickling
    return _parse(load_bytes(data, path, map_location, "checkpoint"), path)


def verify_bundled(path: str | Path, data: bytes) -> None:
    """For a file of the bundled folder listed in its manifest.json: raises CheckpointError
    unless the SHA-256 of its content `data` is the manifest's (a damaged or replaced zoo file
    is not silently analysed). Other files pass."""
    path = Path(path)
    folder = bundled_dir()
    manifest = folder / "manifest.json"
    if not path.is_file() or path.resolve().parent != folder.resolve() or not manifest.is_file():
        return
    entry = json.loads(manifest.read_text()).get(path.name)
    if entry is None:
        return
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(
            f"{path}: SHA-256 {digest[:12]}... differs from the manifest's "
            f"{entry['sha256'][:12]}...: the bundled file is damaged or was replaced "
            "(restore it, e.g. git checkout -- checkpoints/)"
        )


def read_bytes(path: Path, what: str = "checkpoint") -> bytes:
    """The content of `path`, or a CheckpointError (naming the bundled checkpoints when an
    ssmprobe checkpoint is missing: they are what such a path can point at instead)."""
    if not path.is_file():
        if path.exists() and not path.is_dir():  # a device, a pipe: never read to the end
            raise CheckpointError(f"{path}: not a regular file, so not a {what}")
        kind = "a folder, not a file" if path.is_dir() else "no such file"
        message = f"{what} not found: {path} ({kind})"
        if what == "checkpoint":
            shipped = ", ".join(sorted(p.name for p in bundled_dir().glob("*.pt")))
            message += f"; bundled checkpoints: {shipped or 'none'}"
        raise CheckpointError(message)
    return path.read_bytes()


def load_bytes(data: bytes, path: Path, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """`data` (the content of `path`) unpickled with tensors and plain containers only, or one
    CheckpointError saying why not: not a PyTorch file at all, corrupt (a zip member whose CRC
    does not match: flipped bytes in the weights), or refused (code in the pickle)."""
    _check_container(data, path, what)
    try:
        with warnings.catch_warnings():  # torch warns about the protocol of foreign pickles
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # torch reports bad files as many types (RuntimeError, EOFError...)
        weights_only = "Weights only load failed" in str(err)
        if isinstance(err, pickle.UnpicklingError) and weights_only and "GLOBAL" in str(err):
            raise CheckpointError(
                f"{path}: refused to load: the file asks for Python objects beyond tensors and "
                f"plain containers ({_weights_only_reason(err)}). Nothing from it was executed."
            ) from None
        if weights_only:  # a pickle, but not one torch.save wrote
            raise CheckpointError(f"{path}: not a {what}: {_NOT_TORCH}") from None
        raise CheckpointError(
            f"{path}: not a readable {what} (corrupt or truncated file?): "
            f"{type(err).__name__}: {_first_line(err)}"
        ) from err


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Raises CheckpointError naming every missing / unexpected key and every shape mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = [
        f"{title}: {', '.join(items)}"
        for title, items in (
            ("missing from the checkpoint", missing),
            ("unexpected in the checkpoint", unexpected),
            ("shape mismatch", mismatched),
        )
        if items
    ]
    if problems:
        raise CheckpointError(
            f"the checkpoint's weights do not fit the {type(model).__name__} built from its "
            "config (config/weights mismatch):\n  " + "\n  ".join(problems)
        )


def load_into(model: nn.Module, ckpt: Checkpoint) -> nn.Module:
    """Copies the checkpoint's weights into `model` after `check_state_dict`; returns model."""
    check_state_dict(model, ckpt.state_dict)
    model.load_state_dict(ckpt.state_dict)
    return model


def _parse(payload: Any, path: Path) -> Checkpoint:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        hint = ""
        if (
            isinstance(payload, dict)
            and payload
            and all(isinstance(v, Tensor) for v in payload.values())
        ):
            hint = " (it looks like a bare state_dict; save it with save_checkpoint)"
        raise CheckpointError(f"{path}: not an ssmprobe checkpoint{hint}")
    version = payload.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported (this ssmprobe "
            f"reads 1..{FORMAT_VERSION}; a newer version needs a newer ssmprobe)"
        )
    parts = ("config", "state_dict", "meta", "extra")
    missing = [k for k in parts if not isinstance(payload.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks (or has a non-dict) {', '.join(missing)}")
    bad = [k for k, v in payload["state_dict"].items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state_dict entries are not tensors: {', '.join(bad)}")
    return Checkpoint(*(payload[k] for k in parts))


def _check_plain(value: Any, where: str, tensors: bool) -> None:
    kind = type(value)
    if kind in _SCALARS or (tensors and isinstance(value, Tensor)):
        return
    if kind in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", tensors)
        return
    if kind in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where} has key {key!r}: keys must be str or int")
            _check_plain(item, f"{where}[{key!r}]", tensors)
        return
    allowed = "None, bool, int, float, str, list, tuple, dict" + (", tensors" if tensors else "")
    raise TypeError(
        f"{where} is a {kind.__module__}.{kind.__qualname__}; a checkpoint holds only {allowed} "
        "(convert it, e.g. float(x) for a numpy number, list(x) for a torch.Size)"
    )


# A legacy (pre-zip) torch file opens with this pickled magic number.
_LEGACY_HEADER = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[:-1]
_PICKLE = b"\x80"  # the PROTO opcode every pickle since protocol 2 starts with
_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}
_NOT_TORCH = "not a PyTorch file (neither the zip archive torch.save writes nor its legacy format)"


def _check_container(data: bytes, path: Path, what: str) -> None:
    """torch.save writes a zip archive (legacy: a pickle opening with a magic number). Anything
    else is not a PyTorch file; a zip whose members fail their CRC is corrupt (torch itself
    reads the weights without checking it)."""
    buffer = io.BytesIO(data)
    if not data:
        raise CheckpointError(f"{path}: empty file, not a {what} (corrupt or truncated?)")
    if not zipfile.is_zipfile(buffer):
        if data.startswith(_LEGACY_HEADER):
            return
        if data.startswith(_PICKLE):  # a plain pickle: read its opcodes, run none of them
            _refuse_plain_pickle(data, path, what)
        if data.startswith(b"PK\x03\x04"):  # a zip's first member, but no directory at the end
            raise CheckpointError(f"{path}: corrupt or truncated {what} (an incomplete zip)")
        raise CheckpointError(f"{path}: not a {what}: {_NOT_TORCH}")
    try:
        with zipfile.ZipFile(buffer) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:  # zlib errors are OSErrors too
        raise CheckpointError(f"{path}: corrupt {what}: {err}") from None
    if bad is not None:
        raise CheckpointError(
            f"{path}: corrupt {what}: the stored checksum of {bad} does not match its bytes"
        )


def _refuse_plain_pickle(data: bytes, path: Path, what: str) -> NoReturn:
    """A pickle that torch.save did not write: refused, saying whether it asks for code."""
    try:
        calls = [arg for op, arg, _ in pickletools.genops(data) if op.name in _CODE_OPCODES]
    except Exception:  # a pickle cut short, or not one at all
        calls = []
    if calls:
        raise CheckpointError(
            f"{path}: refused to load: a plain pickle (not a {what}) that asks for Python "
            f"objects ({calls[0] or 'a callable'}). Nothing from it was executed."
        )
    raise CheckpointError(f"{path}: not a {what}: a plain pickle, {_NOT_TORCH}")


def _weights_only_reason(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines()]
    reasons = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
    return reasons[0] if reasons else "unsupported content"


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"
