"""Figures of the feature discrepancy (paper Figs. 3 and 4) and its per-position curves.

Figure 3: one row per training method, one column per metric (KL, MSE); x = model, one bar per
component kind, the rate (change / before, %) averaged over layers, on a symmetric-log axis
(linear within ±100%); plain bars for the train split, hatched bars for test; no bar where a
model has no such component. Figure 4: the same for
the models with AdS (S4 and DSS with relu / tanh / sigmoid in the paper), x = model + AdS.

Per-position curves (one figure per checkpoint): one panel per component (rows = layers), the
squared error ||f'_k - f_k||² against position k before (dashed) and after (solid) the
component, train and test. They show where along the sequence the discrepancy enters and how
the state carries it forward.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssmprobe.io import FIGURE_FORMATS, save_figure
from ssmprobe.models import FAMILIES, FAMILY_TITLES
from ssmprobe.probe.discrepancy import load_rows, summarise
from ssmprobe.probe.metrics import rate_metrics
from ssmprobe.vocab import COMPONENT_KINDS, METHOD_NAMES

_HATCH = {"train": "", "test": "///"}
_COLORS = dict(zip(COMPONENT_KINDS, sns.color_palette("deep"), strict=False))


def _has_ads(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _label(row: pd.Series) -> str:
    title = FAMILY_TITLES.get(row["model"], row["model"])
    return title + (f"+AdS-{row['ads']}" if _has_ads(row["ads"]) else "")


def _labels(summary: pd.DataFrame) -> pd.Series:
    """The model label of each row, with the checkpoint's run folder appended where several
    checkpoints of one method share a label (your run and the zoo's, say)."""
    labels = summary.apply(_label, axis=1)
    runs = summary["checkpoint"].map(lambda c: Path(str(c)).parent.name or str(c))
    shared = (
        summary.assign(label=labels).groupby(["label", "method"])["checkpoint"].transform("nunique")
    )
    return labels.where(shared <= 1, labels + " (" + runs + ")")


def _order(summary: pd.DataFrame) -> list[str]:
    """The labels, our families in the paper's order (from each row's `model`), then the rest."""
    rank = {family: i for i, family in enumerate(FAMILIES)}
    first = summary.groupby("label")["model"].first()
    return sorted(first.index, key=lambda label: (rank.get(first[label], len(rank)), label))


def make_rate_figure(summary: pd.DataFrame, title: str) -> Figure:
    """Bars of the rate per (method row, metric column, model, kind, split) of `summarise`d
    rows (one checkpoint per model label and method)."""
    summary = summary.assign(label=_labels(summary), method=summary["method"].fillna(""))
    present = set(summary["method"])  # a user's model has no training method: ""
    methods = [m for m in METHOD_NAMES if m in present] + sorted(present - set(METHOD_NAMES))
    labels = _order(summary)
    kinds = [k for k in COMPONENT_KINDS if k in set(summary["kind"])]
    metrics = [m for m in rate_metrics() if m.name in set(summary["metric"])]
    width = 0.8 / (2 * len(kinds))
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        fig = Figure(
            figsize=(2.25 * len(metrics) + 1.3 * len(labels), 0.8 + 2.8 * len(methods)),
            layout="constrained",
        )
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(methods), len(metrics), squeeze=False, sharex=True)
        for row, method in zip(axes, methods, strict=True):
            for ax, metric in zip(row, metrics, strict=True):
                part = summary[(summary["method"] == method) & (summary["metric"] == metric.name)]
                for i, kind in enumerate(kinds):
                    for j, split in enumerate(("train", "test")):
                        sel = part[(part["kind"] == kind) & (part["split"] == split)]
                        rates = sel.set_index("label")["rate"].reindex(labels)
                        ax.bar(
                            np.arange(len(labels)) + (2 * i + j - len(kinds) + 0.5) * width,
                            rates.to_numpy(dtype=float),  # NaN: no such component, no bar
                            width,
                            color=_COLORS[kind],
                            hatch=_HATCH[split],
                            edgecolor="0.2",
                            linewidth=0.5,
                            label=f"{kind} ({split})",
                        )
                ax.axhline(0, color="0.2", linewidth=0.8)
                # Rates span -100% to millions of %: linear near 0, logarithmic beyond ±100%.
                ax.set_yscale("symlog", linthresh=100)
                ax.set_xticks(np.arange(len(labels)), labels, rotation=20 if len(labels) > 5 else 0)
                ax.set(
                    title=f"{METHOD_NAMES.get(method) or method or 'your model'}: {metric.title}",
                    ylabel="rate: change / before (%)",
                )
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=max(2, len(kinds)))
        fig.suptitle(title, fontweight="bold")
    return fig


def _place(entry: dict) -> tuple[int, str]:
    """(layer, part) of a per-position entry, as the recorder's components gave them; files
    written before entries carried them name our families' `layers.<i>.<part>`."""
    if "layer" in entry:
        return entry["layer"], entry["part"]
    return int(entry["component"].split(".")[1]), entry["component"].rsplit(".", 1)[1]


