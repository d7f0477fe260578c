"""Figures of `ssmprobe bounds`: where the measured error sits between its bounds, how both grow
with L, and where the eigenvalues of Ā lie.

- `bounds_<model>`: per layer, channels sorted by the exact error E||Hε||² (dots) with the
  kernel-form lower and upper bounds, the spectral bound and, for comparison, both sides of
  eq. 11/16's eigenvalue form (log scale), labelled as what they are: not bounds, since both
  eigenvalue steps of their proof are false (`bounds.theorem`). An eq. 16 point below the dots
  or an eq. 11 point above them is a channel where they fail.
- `bounds_vs_L_<model>`: per layer, the median over channels of the exact error and of each
  bound for L = 16 ... 1024 (§4.1 says the lower bound grows with L).
- `eigenvalues_<model>`: per layer, the eigenvalues of Ā in the complex plane with the unit
  circle.
- `delta_<model>` (Mamba): per layer, ||B̄_k|| against Δ_k on real clean and adversarial inputs,
  the naive ZOH's relative error against Δ_k·a for float32 and float64 (a sweep, and the real
  values), the distribution of |C̄_k B̄_k| for clean and adversarial inputs, and that of the
  eigenvalues Ā_k = exp(Δ_k a) (real, in (0, 1]).
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

from ssmprobe.bounds.lti import PerturbationLaw, model_rows
from ssmprobe.bounds.selective import DeltaStats, naive_zoh_error
from ssmprobe.io import FIGURE_FORMATS, save_figure

LENGTHS = (16, 32, 64, 128, 256, 512, 1024)
# The noise mean μ the report draws the bounds at, as docs/theorem.md quotes them (uniform
# ε = 0.1, μ = 0.05): at μ = 0 both lower bounds (μ²c1...) are zero, and vanish on a log axis.
FIGURE_MU = 0.05
_SERIES = {  # key: (label, line style, colour), the same in every figure
    "exact": ("exact error", "o", "k"),
    "kernel_lower": ("kernel lower (eq. 14)", "-", "C0"),
    "kernel_upper": ("kernel upper (eq. 15)", "-", "C1"),
    "eigen_lower": ("eq. 11 lower (not a bound)", "--", "C2"),
    "eigen_upper": ("eq. 16 upper (not a bound)", "--", "C3"),
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


def length_medians(model: nn.Module, law: PerturbationLaw) -> dict[str, dict[str, list[float]]]:
    """{layer: {series: median over the layer's channels at each of LENGTHS}}: what the
    bounds-against-L figure draws. The costly part of the figures (S5's 4096 kernels per layer
    up to L = 1024: 30 s on 2 cores), so the report computes it one length per worker
    (`medians_at`, `stack_lengths`) and caches it with the check."""
    return stack_lengths([medians_at(model, law, length) for length in LENGTHS])


def medians_at(model: nn.Module, law: PerturbationLaw, length: int) -> dict[str, dict[str, float]]:
    """{layer: {series: median over the layer's channels}} at one sequence length."""
    rows = model_rows(model, length, law, states=False)
    return {
        layer: {
            key: float(np.median([r[key] for r in rows if r["layer"] == layer])) for key in _SERIES
        }
        for layer in dict.fromkeys(r["layer"] for r in rows)
    }


def stack_lengths(
    per_length: Sequence[dict[str, dict[str, float]]],
) -> dict[str, dict[str, list[float]]]:
    """`medians_at` at each of LENGTHS, in order, as `length_medians` gives them."""
    return {
        layer: {key: [at[layer][key] for at in per_length] for key in _SERIES}
        for layer in per_length[0]
    }


def make_length_figure(medians: dict[str, dict[str, list[float]]], title: str) -> Figure:
    with sns.axes_style("whitegrid"):
        fig, axes = _figure(len(medians))
        for ax, (layer, series) in zip(axes, medians.items(), strict=True):
            for key, (label, style, color) in _SERIES.items():
                fmt = "o-" if key == "exact" else style
                ax.plot(
                    LENGTHS,
                    _positive(np.array(series[key])),
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


def make_eigenvalue_figure(model: nn.Module, title: str, length: int) -> Figure:
    layers = model.ssm_layers()
    with sns.axes_style("whitegrid"):
        fig, axes = _figure(len(layers), width=3.6, height=3.6)
        circle = np.exp(1j * np.linspace(0, 2 * np.pi, 400))
        for ax, (name, layer) in zip(axes, layers.items(), strict=True):
            with torch.no_grad():
                lam = layer.discrete_at(length).eigvals.flatten().numpy()
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
    formats: Sequence[str] = FIGURE_FORMATS,
    medians: dict[str, dict[str, list[float]]] | None = None,
) -> list[Path]:
    """All three figures of one model in `out_dir` (PNG and PDF by default); returns the
    paths. `medians`: `length_medians(model, law)` if already computed."""
    out_dir = Path(out_dir)
    medians = length_medians(model, law) if medians is None else medians
    what = f"{name}: {law.kind} ε = {law.eps:g}, μ = {law.mu:g}"
    figures = {
        f"bounds_{name}": make_bounds_figure(rows, f"{what}, L = {rows[0]['L']}"),
        f"bounds_vs_L_{name}": make_length_figure(medians, what),
        f"eigenvalues_{name}": make_eigenvalue_figure(
            model, f"{name}: eigenvalues of Ā", rows[0]["L"]
        ),
    }
    return [
        path for stem, fig in figures.items() for path in save_figure(fig, out_dir / stem, formats)
    ]


def make_delta_figure(deltas: dict[str, DeltaStats], title: str) -> Figure:
    sweep = -torch.logspace(-20, 1, 400, dtype=torch.float64)
    colours = {"clean": "C0", "adversarial": "C3"}
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(15, 3.4 * len(deltas) + 0.8), layout="constrained")
        FigureCanvasAgg(fig)
        grid = fig.subplots(len(deltas), 4, squeeze=False)
        for axes, (layer, stats) in zip(grid, deltas.items(), strict=True):
            points = {kind: stats.arrays(kind) for kind in stats.points}
            for kind, p in points.items():
                axes[0].scatter(
                    p["dt"], p["b_norm"], s=2, alpha=0.3, color=colours[kind], label=kind
                )
                cb = p["cb"].clamp_min(1e-12).log10().numpy()
                axes[2].hist(cb, bins=80, alpha=0.5, color=colours[kind], label=kind, density=True)
                axes[3].hist(
                    p["z"].exp().numpy(), bins=80, alpha=0.5, color=colours[kind], density=True
                )
            axes[0].set(xscale="log", yscale="log", xlabel="Δ_k", ylabel="||B̄_k|| (exact ZOH)")
            axes[0].set_title(f"{layer}: ||B̄_k|| against Δ_k")
            real = points["clean"]["z"]
            for dtype, style, colour in ((torch.float32, "-", "C2"), (torch.float64, "--", "C4")):
                label = str(dtype).removeprefix("torch.")
                error = naive_zoh_error(sweep, dtype).clamp(1e-18, 1e3)
                axes[1].plot(-sweep, error, style, color="k", label=f"naive, {label} (sweep)")
                real_error = naive_zoh_error(real, dtype).clamp(1e-18, 1e3)
                axes[1].scatter(
                    -real, real_error, s=2, alpha=0.3, color=colour, label=f"real Δa, {label}"
                )
            axes[1].set(xscale="log", yscale="log", xlabel="|Δ_k a_n|", ylabel="relative error")
            axes[1].set_title("(Ā - I)(ΔA)⁻¹ΔB as written vs stable φ₁")
            axes[2].set(xlabel="log10 |C̄_k B̄_k|", ylabel="density", title="|C̄_k B̄_k|")
            axes[3].axvline(1.0, color="0.5", linewidth=0.8)
            axes[3].set(xlabel="Ā_k = exp(Δ_k a_n)", ylabel="density", title="eigenvalues of Ā_k")
        handles, labels = grid[0][0].get_legend_handles_labels()
        more = grid[0][1].get_legend_handles_labels()
        fig.legend(handles + more[0], labels + more[1], loc="outside lower center", ncols=4)
        fig.suptitle(title, fontweight="bold")
    return fig


def write_mamba_figures(
    name: str,
    rows: Sequence[dict[str, Any]],
    deltas: dict[str, DeltaStats],
    what: str,
    out_dir: str | Path,
    formats: Sequence[str] = FIGURE_FORMATS,
) -> list[Path]:
    """The bounds across channels and the Δ figure of a Mamba model; returns the paths."""
    out_dir = Path(out_dir)
    figures = {
        f"bounds_{name}": make_bounds_figure(rows, f"{name}: {what}"),
        f"delta_{name}": make_delta_figure(deltas, f"{name}: Δ → 0 (§4.1)"),
    }
    return [
        path for stem, fig in figures.items() for path in save_figure(fig, out_dir / stem, formats)
    ]
