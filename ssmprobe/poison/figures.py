"""Figure of `ssmprobe poison`: the training dynamics the poisoning paper plots.

`poison_dynamics[_<student>]`: against the gradient step, one line per run (baseline blue,
poisoned red), (1) the largest |eigenvalue of Ā| (solid) and the second largest (dashed): the
implicit bias towards low rank lets one entry grow while the rest stay small; (2) the effective
rank of A; (3) the training loss and (4) the extension loss, both on a log scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssmprobe.io import FIGURE_FORMATS, save_figure
from ssmprobe.poison.experiment import Trajectory

_COLOURS = {"baseline": "C0", "poisoned": "C3"}


def make_dynamics_figure(trajectories: Sequence[Trajectory], title: str) -> Figure:
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(16, 3.8), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 4)
        for t in trajectories:
            colour = _COLOURS[t.setting]
            axes[0].plot(t.steps, [a[0] for a in t.top_a], color=colour, lw=1)
            axes[0].plot(t.steps, [a[1] for a in t.top_a], color=colour, lw=1, ls="--")
            axes[1].plot(t.steps, t.rank, color=colour, lw=1)
            axes[2].plot(t.steps, t.train_loss, color=colour, lw=1)
            axes[3].plot(t.steps, t.ext_loss, color=colour, lw=1)
        labels = [
            "largest |eigenvalue of A| (solid), 2nd (dashed)",
            "effective rank of A",
            "training loss",
            "extension loss",
        ]
        for ax, label in zip(axes, labels, strict=True):
            ax.set_xlabel("gradient step")
            ax.set_title(label, fontsize=10)
        for ax in axes[2:]:
            ax.set_yscale("log")
        for setting, colour in _COLOURS.items():
            axes[3].plot([], [], color=colour, label=setting)
        axes[3].legend(fontsize=8)
        fig.suptitle(title, fontsize=11)
    return fig


def dynamics_title(student: str, config: Mapping[str, Any]) -> str:
    """The figure's title from the student's name and the experiment's `config_dict`."""
    return (
        f"{student} student, N = {config['student_dim']}, L = {config['length']}: "
        f"{config['n_baseline']} baseline (+ {config['n_special']} special) sequences"
    )


def write_dynamics_figure(
    trajectories: Sequence[Trajectory],
    title: str,
    out_dir: str | Path,
    student: str,
    formats: Sequence[str] = FIGURE_FORMATS,
) -> list[Path]:
    stem = "poison_dynamics" if student == "linear" else f"poison_dynamics_{student}"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return save_figure(make_dynamics_figure(trajectories, title), Path(out_dir) / stem, formats)
