"""File output: atomic, and never over anything a user had.

A crash mid-write leaves the previous file (or none), never half of one. Figures are written the
same way, without a creation date, so the same figure gives the same bytes and a rerun with
nothing new rewrites nothing.

The output rule (`check_output_file`, `check_output_dir`), applied before any work: an output is
a new path or a regular file this tool wrote. Every file written here is recorded, with its
SHA-256, in the sidecar `.ssmprobe-written.json` of its folder; a file whose name and content
are not recorded there is the user's. Anything else is refused with its reason: a device, FIFO
or socket, a symbolic link, a folder, a file inside the zoo or the installed package (never
replaced, --force or not), a user's file (replaced only with --force, and never when it is a
PyTorch checkpoint, unless the output itself is a checkpoint).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from io import BytesIO
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_UMASK = os.umask(0)  # read once: new files get the usual permissions, not mkstemp's 0600
os.umask(_UMASK)
FIGURE_FORMATS = (".png", ".pdf")
WRITTEN = ".ssmprobe-written.json"  # the sidecar: file name -> SHA-256 of what was written
PACKAGE_DIR = Path(__file__).resolve().parent
_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "ps": {"CreationDate": None}}
# Whether a write may replace a regular file ssmprobe did not write: --force, for the command
# under way (`replacing`). Checked by every write, so a name derived inside an output folder
# (a figure, a table, report.md) never silently replaces a user's file of that name.
_REPLACING: ContextVar[bool] = ContextVar("ssmprobe_replacing", default=False)


@contextmanager
def replacing(allowed: bool = True) -> Iterator[None]:
    """Within the block, writes may replace a user's regular file (what --force grants)."""
    token = _REPLACING.set(allowed)
    try:
        yield
    finally:
        _REPLACING.reset(token)


def replacing_allowed() -> bool:
    return _REPLACING.get()


def allow_replacing(allowed: bool) -> None:
    """Sets it for the rest of this context: a worker process, from its parent's."""
    _REPLACING.set(allowed)


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A temporary file beside `path`; when the block succeeds it is flushed, fsync'ed and
    renamed over `path` in one step, otherwise (any exception, KeyboardInterrupt too) removed."""
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            yield f
            f.flush()
            os.fsync(f.fileno())
        digest = sha256_file(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    _record(path, digest)


LOCK = ".ssmprobe.lock"


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Holds `folder`/.ssmprobe.lock, which names this process, while the block runs. A second
    writer is refused with the holder's pid; a lock whose process has ended (a killed run) is
    taken over. Creating the file with O_EXCL makes the test and the taking one step."""
    lock = Path(folder) / LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # the second try follows the removal of a stale lock
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_holder(lock)
            if holder is not None:
                raise OutputError(
                    f"{folder} is being written by {holder} ({lock}); wait for it, or "
                    "remove the lock file if that process is not ssmprobe"
                ) from None
            lock.unlink(missing_ok=True)  # its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
        return
    raise OutputError(f"{folder}: could not take {lock}")


def lock_holder(lock: Path) -> str | None:
    """Who holds `lock` ("process PID"), or None where that process has ended."""
    try:
        text = lock.read_text().strip()
    except FileNotFoundError:  # released this instant
        return None
    if not text:  # created, its pid not written yet: a writer starting now
        return "a process starting now"
    try:
        os.kill(int(text), 0)
    except (ProcessLookupError, ValueError):
        return None
    except PermissionError:  # another user's process: alive
        pass
    return f"process {text}"


def bundled_dir() -> Path:
    """The folder of checkpoints the project ships (the zoo): `checkpoints/` beside the package
    in a clone (or an editable install), `ssmprobe/checkpoints/` in an installed wheel."""
    installed = PACKAGE_DIR / "checkpoints"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "checkpoints"


def written_here(path: str | Path) -> bool:
    """Whether `path` holds what this tool wrote there (its folder's sidecar records its name
    with this content's SHA-256)."""
    path = Path(path)
    recorded = _read_sidecar(path.parent).get(path.name)
    return recorded is not None and path.is_file() and recorded == sha256_file(path)


def _record(path: Path, digest: str) -> None:
    """Adds `path` to its folder's sidecar, under a lock on the folder: processes writing into
    one folder at once (the report's workers) keep each other's entries."""
    folder = path.parent
    if _read_sidecar(folder).get(path.name) == digest:
        return
    with suppress(OSError):  # best effort: an unrecorded file only needs --force later
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = _read_sidecar(folder) | {path.name: digest}
            tmp = folder / f"{WRITTEN}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(entries, indent=0, sort_keys=True) + "\n")
            os.replace(tmp, folder / WRITTEN)
        finally:
            os.close(fd)


