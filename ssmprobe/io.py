"""Atomic file output: a crash mid-write leaves the previous file (or none), never half of one.
Figures are written the same way, without a creation date, so the same figure gives the same
bytes and a rerun with nothing new rewrites nothing."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from io import BytesIO
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_UMASK = os.umask(0)  # read once: new files get the usual permissions, not mkstemp's 0600
os.umask(_UMASK)
FIGURE_FORMATS = (".png", ".pdf")
_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "ps": {"CreationDate": None}}


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A temporary file beside `path`; when the block succeeds it is flushed, fsync'ed and
    renamed over `path` in one step, otherwise (any exception, KeyboardInterrupt too) removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class OutputError(ValueError):
    """An output that cannot be written, or whose writing would destroy an input: raised before
    any work, so hours of computation never end in a traceback or a lost file."""


def check_output_file(
    path: str | Path, inputs: Sequence[str | Path] = (), overwrite: bool = True
) -> Path:
    """`path` if a file can be written there: not a folder, not one of `inputs`, not an
    existing file unless `overwrite`, in a folder that exists or can be made and is writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; name a file to write")
    if any(path.resolve() == Path(i).resolve() for i in inputs):
        raise OutputError(f"{path} is also an input; writing it would destroy it")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --force to replace it")
    _check_writable_folder(path.parent)
    return path


def check_output_dir(path: str | Path) -> Path:
    """`path` if it is (or can become) a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; name a folder")
    _check_writable_folder(path)
    return path


def _check_writable_folder(folder: Path) -> None:
    """The folder, or the nearest existing one above it (where it would be made), is a
    writable folder."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot make the folder {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {existing}: permission denied")


def write_bytes(path: str | Path, data: bytes) -> bool:
    """Writes `data` atomically unless `path` already holds exactly that (its modification time
    then stays, so a rerun with nothing new rewrites nothing); returns whether it wrote."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    with atomic_file(path, "wb") as f:
        f.write(data)
    return True


def write_text(path: str | Path, text: str) -> bool:
    """`write_bytes` of `text` in UTF-8."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any) -> bool:
    return write_text(path, json.dumps(value, indent=2) + "\n")


def save_figure(
    fig: Figure, stem: str | Path, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """Writes `fig` atomically as `stem` + each suffix in `formats` (once each, 150 dpi for
    raster ones), leaving a file that already holds the same image untouched; returns the
    paths. Files carry no creation date, so the same figure gives the same bytes."""
    paths = [Path(f"{stem}{suffix.lower()}") for suffix in dict.fromkeys(formats)]
    for target in paths:
        kind = target.suffix[1:]
        buffer = BytesIO()
        fig.savefig(buffer, format=kind, dpi=150, metadata=_NO_DATE.get(kind))
        write_bytes(target, buffer.getvalue())
    return paths


def _fsync_dir(folder: Path) -> None:
    """Makes the rename itself durable; not possible on every platform, hence best effort."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
