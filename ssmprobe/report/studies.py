"""Studies: results an analysis script committed to a folder, shown as sections of the report.

A study folder holds `study.json` (`STUDY_FILE`) beside the tables and figures it names: a title,
the sentence saying what was done (data, models, budget), the findings in sentences, the tables
(Markdown files) and the figures (PNGs) each with what it shows. `analysis/cifar10_jac.py`
writes one; `ssmprobe report --study DIR` (`ReportOptions.studies`) adds its sections after the
runs' own, so results that no run folder holds (published checkpoints, data that stays out of
the repository) are read from the files that were committed, not recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ssmprobe.io import write_json
from ssmprobe.report.sections import Section

STUDY_FILE = "study.json"


class StudyError(ValueError):
    """A study folder that cannot be shown: named, with what is wrong."""


@dataclass(frozen=True)
class Study:
    folder: Path
    title: str
    sentence: str
    findings: tuple[str, ...]
    tables: tuple[tuple[str, str, Path], ...]  # (title, what it shows, the Markdown file)
    figures: tuple[tuple[Path, str], ...]  # (the PNG, its caption)

    @property
    def files(self) -> list[Path]:
        """Every file the sections read: the report is rebuilt when one changes."""
        tables = [path for _, _, path in self.tables]
        return [self.folder / STUDY_FILE, *tables, *(path for path, _ in self.figures)]

    def sections(self) -> list[Section]:
        first = Section(self.title, self.sentence, notes=list(self.findings))
        tables = [
            Section(f"{self.title}: {title}", sentence, table=path.read_text(encoding="utf-8"))
            for title, sentence, path in self.tables
        ]
        figures = [path for path, _ in self.figures]
        shown = Section(
            f"{self.title}: figures", "", figures, captions={p: c for p, c in self.figures}
        )
        return [first, *tables, *([shown] if figures else [])]


def study_page(study: Study, note: str) -> str:
    """A documentation page of the study: title, `note` (how it is made), its sentence, findings
    and tables; the figures stay in the report, which has them at their size."""
    lines = [f"# {study.title}", "", note, "", study.sentence, "",
             *(f"- {x}" for x in study.findings), ""]  # fmt: skip
    for title, sentence, path in study.tables:
        lines += [f"## {title}", "", sentence, "", path.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines)


def write_study(
    folder: str | Path,
    title: str,
    sentence: str,
    findings: Sequence[str],
    tables: Sequence[tuple[str, str, str]],
    figures: Sequence[tuple[str, str]],
) -> Path:
    """Writes `folder/study.json`; `tables` are (title, sentence, file name) and `figures`
    (file name, caption), the files in `folder`. Returns its path."""
    path = Path(folder) / STUDY_FILE
    write_json(
        path,
        {
            "title": title,
            "sentence": sentence,
            "findings": list(findings),
            "tables": [{"title": t, "sentence": s, "file": f} for t, s, f in tables],
            "figures": [{"file": f, "caption": c} for f, c in figures],
        },
    )
    return path


def read_study(folder: str | Path) -> Study:
    """The study in `folder`; StudyError when study.json or a file it names is missing or the
    JSON is not a study."""
    folder = Path(folder)
    path = folder / STUDY_FILE
    if not path.is_file():
        raise StudyError(f"{folder}: no {STUDY_FILE} (is this the folder an analysis wrote?)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        study = Study(
            folder,
            str(raw["title"]),
            str(raw["sentence"]),
            tuple(str(f) for f in raw["findings"]),
            tuple((str(t["title"]), str(t["sentence"]), folder / t["file"]) for t in raw["tables"]),
            tuple((folder / f["file"], str(f["caption"])) for f in raw["figures"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise StudyError(f"{path} is not a study ({type(err).__name__}: {err})") from None
    missing = [p for p in study.files if not p.is_file()]
    if missing:
        raise StudyError(f"{path} names files that are not there: {', '.join(map(str, missing))}")
    outside = [p for p in study.files if not p.resolve().is_relative_to(folder.resolve())]
    if outside:  # a study shows its own files, never one elsewhere on the machine
        raise StudyError(f"{path} names files outside its folder: {', '.join(map(str, outside))}")
    return study
