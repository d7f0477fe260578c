"""Training curves like the paper's Figs. 1, 2 and 5: loss and accuracy against epoch.

One row per run, two panels: cross-entropy loss and accuracy (%). Each panel has four lines
from the run's `metrics.jsonl`, measured after every epoch: train / test (colour) × clean /
PGD-10 (solid / dashed; "PGD-N" when the run attacked with N steps). Test PGD-10 accuracy
falling while train PGD-10 accuracy still rises is robust overfitting; a dotted vertical line
marks the best epoch (the epoch of best.pt, `training.selection.best_epoch`).

Figures are drawn on matplotlib's Agg canvas without pyplot: nothing is displayed, no global
state changes (seaborn's "whitegrid" style is applied only while a figure is built), and a
figure is freed with its last reference. Files are written atomically.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ssmprobe.io import FIGURE_FORMATS, save_figure
from ssmprobe.report.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    RunInfo,
    best_choice,
    find_runs,
    read_metrics,
    read_run_info,
)

__all__ = [
    "make_training_figure",
    "plot_training_curves",
    "read_metrics",
    "save_figure",
    "write_figures",
]

SPLITS = ("train", "test")
KINDS = ("clean", "pgd")
PANELS = {"loss": ("Loss", "Cross-entropy loss"), "acc": ("Accuracy", "Accuracy (%)")}
_PALETTE = sns.color_palette("deep")
_COLORS = {"train": _PALETTE[0], "test": _PALETTE[1]}
_LINESTYLES = {"clean": "-", "pgd": "--"}
_MARKERS_UP_TO = 30  # with few epochs, markers keep single points visible


def make_training_figure(run_dirs: Sequence[str | Path] | str | Path) -> Figure:
    """The training-curve figure of the given runs, one row each (see the module docstring).

    Each path is a run directory (holding config.json) or a folder of runs, which adds all of
    them in table order. A run whose metrics.jsonl has no finished epoch yet gets empty panels
    saying so.
    """
    runs = _runs(run_dirs)
    shared = Counter(run.title for run in runs)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        fig = Figure(figsize=(11, 0.5 + 3.2 * len(runs)), layout="constrained")
        FigureCanvasAgg(fig)
        # One subfigure per run, so the run's title spans both of its panels.
        for run, sub in zip(runs, fig.subfigures(len(runs), 1, squeeze=False)[:, 0], strict=True):
            # Runs of one setting (yours and the zoo's): each titled with its run's name too.
            name = f" ({run.name}{', bundled zoo' if run.zoo else ''})"
            sub.suptitle(run.title + (name if shared[run.title] > 1 else ""), fontweight="bold")
            _draw_run(run, sub.subplots(1, 2))
        labels: dict[str, object] = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                labels.setdefault(label, handle)
        if labels:
            fig.legend(list(labels.values()), list(labels), loc="outside upper center", ncols=5)
    return fig


def plot_training_curves(run_dirs: Sequence[str | Path] | str | Path, out_path: str | Path) -> Path:
    """Writes `make_training_figure(run_dirs)` as a PNG, plus a PDF if `out_path` ends in .pdf
    (the PNG then goes beside it); returns `out_path`."""
    out_path = Path(out_path)
    if out_path.suffix.lower() not in FIGURE_FORMATS:
        raise ValueError(f"out_path must end in {' or '.join(FIGURE_FORMATS)}, got {out_path}")
    fig = make_training_figure(run_dirs)
    png = out_path.with_suffix(".png")
    save_figure(fig, out_path.with_suffix(""), [png.suffix, out_path.suffix])
    return out_path


def write_figures(
    runs_dir: str | Path, out_dir: str | Path, formats: Sequence[str] = (".png",)
) -> list[Path]:
    """One training-curve figure per (dataset, method) under `runs_dir`, like Figs. 1, 2, 5:
    `out_dir/curves_<dataset>_<method>` + each of `formats`. Runs without metrics.jsonl are
    skipped with a warning. Returns the written paths."""
    runs = []
    for run in find_runs(runs_dir):
        if (run.path / METRICS_FILE).is_file():
            runs.append(run)
        else:
            warnings.warn(f"{run.path}: no {METRICS_FILE}, left out of the figures", stacklevel=2)
    groups: dict[tuple[str, str], list[Path]] = {}
    for run in runs:  # in table order, so each figure's rows are too
        groups.setdefault((run.dataset, run.method), []).append(run.path)
    return [
        path
        for (dataset, method), paths in groups.items()
        for path in save_figure(
            make_training_figure(paths), Path(out_dir) / f"curves_{dataset}_{method}", formats
        )
    ]


def _runs(run_dirs: Sequence[str | Path] | str | Path) -> list[RunInfo]:
    paths = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    if not paths:
        raise ValueError("no run directories given")
    runs = []
    for path in map(Path, paths):
        runs += [read_run_info(path)] if (path / CONFIG_FILE).is_file() else find_runs(path)
    return runs


def _draw_run(run: RunInfo, row: Sequence[Axes]) -> None:
    metrics = read_metrics(run.path)
    choice = best_choice(metrics, run.n_classes)
    best = None if choice is None else choice.epoch
    marker = "o" if len(metrics) <= _MARKERS_UP_TO else None
    kind_names = {"clean": "clean", "pgd": f"PGD-{run.pgd_steps}"}
    for ax, (quantity, (title, ylabel)) in zip(row, PANELS.items(), strict=True):
        scale = 100.0 if quantity == "acc" else 1.0
        for split in SPLITS:
            for kind in KINDS:
                column = f"{split}_{kind}_{quantity}"
                if column not in metrics:  # e.g. a run written before PGD metrics existed
                    continue
                ax.plot(
                    metrics["epoch"],
                    scale * metrics[column],
                    color=_COLORS[split],
                    linestyle=_LINESTYLES[kind],
                    marker=marker,
                    markersize=3,
                    label=f"{split} {kind_names[kind]}",
                )
        if best is not None:
            ax.axvline(
                best,
                color="0.25",
                linestyle=":",
                linewidth=1.5,
                label=f"best epoch (highest test PGD-{run.pgd_steps} acc.)",
            )
            title += f" (best epoch {best})" if quantity == "acc" else ""
        if metrics.empty:
            ax.text(0.5, 0.5, "no finished epoch yet", transform=ax.transAxes, ha="center")
        if quantity == "acc":
            ax.set_ylim(-2, 102)  # a margin, so lines at 0 % and 100 % stay visible
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="Epoch", ylabel=ylabel, title=title)
