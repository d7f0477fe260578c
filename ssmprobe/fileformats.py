"""The formats of the official dataset files, parsed and checked: IDX (MNIST's `.gz` files),
and CIFAR-10's python batches, read from their folder or straight from the `.tar.gz` archive.
Image folders, the other way to give CIFAR-10, are read by `imagefolder`.

IDX: magic `00 00 <type code> <ndim>`, then ndim big-endian uint32 sizes, then exactly
prod(sizes) items, gzip-compressed or not. A CIFAR-10 batch is a pickle of a dict with b"data"
(n, 3072) uint8, channel-major, and b"labels" (n). Batches are read with a restricted unpickler
that builds only numpy arrays, dtypes and scalars (plus the latin-1 bytes shim of protocol-2
pickles) and refuses every other global before anything is called, so a malicious file raises
`UnsafePickleError` and runs no code.

Every header, size and label range is checked: a file that is not what its format promises
raises `CorruptDataError` naming it. `DatasetError` is the base of every error about data files
(`download` adds `DatasetNotFound` and `ChecksumError`).
"""

from __future__ import annotations

import codecs
import gzip
import math
import pickle
import struct
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np


class DatasetError(Exception):
    """Base class of every error about data files (this module's, `download`'s, `data`'s)."""


class CorruptDataError(DatasetError):
    """A data file exists but is not what its format promises (header, size, labels)."""


class UnsafePickleError(CorruptDataError):
    """A pickle asked for a global outside the allowlist; it was refused, nothing ran."""


# ------------------------------------------------------------------------------------ IDX

# IDX type codes (third magic byte) -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Parses an IDX file (gzip-compressed or not) into an array in native byte order.

    Layout: magic `00 00 <type code> <ndim>`, then ndim big-endian uint32 sizes, then exactly
    prod(sizes) items. Anything else raises `CorruptDataError` naming the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise CorruptDataError(f"{path}: broken or truncated gzip stream ({err})") from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise CorruptDataError(f"{path}: not an IDX file (magic {raw[:4].hex() or 'missing'})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise CorruptDataError(f"{path}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)
    body = len(raw) - header
    if body != count * dtype.itemsize:
        problem = "truncated" if body < count * dtype.itemsize else "has trailing bytes"
        raise CorruptDataError(
            f"{path}: IDX data {problem}: {body} bytes, header {dims} promises "
            f"{count * dtype.itemsize}"
        )
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return array.astype(dtype.newbyteorder("=")).reshape(dims)  # astype copies: writable


# --------------------------------------------------------------------------- safe pickles


def _latin1_encode(text: str, encoding: str) -> bytes:
    """Protocol-2 pickles from Python 3 store bytes as `_codecs.encode(text, "latin1")`."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and 2 names
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals numpy arrays need; any other global is refused unresolved."""

    _allowed = _allowed_globals()

    def __init__(self, file: IO[bytes], source: str) -> None:
        super().__init__(file, encoding="bytes")  # Python-2 str -> bytes, as CIFAR documents
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refused to load global {module}.{name} (only numpy arrays are "
                "allowed in a data batch); nothing from the file was executed"
            ) from None


def safe_unpickle(file: IO[bytes], source: str) -> Any:
    """Unpickles plain containers and numpy arrays from `file`; `source` names it in errors."""
    try:
        return _NumpyOnlyUnpickler(file, source).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # a corrupt pickle can fail in many ways; all mean "corrupt"
        raise CorruptDataError(f"{source}: not a readable pickle ({err!r})") from err


# ---------------------------------------------------------------------- MNIST, CIFAR-10


def read_mnist(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 784, 1) uint8 and labels (N,) int64 of one pair of IDX files, checked."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CorruptDataError(
            f"{images_path}: expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise CorruptDataError(
            f"{labels_path}: expected {len(images)} uint8 labels, got {labels.dtype} {labels.shape}"
        )
    check_labels(labels, 10, labels_path)
    return images.reshape(len(images), 28 * 28, 1), labels.astype(np.int64)


def read_cifar10_archive(
    archive: Path, folder: str, batches: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The `batches` under `folder/` of the tar.gz `archive`, read straight from it (one pass,
    nothing extracted to disk), each as `read_cifar10_batch` gives it."""
    wanted = {f"{folder}/{batch}": batch for batch in batches}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name not in wanted or not member.isfile():
                    continue  # links and other members are never followed
                f = tar.extractfile(member)
                if f is not None:
                    found[wanted[member.name]] = read_cifar10_batch(f, f"{archive}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise CorruptDataError(f"{archive}: broken tar.gz archive ({err})") from err
    lacking = [batch for batch in batches if batch not in found]
    if lacking:
        raise CorruptDataError(f"{archive}: no {', '.join(lacking)} under {folder}/")
    return [found[batch] for batch in batches]


def read_cifar10_batch(file: IO[bytes], source: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, 1024, 3) uint8, channels last, and labels (n,) int64 of one batch: a dict with
    b"data" (n, 3072) uint8, channel-major, and b"labels" (n); `source` names it in errors."""
    batch = safe_unpickle(file, source)
    if not isinstance(batch, dict):
        raise CorruptDataError(f"{source}: expected a dict, got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise CorruptDataError(f"{source}: no 'data' / 'labels' entries (keys {list(batch)})")
    data = batch["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or (data.shape[1] != 3 * 32 * 32)
    ):
        shape = getattr(data, "shape", None)
        raise CorruptDataError(f"{source}: 'data' must be uint8 (n, 3072), got {shape}")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise CorruptDataError(f"{source}: 'labels' are not integers ({err})") from err
    if labels.shape != (len(data),):
        raise CorruptDataError(f"{source}: {labels.shape} labels for {len(data)} images")
    check_labels(labels, 10, source)
    # (n, 3 * 1024) channel planes -> (n, 1024, 3): pixel k = row * 32 + col, channels last.
    pixels = np.ascontiguousarray(data.reshape(len(data), 3, 32 * 32).transpose(0, 2, 1))
    return pixels, labels


def check_labels(labels: np.ndarray, num_classes: int, source: object) -> None:
    """CorruptDataError naming `source` unless every label lies in 0..num_classes - 1."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise CorruptDataError(
            f"{source}: labels must lie in 0..{num_classes - 1}, found "
            f"{labels.min()}..{labels.max()}"
        )
