"""The one report of a runs folder (`ssmprobe report`): the paper's tables and figures, your runs.

`build_report(runs, out)` first computes what is missing and caches it next to each run (the
`cache` module: the evaluations, the feature discrepancy, the bounds of one run per family).
Then it writes into `out`: Tables 1-2 (`table.md`, `.csv`, `.tex`; suspected gradient masking
marked), the training curves (Figs. 1, 2, 5: `curves_<dataset>_<method>`), Figures 3 and 4 with
the per-position curves (`discrepancy/`), the bounds figures (`bounds/`), the poisoning figure
of any `ssmprobe poison` results saved under the runs folder (`poison/`) (the `figures`
module), `report.md`, and `report.html` showing each table and figure with one sentence on what
it shows (`sections`, `html`), under the findings computed from the runs (`findings`). The page
links the PNGs beside it, so it stays small and the figures are not stored twice;
`ReportOptions.self_contained` embeds them instead, for a page that opens on its own.

Progress lines ("evaluating ...") go to stderr by default, keeping stdout for the results.

A file is written only when its content changes, and a run whose inputs (every file of every
run, the options) match the last one's fingerprint (`.report_state.json` in `out`, the `state`
module) stops there: a second run with nothing new takes seconds and rewrites nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ssmprobe.attacks import parse_attack
from ssmprobe.io import FIGURE_FORMATS, write_json, write_text
from ssmprobe.report.cache import (
    BOUNDS_FILE,
    _keep_lengths,
    _probed,
    _read_bounds,
    ensure_bounds,
    ensure_discrepancy,
    ensure_eval,
    pick_bounds_runs,
)
from ssmprobe.report.figures import _bounds_figures, _discrepancy_outputs, _poison_figure
from ssmprobe.report.findings import compute_findings
from ssmprobe.report.html import render_html
from ssmprobe.report.runs import collect_runs, find_runs, skipped_runs
from ssmprobe.report.sections import _sections, render_markdown
from ssmprobe.report.state import STATE_FILE, _changed, _fingerprint, _snapshot
from ssmprobe.report.studies import read_study
from ssmprobe.report.tables import write_tables


@dataclass(frozen=True)
class ReportOptions:
    """What `build_report` computes when it is missing (attacks and sample counts), and how it
    writes report.html."""

    attacks: tuple[str, ...] = ("pgd10", "aa")
    n_eval: int = 360  # test samples per evaluation (digits has 360)
    n_probe: int = 360  # samples per split for the discrepancy, test inputs for Mamba's bounds
    data_dir: str | None = None
    progress: bool = True
    self_contained: bool = False  # report.html embeds its images instead of linking them
    # Each figure as PNG (what report.html shows); add ".pdf" for vector copies, for papers.
    formats: tuple[str, ...] = (".png",)
    # Processes drawing the figures (`report.workers`); the CLI uses every core. Above 1, a
    # script calls build_report under `if __name__ == "__main__":`, as spawned processes need.
    workers: int = 1
    # Folders of committed results (`report.studies`), each shown as sections after the runs'.
    studies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n_eval < 1 or self.n_probe < 1:
            raise ValueError(
                f"n_eval and n_probe must be positive, got {self.n_eval}, {self.n_probe}"
            )
        if self.workers < 1:
            raise ValueError(f"workers must be positive, got {self.workers}")
        if ".png" not in self.formats or not set(self.formats) <= set(FIGURE_FORMATS):
            raise ValueError(f"formats must hold .png, and only {FIGURE_FORMATS}: {self.formats}")
        for spec in self.attacks:
            parse_attack(spec)  # an unknown attack fails here, before any work


@dataclass
class ReportResult:
    report_md: Path
    report_html: Path
    findings: list[str]
    written: list[Path]  # files whose content changed in this run
    up_to_date: bool  # nothing new: the run stopped at the fingerprint


def _to_stderr(line: str) -> None:
    """The default progress log: stderr, which keeps stdout for the results."""
    print(line, file=sys.stderr)


def build_report(
    runs_dir: str | Path,
    out_dir: str | Path,
    options: ReportOptions = ReportOptions(),
    log: Callable[[str], None] = _to_stderr,
) -> ReportResult:
    """Computes what is missing under `runs_dir`, then writes every table, figure and the
    report into `out_dir` (module docstring)."""
    runs_dir, out = Path(runs_dir), Path(out_dir)
    runs = find_runs(runs_dir)  # raises when there is none
    studies = [read_study(folder) for folder in options.studies]  # a bad one fails before work
    skipped = skipped_runs(runs_dir)  # run folders with nothing yet: listed, no row
    for path, why in skipped:
        log(f"skipped {runs_dir / path}: {why}")
    for run in runs:
        ensure_eval(run, options, log)
    probes = {run.path: p for run in runs if (p := ensure_discrepancy(run, options, log))}
    bound_runs = [run for run in pick_bounds_runs(runs) if _probed(run) is not None]
    checks = {run.path: ensure_bounds(run, options, log) for run in bound_runs}
    poison = sorted(runs_dir.rglob("poison*.json"))
    inputs = [*poison, *(runs_dir / path / "config.json" for path, _ in skipped)]
    inputs += [path for study in studies for path in study.files]

    fingerprint = _fingerprint(runs, inputs, options)
    md_path, html_path = out / "report.md", out / "report.html"
    state = out / STATE_FILE
    if state.is_file():  # a stale or missing cache changes the run's files, so the fingerprint
        previous = json.loads(state.read_text())
        if previous.get("fingerprint") == fingerprint and all(
            (out / p).is_file() for p in previous.get("outputs", [])
        ):
            return ReportResult(md_path, html_path, previous["findings"], [], True)

    before = _snapshot(out)
    frame = collect_runs(runs_dir)
    tables = write_tables(frame, out)
    from ssmprobe.bounds.figures import LENGTHS, medians_at
    from ssmprobe.report.curves import write_figures
    from ssmprobe.report.workers import figure_pool

    formats = options.formats
    with figure_pool(options.workers) as pool:  # each figure is drawn by one worker
        # The bounds against L first, one job per length, the longest (L = 1024) first: they
        # are the longest work. A run's bounds figures wait for its sweep, the others do not.
        sweeps = {
            path: [pool.submit(medians_at, c.model, c.law, n) for n in LENGTHS[::-1]][::-1]
            for path, c in checks.items()
            if c.needs_lengths
        }
        bound_jobs = {
            run.path: pool.submit(_bounds_figures, run, out / "bounds", formats)
            for run in bound_runs
            if run.path not in sweeps
        }
        curves_job = pool.submit(write_figures, runs_dir, out, formats)
        zoo = [csv for run in runs if run.zoo and (csv := probes.get(run.path))]
        discrepancy, summary = _discrepancy_outputs(
            list(probes.values()), out / "discrepancy", pool, formats, zoo
        )
        poison_jobs = [pool.submit(_poison_figure, p, out / "poison", formats) for p in poison]
        for run in bound_runs:
            if run.path in sweeps:
                _keep_lengths(checks[run.path], sweeps[run.path], run.path / BOUNDS_FILE)
                bound_jobs[run.path] = pool.submit(_bounds_figures, run, out / "bounds", formats)
        curves = curves_job.result()
        bounds = {run.path: bound_jobs[run.path].result() for run in bound_runs}
        poison_figures = [p for job in poison_jobs for p in job.result()]
    held = [(r.dataset, _read_bounds(r.path)) for r in bound_runs]
    findings = compute_findings(frame, summary, [b | {"dataset": d} for d, b in held if b])
    sections = _sections(frame, tables, curves, discrepancy, bounds, runs, poison_figures, skipped)
    sections += [section for study in studies for section in study.sections()]
    write_text(md_path, render_markdown(findings, sections, out))
    write_text(html_path, render_html(findings, sections, out, options.self_contained))
    outputs = sorted(
        {
            p.relative_to(out).as_posix()
            for p in [md_path, html_path, *tables.values(), *curves, *discrepancy, *poison_figures]
            + [p for paths in bounds.values() for p in paths]
        }
    )
    fingerprint = _fingerprint(runs, inputs, options)  # a bounds cache gained its lengths
    write_json(state, {"fingerprint": fingerprint, "outputs": outputs, "findings": findings})
    written = [p for p in _changed(out, before) if p.name != STATE_FILE]
    return ReportResult(md_path, html_path, findings, written, False)
