"""Atomic file output: a crash mid-write leaves the previous file (or none), never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)  # read once: new files get the usual permissions, not mkstemp's 0600
os.umask(_UMASK)


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


def _fsync_dir(folder: Path) -> None:
    """Makes the rename itself durable; not possible on every platform, hence best effort."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
