"""Finding a dataset's files on disk, checking them against their official MD5 and downloading
the missing ones.

`DataFiles` looks for a file in `<root>/<name>/`, then in `<root>/` itself; with `verify=True`
a file carrying an official name must have the official MD5 (`ChecksumError` otherwise), so a
corrupt or truncated download is caught. A missing file is downloaded into `<root>/<name>/`
when downloading is allowed: mirrors are tried in turn with short timeouts, a mirror that cannot
be reached is skipped from then on, and each file is checked against its MD5 before it is kept
under its name. What failed is remembered, so that one `DatasetNotFound` names the missing files,
the folder to put them in and why downloading did not help. `fetch_url` is the only function of
the package that touches the network. Which files a dataset has, where they are mirrored and
their MD5s are `data`'s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from ssmprobe.fileformats import CorruptDataError, DatasetError

DOWNLOAD_TIMEOUT = 10.0  # seconds per connection attempt / socket read: never hang for long


class DatasetNotFound(DatasetError):
    """The files of a split are neither on disk nor downloadable; says which and where."""

    def __init__(self, message: str, missing: Sequence[str], directory: Path) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.directory = directory


class ChecksumError(CorruptDataError):
    """A file with an official name does not have the official MD5."""


def md5sum(path: Path) -> str:
    """The MD5 of the file at `path`, as hex digits."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_url(url: str, dest: Path, timeout: float) -> None:
    """Writes the body of `url` to `dest` (the only function here that touches the network)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)


class DataFiles:
    """Finds, verifies and downloads the files of one dataset, remembering what failed.

    `checksums` maps the official file names to their MD5; only those files are downloaded.
    """

    def __init__(
        self, name: str, root: Path, download: bool, verify: bool, checksums: Mapping[str, str]
    ) -> None:
        self.name = name
        self.root = root
        self.target = root / name  # where downloads go and where we tell users to put files
        self.download = download
        self.verify = verify
        self.checksums = checksums
        self.errors: list[str] = []
        self._dead_mirrors: set[str] = set()

    @property
    def search_dirs(self) -> tuple[Path, Path]:
        return self.target, self.root

    def find(self, filename: str) -> Path | None:
        for directory in self.search_dirs:
            path = directory / filename
            if path.is_file():
                if self.verify:
                    check_md5(path, self.checksums)
                return path
        return None

    def find_or_fetch(self, filename: str, mirrors: Sequence[str]) -> Path | None:
        path = self.find(filename)
        if path is None and self.download:
            path = self._fetch(filename, mirrors)
        return path

    def _fetch(self, filename: str, mirrors: Sequence[str]) -> Path | None:
        expected = self.checksums[filename]
        for base in mirrors:
            if base in self._dead_mirrors:
                continue
            url = base + filename
            try:
                self.target.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", dir=self.target)
            except OSError as err:
                self.errors.append(f"cannot write to {self.target}: {err}")
                return None
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                fetch_url(url, tmp, DOWNLOAD_TIMEOUT)
                actual = md5sum(tmp)
                if actual != expected:
                    self.errors.append(f"{url}: MD5 {actual}, expected {expected}")
                    continue
                final = self.target / filename
                os.replace(tmp, final)
                return final
            except urllib.error.HTTPError as err:  # the server answered: try the next file there
                self.errors.append(f"{url}: {err}")
            except OSError as err:  # no route, DNS, timeout: skip this mirror from now on
                self.errors.append(f"{url}: {err}")
                self._dead_mirrors.add(base)
            finally:
                tmp.unlink(missing_ok=True)
        return None

    def not_found(self, split: str, missing: Sequence[str], what: str) -> DatasetNotFound:
        lines = [
            f"{self.name} ({split} split) not found: missing {what}.",
            f"Put the file(s) in {self.target}",
            f"(searched {self.search_dirs[0]} and {self.search_dirs[1]}; choose another folder "
            "with data_dir / --data-dir or $SSMPROBE_DATA).",
        ]
        if not self.download:
            lines.append("Downloading was disabled (download=False).")
        elif self.errors:
            lines.append("Download failed: " + "; ".join(self.errors))
        return DatasetNotFound("\n".join(lines), missing, self.target)


def check_md5(path: Path, checksums: Mapping[str, str]) -> None:
    """ChecksumError unless the file at `path` has the MD5 `checksums` gives its name (if any)."""
    expected = checksums.get(path.name)
    if expected is None:
        return
    actual = md5sum(path)
    if actual != expected:
        raise ChecksumError(
            f"{path} has MD5 {actual} but the official {path.name} has {expected}: the file is "
            "corrupt or incomplete. Delete it to download it again, or pass verify=False if you "
            "made this file yourself."
        )
