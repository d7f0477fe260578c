"""Figures of `ssmprobe bounds`: where the measured error sits between its bounds, how both grow
with L, and where the eigenvalues of Ā lie.

- `bounds_<model>`: per layer, channels sorted by the exact error E||Hε||² (dots) with the
  kernel-form lower and upper bounds, the eigenvalue-form upper bound and the spectral bound
  (log scale); an eigenvalue-form point below the dots is a violated bound.
- `bounds_vs_L_<model>`: per layer, the median over channels of the exact error and of each
  bound for L = 16 ... 1024 (§4.1 says the lower bound grows with L).
- `eigenvalues_<model>`: per layer, the eigenvalues of Ā in the complex plane with the unit
  circle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import seaborn as sns
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from .layer_bounds import PerturbationLaw, model_rows
from .plots import save_figure

LENGTHS = (16, 32, 64, 128, 256, 512, 1024)
_SERIES = {  # key: (label, line style, colour), the same in every figure
    "exact": ("exact error", "o", "k"),
    "kernel_lower": ("kernel lower (eq. 14)", "-", "C0"),
    "kernel_upper": ("kernel upper (eq. 15)", "-", "C1"),
    "eigen_lower": ("eigenvalue lower (eq. 11)", "--", "C2"),
    "eigen_upper": ("eigenvalue upper (eq. 16)", "--", "C3"),
    "spectral_upper": ("spectral upper M·L·λmax(HᵀH)", ":", "C4"),
}


def _figure(n: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width * n, height + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, n, squeeze=False)[0]


def _positive(values: np.ndarray) -> np.ndarray:
    """Zeros (a μ = 0 lower bound) cannot sit on a log axis: drawn as gaps."""
    return np.where(values > 0, values, np.nan)


def make_bounds_figure(rows: Sequence[dict[str, Any]], title: str) -> Figure:
    rows = [r for r in rows if r["view"] != "state"]  # S5's states: in the CSV, not drawn
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    with sns.axes_style("whitegrid"):
        fig, axes = _figure(len(layers))
        for ax, layer in zip(axes, layers, strict=True):
            members = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["exact"])
            x = np.arange(len(members))
            for key, (label, style, color) in _SERIES.items():
                values = _positive(np.array([r[key] for r in members], dtype=float))
                ax.plot(x, values, style, markersize=3, color=color, label=label)
            ax.set_yscale("log")
            ax.set(title=layer, xlabel="channel (sorted by exact error)", ylabel="E||y' - y||²")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=3)
        fig.suptitle(title, fontweight="bold")
    return fig


def make_length_figure(model: nn.Module, law: PerturbationLaw, title: str) -> Figure:
    per_length = {length: model_rows(model, length, law, states=False) for length in LENGTHS}
    layers = list(dict.fromkeys(r["layer"] for r in per_length[LENGTHS[0]]))
    with sns.axes_style("whitegrid"):
        fig, axes = _figure(len(layers))
        for ax, layer in zip(axes, layers, strict=True):
            for key, (label, style, color) in _SERIES.items():
                medians = [
                    np.median([r[key] for r in per_length[length] if r["layer"] == layer])
                    for length in LENGTHS
                ]
                fmt = "o-" if key == "exact" else style
                ax.plot(
                    LENGTHS,
                    _positive(np.array(medians)),
                    fmt,
                    markersize=3,
                    color=color,
                    label=label,
                )
            ax.set(xscale="log", yscale="log", title=layer, xlabel="sequence length L")
            ax.set_ylabel("median over channels")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=3)
        fig.suptitle(title, fontweight="bold")
    return fig


def make_eigenvalue_figure(model: nn.Module, title: str) -> Figure:
    layers = model.ssm_layers()
    with sns.axes_style("whitegrid"):
        fig, axes = _figure(len(layers), width=3.6, height=3.6)
        circle = np.exp(1j * np.linspace(0, 2 * np.pi, 400))
        for ax, (name, layer) in zip(axes, layers.items(), strict=True):
            with torch.no_grad():
                lam = layer.discrete().eigvals.flatten().numpy()
            ax.plot(circle.real, circle.imag, color="0.5", linewidth=0.8, label="unit circle")
            ax.scatter(lam.real, lam.imag, s=6, alpha=0.6, label="eigenvalues of Ā")
            ax.set(title=name, xlabel="Re λ", ylabel="Im λ", aspect="equal")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2)
        fig.suptitle(title, fontweight="bold")
    return fig


def write_bounds_figures(
    model: nn.Module,
    name: str,
    rows: Sequence[dict[str, Any]],
    law: PerturbationLaw,
    out_dir: str | Path,
) -> list[Path]:
    """All three figures of one model as PNG and PDF in `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    what = f"{name}: {law.kind} ε = {law.eps:g}, μ = {law.mu:g}"
    figures = {
        f"bounds_{name}": make_bounds_figure(rows, f"{what}, L = {rows[0]['L']}"),
        f"bounds_vs_L_{name}": make_length_figure(model, law, what),
        f"eigenvalues_{name}": make_eigenvalue_figure(model, f"{name}: eigenvalues of Ā"),
    }
    return [path for stem, fig in figures.items() for path in save_figure(fig, out_dir / stem)]
