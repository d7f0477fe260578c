"""The one report of a runs folder (`ssmprobe report`): the paper's tables and figures, your runs.

`build_report(runs, out)` first computes what is missing and caches it next to each run (a
cache counts while it is newer than the checkpoint it was made from):

- `eval_best.json`, `eval_last.json`: clean, PGD-10 and AutoAttack accuracy on the first
  `n_eval` test samples (`evaluation.evaluate.evaluate`, masking flags included);
- `discrepancy.csv` / `.json`: the feature discrepancy (§4.2) of the run's probed checkpoint,
  best.pt after adversarial training, last.pt after standard training (whose "best" is an
  epoch of PGD-10 noise around chance), on `n_probe` samples of each split;
- `bounds.csv` / `.json`: Theorem 4.1.1 on the probed checkpoint of one run per family and
  dataset (PGD-AT without AdS, else the family's first run): uniform noise at the run's ε for
  LTI layers, with Mamba's H over `n_probe` test inputs.

Then it writes into `out`: Tables 1-2 (`table.md`, `.csv`, `.tex`; suspected gradient masking
marked), the training curves (Figs. 1, 2, 5: `curves_<dataset>_<method>`), Figures 3 and 4 with
the per-position curves (`discrepancy/`), the bounds figures (`bounds/`), the poisoning figure
of any `ssmprobe poison` results saved under the runs folder (`poison/`), `report.md`, and
`report.html` showing each table and figure with one sentence on what it shows, under the
findings computed from the runs. The page links the PNGs beside it, so it stays small and the
figures are not stored twice; `ReportOptions.self_contained` embeds them instead, for a page that
opens on its own.

Progress lines ("evaluating ...") go to stderr by default, keeping stdout for the results.

A file is written only when its content changes, and a run whose inputs (every file of every
run, the options) match the last one's fingerprint (`.report_state.json` in `out`) stops there:
a second run with nothing new takes seconds and rewrites nothing.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd

from ssmprobe.attacks import parse_attack
from ssmprobe.evaluation.sanity import AA_CHECK_FOOTNOTE, FOOTNOTE
from ssmprobe.io import FIGURE_FORMATS, WRITTEN, write_json, write_text
from ssmprobe.models import FAMILIES
from ssmprobe.report.tables import (
    EVAL_FILES,
    KEY_COLUMNS,
    RunInfo,
    collect_runs,
    display,
    find_runs,
    read_eval,
    read_json,
    setting_title,
    write_tables,
)
from ssmprobe.version import __version__
from ssmprobe.vocab import KIND_NAMES

if TYPE_CHECKING:
    from ssmprobe.bounds.check import BoundsCheck

STATE_FILE = ".report_state.json"
DISCREPANCY_FILE = "discrepancy.csv"
BOUNDS_FILE = "bounds.csv"


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
class Section:
    """One table or group of figures of the report, with the sentence saying what it shows."""

    title: str
    sentence: str
    images: list[Path] = field(default_factory=list)
    table: str | None = None  # a Markdown table (table.md's text)


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
    for run in runs:
        ensure_eval(run, options, log)
    probes = {run.path: p for run in runs if (p := ensure_discrepancy(run, options, log))}
    bound_runs = [run for run in pick_bounds_runs(runs) if _probed(run) is not None]
    checks = {run.path: ensure_bounds(run, options, log) for run in bound_runs}
    poison = sorted(runs_dir.rglob("poison*.json"))

    fingerprint = _fingerprint(runs, poison, options)
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
        discrepancy, summary = _discrepancy_outputs(
            list(probes.values()), out / "discrepancy", pool, formats
        )
        poison_jobs = [pool.submit(_poison_figure, p, out / "poison", formats) for p in poison]
        for run in bound_runs:
            if run.path in sweeps:
                _keep_lengths(checks[run.path], sweeps[run.path], run.path / BOUNDS_FILE)
                bound_jobs[run.path] = pool.submit(_bounds_figures, run, out / "bounds", formats)
        curves = curves_job.result()
        bounds = {run.path: bound_jobs[run.path].result() for run in bound_runs}
        poison_figures = [p for job in poison_jobs for p in job.result()]
    findings = compute_findings(frame, summary, [_read_bounds(r.path) for r in bound_runs])
    sections = _sections(frame, tables, curves, discrepancy, bounds, runs, poison_figures)
    write_text(md_path, render_markdown(findings, sections, out))
    write_text(html_path, render_html(findings, sections, out, options.self_contained))
    outputs = sorted(
        {
            p.relative_to(out).as_posix()
            for p in [md_path, html_path, *tables.values(), *curves, *discrepancy, *poison_figures]
            + [p for paths in bounds.values() for p in paths]
        }
    )
    fingerprint = _fingerprint(runs, poison, options)  # a bounds cache gained its lengths
    write_json(state, {"fingerprint": fingerprint, "outputs": outputs, "findings": findings})
    written = [p for p in _changed(out, before) if p.name != STATE_FILE]
    return ReportResult(md_path, html_path, findings, written, False)


def zoo_runs(dest: str | Path) -> list[Path]:
    """The bundled checkpoints (`checkpoint.bundled_dir`, verified against their manifest) as
    run directories under `dest`, so the report treats them like your runs: each holds
    config.json, the checkpoint as best.pt (adversarial training) or last.pt (standard), and
    its eval file from the manifest's accuracies, and what the bundle's cache/ folder ships:
    the run's metrics.jsonl (curves) and the discrepancy and bounds results. Unchanged files
    are left as they are."""
    from ssmprobe.checkpoint import bundled_dir, load_checkpoint
    from ssmprobe.evaluation.sanity import masking_flags
    from ssmprobe.io import write_bytes

    folder = bundled_dir()
    manifest = read_json(folder / "manifest.json")
    dest = Path(dest)
    foreign = [] if not dest.is_dir() else [
        p.name for p in dest.iterdir() if p.is_file() or f"{p.name}.pt" not in manifest
    ]  # fmt: skip
    if foreign:  # a run of the user's named like the zoo's folder: never mix the two
        raise ValueError(
            f"{dest} holds {', '.join(sorted(foreign)[:3])}, which is not the bundled zoo; the "
            "zoo is written there, so rename or move it"
        )
    made = []
    for name, entry in sorted(manifest.items()):
        ckpt = load_checkpoint(folder / name)  # raises if the file is not the manifest's
        run = Path(dest) / Path(name).stem
        which = entry["checkpoint"]
        write_bytes(run / f"{which}.pt", (folder / name).read_bytes())
        config = {
            "model": entry["model"],
            "train": entry["train"],
            "dataset": entry["dataset"],
            "method": entry["method"],
            "ads": entry["model"].get("ads"),
            "seed": entry["train"].get("seed"),
            "source": f"bundled {name}, epoch {ckpt.meta['epoch']}",
        }
        write_json(run / "config.json", config)
        results = entry["accuracy"]
        record = {"checkpoint": f"{which}.pt", "dataset": entry["dataset"], "n": entry["n_test"]}
        record |= {"eps": entry["eps"], "results": results, "masking": masking_flags(results)}
        if "autoattack_checks" in entry:  # entries bundled before it was kept lack it
            record["autoattack_checks"] = entry["autoattack_checks"]
        write_json(run / EVAL_FILES[which], record)
        cached = folder / "cache" / Path(name).stem  # the zoo's own discrepancy and bounds
        for path in sorted(cached.glob("*")) if cached.is_dir() else []:
            write_bytes(run / path.name, path.read_bytes())  # after the checkpoint: fresh
        made.append(run)
    return made


def ensure_eval(run: RunInfo, options: ReportOptions, log: Callable[[str], None]) -> None:
    """eval_best.json / eval_last.json of `run`, computed where missing, older than the
    checkpoint or lacking one of the attacks."""
    from ssmprobe.evaluation.evaluate import evaluate, format_results

    labels = {parse_attack(spec, run.dataset).label for spec in options.attacks}
    for which, name in EVAL_FILES.items():
        ckpt, cache = run.path / f"{which}.pt", run.path / name
        if not ckpt.is_file():
            continue
        if not _stale(cache, ckpt) and labels <= set(read_eval(cache)):
            continue
        log(f"evaluating {ckpt} ({', '.join(options.attacks)}, n = {options.n_eval})")
        record = evaluate(
            ckpt,
            list(options.attacks),
            n=options.n_eval,
            data_dir=options.data_dir,
            progress=options.progress,
            force=True,  # the run's own cache, older ones written before the sidecar
        )
        log("  " + format_results(record))


def ensure_discrepancy(
    run: RunInfo, options: ReportOptions, log: Callable[[str], None]
) -> Path | None:
    """The run's cached discrepancy CSV (computed when missing or stale); None without a
    probed checkpoint."""
    from ssmprobe.probe.discrepancy import discrepancy, save

    ckpt = _probed(run)
    if ckpt is None:
        return None
    cache = run.path / DISCREPANCY_FILE
    if _stale(cache, ckpt) or not _has_nsr(cache):
        log(f"discrepancy of {ckpt} (n = {options.n_probe} per split)")
        result = discrepancy(
            ckpt, n=options.n_probe, data_dir=options.data_dir, progress=options.progress
        )
        save([result], cache)
    return cache


def _has_nsr(cache: Path) -> bool:
    """Whether a discrepancy CSV holds the NSR rows (files written before them do not)."""
    with cache.open(encoding="utf-8") as f:
        return any(",nsr," in line for line in f)


def pick_bounds_runs(runs: Sequence[RunInfo]) -> list[RunInfo]:
    """One run per (dataset, family): PGD-AT without AdS when there is one, else the first."""
    chosen: dict[tuple[str, str], RunInfo] = {}
    for run in runs:
        key = (run.dataset, run.model)
        if run.model not in FAMILIES:
            continue
        if key not in chosen or (
            (run.method, run.ads) == ("pgd", "none")
            and (chosen[key].method, chosen[key].ads) != ("pgd", "none")
        ):
            chosen[key] = run
    return list(chosen.values())


def compute_findings(
    frame: pd.DataFrame, discrepancy: pd.DataFrame, bounds: Sequence[dict[str, Any] | None]
) -> list[str]:
    """Sentences with the runs' own numbers: per family, what adversarial training did to
    PGD-10 accuracy; which components raise and lower the discrepancy of one adversarially
    trained run (yours before the zoo's); whether the bounds hold; how many rows look like
    gradient masking."""
    findings = []
    plain = frame[frame["ads"] == "none"]
    zoo = _from_zoo(plain["run"])
    reported: set[tuple[str, str]] = set()
    for part in (plain[~zoo], plain[zoo]):  # a family's pair from your runs, else the zoo's
        for (dataset, model), group in part.groupby(["dataset", "model"], sort=False):
            st = group[group["method"] == "st"]
            at = group[group["method"] != "st"].dropna(subset=["pgd10_best"])
            if (dataset, model) in reported or st.empty or at.empty:
                continue
            if pd.isna(st["pgd10_last"].iloc[0]):
                continue
            reported.add((dataset, model))
            best = at.loc[at["pgd10_best"].idxmax()]
            findings.append(
                f"{display('method', best['method'])} raised {display('model', model)}'s PGD-10 "
                f"accuracy on {display('dataset', dataset)} from {st['pgd10_last'].iloc[0]:.1f}% "
                f"(ST) to {best['pgd10_best']:.1f}%"
                + ("" if pd.isna(best["aa_best"]) else f" (AutoAttack {best['aa_best']:.1f}%)")
                + f", clean {st['clean_last'].iloc[0]:.1f}% -> {best['clean_best']:.1f}%."
            )
    from ssmprobe.probe.verdicts import verdicts

    table = verdicts(discrepancy) if not discrepancy.empty else pd.DataFrame()
    at_rows = table[(table["method"] != "st") & (table["split"] == "test")] if len(table) else table
    if not at_rows.empty:  # yours before the zoo's, a run without AdS before one with
        order = _from_zoo(at_rows["checkpoint"]) * 2 + (at_rows["ads"] != "none")
        at_rows = at_rows.iloc[order.argsort(kind="stable")]
        first = at_rows.iloc[0]
        rows = at_rows[at_rows["checkpoint"] == first["checkpoint"]]
        what = f"{display('model', first['model'])} {display('method', first['method'])}"
        findings.append(component_finding(what, rows))
    if len(table):
        findings.append(verdict_finding(table[table["split"] == "test"]))
    findings += gap_findings(frame)
    held = [b for b in bounds if b]
    if held:
        findings.append(bounds_finding(held))
    flagged = frame[frame["masking"].fillna("") != ""]
    findings.append(
        f"{len(flagged)} of {len(frame)} rows show a gradient-masking pattern."
        if len(flagged)
        else f"No row of {len(frame)} shows a gradient-masking pattern."
    )
    checked = frame[frame["aa_checks"].fillna("") != ""]
    if len(checked):
        names = "; ".join(setting_title(*row[KEY_COLUMNS]) for _, row in checked.iterrows())
        findings.append(
            f"AutoAttack's own checks warned on {len(checked)} row(s) ({names}); the warnings "
            "are in table.csv, and AA already counts what its attacks found."
        )
    return findings


def component_finding(what: str, rows: pd.DataFrame) -> str:
    """What each component of one checkpoint does to the KL discrepancy on adversarial test
    inputs (its `probe.verdicts` rows), in the plain and the relative form."""
    parts = [  # rates are in % already
        f"the {KIND_NAMES[r['kind']]} {_change(r['kl_plain'])}"
        + (f" (relative form: {_change(r['kl_relative'])}" if _finite(r["kl_relative"]) else "")
        + (f"; amplification {r['amplification']:.2f}" if _finite(r["amplification"]) else "")
        + (")" if _finite(r["kl_relative"]) else "")
        for _, r in rows.iterrows()
        if r["kind"] in KIND_NAMES and _finite(r["kl_plain"])
    ]
    return f"{what}, adversarial test inputs: " + "; ".join(parts) + "."


def bounds_finding(held: Sequence[dict[str, Any]]) -> str:
    """On how many channels Theorem 4.1.1's kernel-form and spectral bounds held, over the
    saved checks (`BoundsCheck.save`'s JSON) `held`."""
    kernel = [(display("model", b["meta"]["model"]), *_holds(b, "kernel_upper")) for b in held]
    spectral = [_holds(b, "spectral_upper") for b in held]
    failing = [f"{n - k} of {name}'s {n}" for name, k, n in kernel if k < n]
    return (
        f"Theorem 4.1.1's kernel-form upper bound held on {sum(k for _, k, _ in kernel)} of "
        f"{sum(n for _, _, n in kernel)} channels ({', '.join(name for name, _, _ in kernel)})"
        + (f", failing on {', '.join(failing)}" if failing else "")
        + f"; the spectral bound on {sum(k for k, _ in spectral)} of "
        f"{sum(n for _, n in spectral)}."
    )


def _change(rate: float) -> str:
    return f"{'raises' if rate > 0 else 'lowers'} KL by {abs(rate):.0f}%"


def _finite(value: Any) -> bool:
    return isinstance(value, float | int) and math.isfinite(value)


def verdict_finding(table: pd.DataFrame) -> str:
    """How often the plain and the relative form of Figures 3-4 disagree, and how often a
    component amplifies the attack more than the signal (`probe.verdicts`)."""
    from ssmprobe.probe.verdicts import disagreements

    pairs = 2 * len(table)
    split = disagreements(table)
    # (component, metric) pairs per kind, as in the total: a row may disagree on both metrics
    kinds = (
        split["disagree"]
        .str.split(", ")
        .str.len()
        .groupby(split["kind"])
        .sum()
        .sort_values(ascending=False, kind="stable")
    )
    amplified = table[table["amplification"] > 1].groupby("kind").size()  # unrounded
    counted = table.groupby("kind").size()
    return (
        f"Figures 3-4 on test inputs: the plain and the relative form give opposite verdicts on "
        f"{kinds.sum()} of {pairs} (component, metric) "
        f"pairs ({', '.join(f'{KIND_NAMES.get(k, k)} {n}' for k, n in kinds.items()) or 'none'}); "
        "the scale-free amplification is above 1 for "
        + ", ".join(
            f"{amplified.get(k, 0)} of {n} {KIND_NAMES.get(k, k)}" for k, n in counted.items()
        )
        + "."
    )


def gap_findings(frame: pd.DataFrame) -> list[str]:
    """The robust generalisation gap (train - test PGD-10) and Best - Last: the paper's two
    signs of robust overfitting, on the adversarially trained runs."""
    if "gap_last" not in frame:
        return []
    at = frame[(frame["method"] != "st") & frame["gap_last"].notna()]
    if at.empty:
        return []
    top = at.loc[at["gap_last"].idxmax()]
    plain = at[at["ads"] == "none"]
    paired = at[at["ads"] != "none"].merge(
        plain[["dataset", "model", "method", "gap_last"]],
        on=["dataset", "model", "method"],
        suffixes=("", "_plain"),
    )
    lines = [
        f"Robust generalisation gap (train - test PGD-10 at the last epoch) of the {len(at)} "
        f"adversarially trained runs: {at['gap_last'].min():.1f} to {at['gap_last'].max():.1f} "
        f"points, largest for {setting_title(*top[KEY_COLUMNS])} ({top['train_pgd_last']:.1f} "
        f"train vs {top['test_pgd_last']:.1f} test); test PGD-10 at the best and the last epoch "
        f"differ by at most {(at['test_pgd_best'] - at['test_pgd_last']).abs().max():.1f} points."
    ]
    if len(paired):
        wider = int((paired["gap_last"] > paired["gap_last_plain"]).sum())
        lines.append(
            f"AdS runs have a wider robust gap than the same setting without AdS in {wider} of "
            f"{len(paired)} settings."
        )
    return lines


def _from_zoo(paths: pd.Series) -> pd.Series:
    """Which of `paths` (of runs or checkpoints) lie in the zoo/ folder `zoo_runs` fills."""
    return paths.astype(str).str.contains("zoo/")


def _holds(bounds: dict[str, Any], form: str) -> tuple[int, int]:
    """(channels where the `form` bound held, channels where it was checked) of one check."""
    rows = [s for s in bounds["summary"] if f"{form}_holds" in s]
    return sum(s[f"{form}_holds"] for s in rows), sum(s["channels"] for s in rows)


def render_markdown(findings: Sequence[str], sections: Sequence[Section], out: Path) -> str:
    lines = ["# ssmprobe report", "", *(f"- {f}" for f in findings), ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.sentence, ""]
        if section.table:
            lines += [section.table.rstrip("\n"), ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in section.images]
        if section.images:
            lines.append("")
    return "\n".join(lines)


def render_html(
    findings: Sequence[str], sections: Sequence[Section], out: Path, self_contained: bool = False
) -> str:
    """One page that links each image by its path relative to `out`, where the page and the
    PNGs are written: a small page whose figures are not stored twice. `self_contained` embeds
    them as data URIs instead, for a page that opens anywhere on its own."""
    body = ["<h1>ssmprobe report</h1>", "<ul>", *(f"<li>{html.escape(f)}</li>" for f in findings)]
    body.append("</ul>")
    for section in sections:
        body += [
            f"<h2>{html.escape(section.title)}</h2>",
            f"<p>{html.escape(section.sentence)}</p>",
        ]
        if section.table:
            body.append(_html_table(section.table))
        for path in section.images:
            if self_contained:
                src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            else:
                src = quote(path.relative_to(out).as_posix())  # leaves nothing to escape
            body.append(
                f'<figure><img src="{src}" alt="{html.escape(path.stem)}">'
                f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
            )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<link rel="icon" href="data:,">',  # no favicon request, so no console error
            "<title>ssmprobe report</title>",
            f"<style>{_CSS}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
    "td.n{text-align:right}img{max-width:100%}figure{margin:1em 0}"
)


def _html_table(markdown: str) -> str:
    """table.md's pipe table as HTML; its other lines (caption, footnotes) as paragraphs."""
    out, rows = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace(r"\|", "|") for c in line.strip("|").split(" | ")]
            if not set("".join(cells)) <= set("-:| "):
                rows.append(cells)
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    header, *body = rows
    table = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"]
    for row in body:
        cells = "".join(
            f'<td class="n">{html.escape(c)}</td>' if _numeric(c) else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        table.append(f"<tr>{cells}</tr>")
    caption = out[:1]
    return "\n".join([*caption, *table, "</table>", *out[1:]])


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sections(
    frame: pd.DataFrame,
    tables: dict[str, Path],
    curves: list[Path],
    discrepancy: list[Path],
    bounds: dict[Path, list[Path]],
    runs: Sequence[RunInfo],
    poison: list[Path],
) -> list[Section]:
    flagged = (frame["masking"].fillna("") != "").sum()
    checked = (frame["aa_checks"].fillna("") != "").sum()
    unknown = frame["aa_checks"].isna().sum()
    sections = [
        Section(
            "Tables 1-2: accuracy at the best and last checkpoint",
            "Clean, PGD-10 and AutoAttack test accuracy of every run at its best epoch (highest "
            "PGD-10 among epochs that learned) and its last, and their difference (robust "
            f"overfitting); {flagged} row(s) flagged for suspected gradient masking"
            f" and {checked} where AutoAttack's own checks warned"
            + (
                f" (not recorded for {unknown}, evaluated before eval files kept them)."
                if unknown
                else "."
            )
            + (f" {FOOTNOTE}" if flagged else "")
            + (f" {AA_CHECK_FOOTNOTE}" if checked else ""),
            table=tables["md"].read_text(encoding="utf-8"),
        )
    ]
    if "gap_md" in tables:
        sections.append(
            Section(
                "Robust generalisation gap",
                "The paper's other sign of robust overfitting: how far adversarial accuracy on "
                "the training data runs ahead of the test set, at the best and the last epoch.",
                table=tables["gap_md"].read_text(encoding="utf-8"),
            )
        )
    if "seeds_md" in tables:
        sections.append(
            Section(
                "Seeds: mean and spread of the settings trained more than once",
                "The same accuracies averaged over each setting's seeds, with their sample "
                "standard deviation: a gap between two settings smaller than that spread is not "
                "a finding.",
                table=tables["seeds_md"].read_text(encoding="utf-8"),
            )
        )
    if curves:
        sections.append(
            Section(
                "Figures 1, 2 and 5: training curves",
                "Loss and accuracy on train and test, clean and under PGD-10, after every epoch; "
                "the dotted line marks the best epoch, where test PGD-10 accuracy peaks.",
                _pngs(curves),
            )
        )
    figure = {p.stem: p for p in _pngs(discrepancy)}
    for stem, title, sentence in (
        (
            "figure3_discrepancy",
            "Figure 3: feature discrepancy per component",
            "How much each component changes the MSE and KL between clean and adversarial "
            "features (after / before - 1, averaged over layers), train and test, per run.",
        ),
        (
            "figure4_discrepancy_ads",
            "Figure 4: feature discrepancy with AdS",
            "The same rates for models with the adaptive scaling (AdS) module after the SSM.",
        ),
    ):
        if stem in figure:
            sections.append(Section(title, sentence, [figure[stem]]))
    verdict_md = [p for p in discrepancy if p.name == "verdicts.md"]
    if verdict_md:
        sections.append(
            Section(
                "Figures 3-4: verdicts in the plain and the relative form",
                "Rates (%) on test inputs in the plain form d(f', f) and in the paper's relative "
                "form d(f', f)/||f||, bold where the two disagree on raise or lower, and the "
                "scale-free amplification (||Δ_out||/||Δ_in||) / (||f_out||/||f_in||), bold "
                "where the component amplifies the attack more than the clean signal.",
                table=verdict_md[0].read_text(encoding="utf-8"),
            )
        )
    steps = [p for s, p in figure.items() if s.startswith("steps_")]
    if steps:
        sections.append(
            Section(
                "Per-position discrepancy",
                "Squared error between clean and adversarial features at each sequence position, "
                "before and after each SSM, for every probed checkpoint.",
                steps,
            )
        )
    by_path = {run.path: run for run in runs}
    for path, files in bounds.items():
        if _pngs(files):
            run = by_path[path]
            sections.append(
                Section(
                    f"Theorem 4.1.1 on {run.title}",
                    "Measured output error of each channel against the kernel-form, "
                    "eigenvalue-form and spectral upper bounds (and, for LTI layers, against "
                    "the sequence length, with the eigenvalues of Ā).",
                    _pngs(files),
                )
            )
    if poison:
        sections.append(
            Section(
                "Clean-label poisoning of the implicit bias",
                "Training dynamics of baseline (blue) and poisoned (red) students: largest "
                "eigenvalues of Ā, effective rank, training and extension loss.",
                _pngs(poison),
            )
        )
    return sections


def _pngs(paths: Sequence[Path]) -> list[Path]:
    return [p for p in paths if p.suffix == ".png"]


def _discrepancy_outputs(
    csvs: Sequence[Path], out: Path, pool: Executor, formats: Sequence[str]
) -> tuple[list[Path], pd.DataFrame]:
    """The combined CSV, Figures 3-4 and the per-position figures of the probed runs (the
    figures drawn by `pool`), and the summary the findings use."""
    if not csvs:
        return [], pd.DataFrame()
    from ssmprobe.probe.discrepancy import load_rows, summarise
    from ssmprobe.probe.plots import plot_rates, save_steps_figure, steps_figures
    from ssmprobe.probe.verdicts import to_markdown, verdicts

    frames = []
    for csv in csvs:  # each checkpoint where it lies now: a zoo cache names the run it came from
        frame = load_rows([csv]).assign(run=csv.parent.name)
        frame["checkpoint"] = [str(csv.parent / Path(c).name) for c in frame["checkpoint"]]
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    write_text(out / "discrepancy.csv", rows.to_csv(index=False))
    summary = pd.DataFrame(summarise(rows.to_dict("records")))
    table = verdicts(summary)
    write_text(out / "verdicts.csv", table.to_csv(index=False, float_format="%.6g"))
    write_text(out / "verdicts.md", to_markdown(table))
    jobs = [pool.submit(plot_rates, summary, out, "none", formats)]
    jobs += [pool.submit(save_steps_figure, *job, formats) for job in steps_figures(csvs, out)]
    figures = [path for job in jobs for path in job.result()]
    return [out / "discrepancy.csv", out / "verdicts.csv", out / "verdicts.md", *figures], summary


def ensure_bounds(run: RunInfo, options: ReportOptions, log: Callable[[str], None]) -> BoundsCheck:
    """The run's Theorem 4.1.1 check, from its cache, recomputed (and cached) where the cache
    is older than the probed checkpoint or lacks what the figures need (the law, Mamba's Δ
    points)."""
    from ssmprobe.bounds.check import check_model, load_check

    cache = run.path / BOUNDS_FILE
    if not _stale(cache, _probed(run)) and (check := load_check(cache, _probed(run))):
        return check
    log(f"Theorem 4.1.1 on {_probed(run)}")
    eps = read_json(run.path / "config.json").get("train", {}).get("eps", 0.1)
    check = check_model(
        run.model, _probed(run), eps=eps, n=options.n_probe, data_dir=options.data_dir,
        progress=options.progress,
    )  # fmt: skip
    check.save(cache)
    return check


def _keep_lengths(check: BoundsCheck, jobs: Sequence[Future], cache: Path) -> None:
    """Saves the bounds against L, from one job per length, with the check in its cache (the
    zoo's caches ship them)."""
    from ssmprobe.bounds.figures import stack_lengths

    check.lengths = stack_lengths([job.result() for job in jobs])
    check.save(cache)


def _bounds_figures(run: RunInfo, out: Path, formats: Sequence[str]) -> list[Path]:
    """The run's bounds figures, kept while newer than its cached check, else drawn from it
    (loaded here, in the worker)."""
    from ssmprobe.bounds.check import load_check

    name = run.path.name
    cache = run.path / BOUNDS_FILE
    figures = [out / f"{stem}_{name}{s}" for stem in _bounds_stems(run.model) for s in formats]
    if not any(_stale(f, cache) for f in figures):
        return figures
    check = load_check(cache, _probed(run))
    assert check is not None, "ensure_bounds cached it"
    return check.figures(out, name, formats)


def _bounds_stems(model: str) -> tuple[str, ...]:
    if FAMILIES[model].time_varying:
        return ("bounds", "delta")
    return ("bounds", "bounds_vs_L", "eigenvalues")


def _read_bounds(run_dir: Path) -> dict[str, Any] | None:
    path = (run_dir / BOUNDS_FILE).with_suffix(".json")
    return read_json(path) if path.is_file() else None


def _poison_figure(path: Path, out: Path, formats: Sequence[str]) -> list[Path]:
    """The dynamics figure of one saved `ssmprobe poison` result; [] for another JSON."""
    from ssmprobe.poison.experiment import Trajectory
    from ssmprobe.poison.figures import dynamics_title, write_dynamics_figure

    payload = read_json(path)
    if not isinstance(payload, dict) or not {"config", "student", "runs"} <= set(payload):
        return []
    trajectories = [Trajectory(**run) for run in payload["runs"]]
    student = payload["student"] + ("_mlp" if payload["config"].get("mlp_width") else "")
    title = dynamics_title(student, payload["config"])
    return write_dynamics_figure(trajectories, title, out, f"{path.stem}_{student}", formats)


def _probed(run: RunInfo) -> Path | None:
    ckpt = run.path / ("last.pt" if run.method == "st" else "best.pt")
    return ckpt if ckpt.is_file() else None


def _stale(cache: Path, source: Path | None) -> bool:
    if source is None:
        return False
    return not cache.is_file() or cache.stat().st_mtime_ns < source.stat().st_mtime_ns


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
