"""The report's figures drawn from the runs' cached analyses, each a job for the figure pool
(`report.workers`): the discrepancy outputs (Figures 3-4, the verdicts, the per-position
curves), each bounds run's figures and the poisoning figures. The training curves are in
`report.curves`."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from concurrent.futures import Executor
from pathlib import Path

import pandas as pd

from ssmprobe.io import write_text
from ssmprobe.models import FAMILIES
from ssmprobe.report.cache import BOUNDS_FILE, _probed
from ssmprobe.report.runs import RunInfo, display, rank, read_json


def _discrepancy_outputs(
    csvs: Sequence[Path],
    out: Path,
    pool: Executor,
    formats: Sequence[str],
    zoo: Collection[Path] = (),
) -> tuple[list[Path], pd.DataFrame]:
    """The combined CSV, the verdicts, Figures 3-4 and the per-position figures of the probed
    runs (the figures drawn by `pool`), and the summary the findings use. Each dataset's results
    go apart: the first in table order (digits before MNIST before CIFAR-10) into `out`, each
    other into `out/<dataset>/`, so that the zoo's S4 ST on digits and on MNIST-10k are never
    two unlabelled bars of one slot. Where `zoo` (the CSVs of the bundled checkpoints) and
    your runs are both there, Figures 3-4 of the zoo go apart too, into `<that folder>/zoo/`:
    one slot per model in each, not your S5 and the zoo's side by side in every method's row."""
    if not csvs:
        return [], pd.DataFrame()
    from ssmprobe.probe.discrepancy import load_rows, summarise
    from ssmprobe.probe.plots import plot_rates, save_steps_figure, steps_figures

    frames = []
    for csv in csvs:  # each checkpoint where it lies now: a zoo cache names the run it came from
        frame = load_rows([csv]).assign(run=csv.parent.name)
        frame["checkpoint"] = [str(csv.parent / Path(c).name) for c in frame["checkpoint"]]
        frames.append(frame)
    # each CSV is one run's, of one dataset ("" for a wrapped model's, which names none)
    dataset_of = {csv: set(f["dataset"].fillna("")) for csv, f in zip(csvs, frames, strict=True)}
    rows = pd.concat(frames, ignore_index=True)
    # Summarised once: its rows are per checkpoint, so a part's summary is a slice of it.
    summary = pd.DataFrame(summarise(rows.to_dict("records")))
    theirs = {str(csv.parent) for csv in csvs if csv in set(zoo)}
    is_zoo = summary["checkpoint"].map(lambda c: str(Path(c).parent) in theirs)
    mixed = is_zoo.any() and not is_zoo.all()
    dataset = summary["dataset"].fillna("")  # a wrapped model's results name no dataset
    datasets = sorted(dataset.unique(), key=lambda d: rank("dataset", d))
    outputs, jobs = [], []
    for i, name in enumerate(datasets):
        where, of = (out if i == 0 else out / name), dataset == name
        outputs += _verdict_files(rows[rows["dataset"].fillna("") == name], summary[of], where)
        on = f"on {display('dataset', name)}" if len(datasets) > 1 else ""
        parts = [(of, where, on)]
        if mixed:
            parts = [
                (of & ~is_zoo, where, f"your runs {on}".strip()),
                (of & is_zoo, where / "zoo", f"the bundled zoo {on}".strip()),
            ]
        jobs += [
            pool.submit(
                plot_rates, summary[part].reset_index(drop=True), folder, "none", formats, whose
            )
            for part, folder, whose in parts
            if part.any()
        ]  # fmt: skip
        # per-position figures beside the dataset's Figures 3-4: names unique per dataset
        mine = [csv for csv in csvs if name in dataset_of[csv]]
        steps = steps_figures(mine, where)
        owners = [  # the run folder of each result, in steps_figures' order: titles name it
            csv.parent
            for csv in mine
            if csv.with_suffix(".json").is_file()
            for _ in json.loads(csv.with_suffix(".json").read_text())["results"]
        ]
        for (result, _), owner in zip(steps, owners, strict=True):
            checkpoint = owner / Path(result["meta"]["checkpoint"]).name
            result["meta"] = result["meta"] | {"checkpoint": str(checkpoint)}
        jobs += [pool.submit(save_steps_figure, *job, formats) for job in steps]
    figures = [path for job in jobs for path in job.result()]
    return [*outputs, *figures], summary


def _verdict_files(rows: pd.DataFrame, summary: pd.DataFrame, where: Path) -> list[Path]:
    """`where`/discrepancy.csv (the rows), verdicts.csv and verdicts.md (`probe.verdicts` of
    their `summary`)."""
    from ssmprobe.probe.verdicts import to_markdown, verdicts

    table = verdicts(summary.reset_index(drop=True))
    write_text(where / "discrepancy.csv", rows.to_csv(index=False))
    write_text(where / "verdicts.csv", table.to_csv(index=False, float_format="%.6g"))
    write_text(where / "verdicts.md", to_markdown(table))
    return [where / "discrepancy.csv", where / "verdicts.csv", where / "verdicts.md"]


def _bounds_figures(run: RunInfo, out: Path, formats: Sequence[str]) -> list[Path]:
    """The run's bounds figures, kept while newer than its cached check, else drawn from it
    (loaded here, in the worker)."""
    from ssmprobe.bounds.check import load_check

    name = run.path.name
    cache = run.path / BOUNDS_FILE
    figures = [out / f"{stem}_{name}{s}" for stem in _bounds_stems(run.model) for s in formats]
    drawn = cache.stat().st_mtime_ns  # figures are this report's own: their times are ours
    if all(f.is_file() and f.stat().st_mtime_ns >= drawn for f in figures):
        return figures
    check = load_check(cache, _probed(run))
    assert check is not None, "ensure_bounds cached it"
    return check.figures(out, name, formats)


def _bounds_stems(model: str) -> tuple[str, ...]:
    if FAMILIES[model].time_varying:
        return ("bounds", "delta")
    return ("bounds", "bounds_vs_L", "eigenvalues")


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