def _read_sidecar(folder: Path) -> dict[str, str]:
    try:
        entries = json.loads((folder / WRITTEN).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def sha256_file(path: Path) -> str:
    """The SHA-256 of the file at `path`, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OutputError(ValueError):
    """An output that cannot be written, or whose writing would destroy an input: raised before
    any work, so hours of computation never end in a traceback or a lost file."""


def check_output_file(
    path: str | Path,
    inputs: Sequence[str | Path] = (),
    overwrite: bool = True,
    force: bool = False,
    checkpoint: bool = False,
) -> Path:
    """`path` if the output rule (module docstring) lets a file be written there: a new path,
    or a regular file this tool wrote (only with `overwrite`), or with `force` a user's regular
    file that is not a PyTorch checkpoint (unless the output is a `checkpoint`); never one of
    `inputs`, never in the zoo or the package; in a folder that exists or can be made and is
    writable."""
    path = Path(path)
    if any(_same(path, i) for i in inputs):
        raise OutputError(f"{path} is also an input; writing it would destroy it")
    _check_not_protected(path)
    if os.path.lexists(path):
        what = _special(path)
        if what:
            raise OutputError(f"{path} is {what}; name a new path or a file ssmprobe wrote")
        ours, torch_file = written_here(path), _is_torch_file(path)  # each reads the file
        if not (force or (overwrite and ours)):
            if ours:
                raise OutputError(f"{path} exists; pass --force to replace it")
            kind = "a PyTorch checkpoint" if torch_file else f"not in its folder's {WRITTEN}"
            raise OutputError(
                f"{path} exists and ssmprobe did not write it ({kind}); name a new path"
                + ("" if torch_file and not checkpoint else ", or pass --force")
            )
        if torch_file and not (checkpoint or ours):
            raise OutputError(f"{path} is a PyTorch checkpoint; it is never replaced by results")
    _check_writable_folder(path.parent)
    return path


def check_replaceable(path: Path) -> None:
    """The last line of the output rule, at the moment of writing: `path` is new, or a regular
    file ssmprobe wrote, or (within `replacing`) any regular file."""
    if not os.path.lexists(path):
        return
    what = _special(path)
    if what:
        raise OutputError(f"{path} is {what}; not replaced")
    if not (_REPLACING.get() or written_here(path)):
        raise OutputError(
            f"{path} exists and ssmprobe did not write it (not in its folder's {WRITTEN}); "
            "pass --force to replace it, or write elsewhere (--out)"
        )


def check_output_dir(path: str | Path) -> Path:
    """`path` if it is (or can become) a writable folder outside the zoo and the package."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():  # a link to a folder is a folder
        raise OutputError(f"{path} is {_special(path) or 'a file'}; name a folder")
    _check_not_protected(path)
    _check_writable_folder(path)
    return path


def _same(path: Path, other: str | Path) -> bool:
    try:
        return path.resolve() == Path(other).resolve()
    except (OSError, RuntimeError):  # a symbolic-link loop: refused as a link below
        return False


def _special(path: Path) -> str | None:
    """What makes `path` no place for a result: a link, a folder, a device, a FIFO, a socket."""
    if path.is_symlink():
        return f"a symbolic link (to {os.readlink(path)})"
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    kinds = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}  # fmt: skip
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def _check_not_protected(path: Path) -> None:
    """Results never go into the zoo or the installed package."""
    try:
        target = path.absolute().parent.resolve() / path.name
    except (OSError, RuntimeError):
        return  # a loop above `path`: _check_writable_folder names it
    for folder, what in ((bundled_dir(), "the bundled checkpoints (the zoo)"),
                         (PACKAGE_DIR, "the installed ssmprobe package")):  # fmt: skip
        if target == folder.resolve() or folder.resolve() in target.parents:
            raise OutputError(f"{path} lies in {what}; write results elsewhere (--out)")


def _is_torch_file(path: Path) -> bool:
    """A torch.save file: a zip archive holding data.pkl, or the legacy pickle's magic."""
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        import zipfile

        with suppress(zipfile.BadZipFile, OSError):
            return any(n.endswith("data.pkl") for n in zipfile.ZipFile(path).namelist())
        return False
    return head[:2] == b"\x80\x02" and path.suffix in (".pt", ".pth", ".ckpt", ".bin")


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
        _record(path, hashlib.sha256(data).hexdigest())  # what we would write: ours
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