def make_steps_figure(result: dict) -> Figure:
    """Per-position squared error before and after every component of one checkpoint."""
    steps = result["steps"]
    meta = result["meta"]
    place = {s["component"]: _place(s) for s in steps}
    layers = sorted({layer for layer, _ in place.values()})
    parts = list(dict.fromkeys(part for _, part in place.values()))
    colors = dict(zip(("train", "test"), sns.color_palette("deep"), strict=False))
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.0):
        fig = Figure(figsize=(3.2 * len(parts), 0.8 + 2.4 * len(layers)), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(layers), len(parts), squeeze=False, sharex=True)
        for entry in steps:
            layer, part = place[entry["component"]]
            ax = axes[layers.index(layer), parts.index(part)]
            for side, style in (("before", "--"), ("after", "-")):
                ax.plot(
                    entry[side],
                    style,
                    color=colors[entry["split"]],
                    label=f"{entry['split']} {side}",
                )
            ax.set_yscale("log")
            ax.set(title=entry["component"], xlabel="position k", ylabel="||f'_k - f_k||²")
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=4)
        fig.suptitle(
            f"{_run_name(meta['checkpoint'])}: {FAMILY_TITLES.get(meta['model'], meta['model'])}"
            f" {METHOD_NAMES.get(meta['method'] or '', meta['method'] or '')}".rstrip()
            + f", {meta['attack']} ε = {meta['eps']:g}",
            fontweight="bold",
        )
    return fig


def _run_name(checkpoint: str) -> str:
    """A checkpoint's run, never a path: its run folder and file ("s4_pgd, best.pt"), or a
    wrapped model's name as it is."""
    path = Path(str(checkpoint))
    return f"{path.parent.name}, {path.name}" if path.parent.name else path.name


def plot_discrepancy(
    results: Sequence[str | Path],
    out_dir: str | Path,
    norm: str = "none",
    formats: Sequence[str] = FIGURE_FORMATS,
) -> list[Path]:
    """Figures 3-4 and the per-position curves of the CSV files `results` (`discrepancy.save`)
    in `out_dir` (PNG and PDF by default); returns the written paths."""
    summary = pd.DataFrame(summarise(load_rows(results).to_dict("records")))
    return plot_rates(summary, out_dir, norm, formats) + plot_steps(results, out_dir, formats)


def plot_rates(
    summary: pd.DataFrame,
    out_dir: str | Path,
    norm: str = "none",
    formats: Sequence[str] = FIGURE_FORMATS,
    whose: str = "",
) -> list[Path]:
    """Figure 3 (models without AdS) and Figure 4 (models with AdS) from the per-component
    summary (`discrepancy.summarise`) of normalisation `norm`; returns the written paths.
    `whose` ("the bundled zoo", say) is added to the titles."""
    summary = summary[summary["norm"] == norm].reset_index(drop=True)
    if summary.empty:
        raise ValueError(f"the results hold no rows with norm {norm!r}")
    ads = summary["ads"].map(_has_ads)
    suffix = "" if norm == "none" else "_relative"
    figures = {
        f"figure3_discrepancy{suffix}": (summary[~ads], "per component (Fig. 3)"),
        f"figure4_discrepancy_ads{suffix}": (summary[ads], "with AdS (Fig. 4)"),
    }
    return [
        path
        for name, (part, what) in figures.items()
        if not part.empty
        for path in save_figure(
            make_rate_figure(
                part, f"Feature discrepancy rate {what}" + (f", {whose}" if whose else "")
            ),
            Path(out_dir) / name,
            formats,
        )
    ]


def plot_steps(
    results: Sequence[str | Path], out_dir: str | Path, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """The per-position curves of every checkpoint in the JSON files beside the CSV files
    `results` (a CSV without one has none), one figure per `steps_figures` entry. Returns the
    written paths."""
    return [
        path
        for result, stem in steps_figures(results, out_dir)
        for path in save_steps_figure(result, stem, formats)
    ]


def save_steps_figure(
    result: dict, stem: Path, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """`make_steps_figure(result)` written as `stem` + each of `formats`."""
    return save_figure(make_steps_figure(result), stem, formats)


def steps_figures(results: Sequence[str | Path], out_dir: str | Path) -> list[tuple[dict, Path]]:
    """(result, stem) of every per-position figure of the JSON files beside the CSV files
    `results`: out_dir/steps_<model>_<method>_<checkpoint>, the checkpoint left out where its
    name says no more (a wrapped model's, or a bundled one's: steps_s4_pgd, not
    steps_s4_pgd_s4_pgd); where two checkpoints share that name (your s5_pgd run and the zoo's)
    each also gets its run directory, then a count."""
    found = []
    for json_path in (Path(p).with_suffix(".json") for p in results):
        if json_path.is_file():
            found += json.loads(json_path.read_text())["results"]
    names = []
    for result in found:
        meta = result["meta"]
        model = meta["model"] + (f"-{meta['ads']}" if meta["ads"] else "")
        stem = Path(meta["checkpoint"]).stem  # a wrapped model: its name, no method
        zoo = f"{meta['model']}_{meta['method']}" + (f"_ads-{meta['ads']}" if meta["ads"] else "")
        parts = [model, meta["method"], stem if stem not in (meta["model"], zoo) else None]
        names.append("_".join(["steps", *(p for p in parts if p)]))
    shared = Counter(names)
    names = [
        name if shared[name] == 1 else f"{name}_{Path(r['meta']['checkpoint']).parent.name}"
        for name, r in zip(names, found, strict=True)
    ]
    seen: Counter[str] = Counter()
    stems = []
    for name in names:
        seen[name] += 1
        stems.append(Path(out_dir) / (name if seen[name] == 1 else f"{name}_{seen[name]}"))
    return list(zip(found, stems, strict=True))
