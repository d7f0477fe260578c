"""The report's own state in its out folder: whether anything is new since the last run, and
which files this run changed.

`build_report` keeps in `.report_state.json` (`STATE_FILE`) the fingerprint of its inputs
(every file of every run, the extra inputs, the options), the outputs it wrote and the
findings: a run whose fingerprint matches stops there, rewriting nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssmprobe.io import WRITTEN
from ssmprobe.report.runs import RunInfo
from ssmprobe.version import __version__

if TYPE_CHECKING:
    from ssmprobe.report.build import ReportOptions

STATE_FILE = ".report_state.json"


def _fingerprint(runs: Sequence[RunInfo], extra: Sequence[Path], options: ReportOptions) -> str:
    """A digest of every file of every run (name, size, modification time), the extra
    inputs and the options: equal digests mean nothing new to report."""
    entries: list[Any] = [__version__, asdict(options) | {"progress": None, "workers": None}]
    for path in sorted({f for run in runs for f in run.path.iterdir() if f.is_file()} | set(extra)):
        stat = path.stat()
        entries.append([str(path), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _snapshot(out: Path) -> dict[Path, int]:
    """Modification times of the outputs under `out` (not the sidecars that record them)."""
    if not out.is_dir():
        return {}
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != WRITTEN}


def _changed(out: Path, before: dict[Path, int]) -> list[Path]:
    return sorted(p for p, mtime in _snapshot(out).items() if before.get(p) != mtime)
