"""Figures 3-4's verdicts in every form: does a component raise or lower the discrepancy?

The paper's §4.2 says "we record the relative change in feature sequence differences
d(f', f)/||f|| (%)", and its figure captions define the plotted value only as "change / before
component". We read that as two forms: relative, d(f', f)/||f||, and plain, d(f', f), the form
Figures 3-4 drew before. Neither is scale-free (a map that doubles its input doubles MSE/||f||
and quadruples MSE), so each verdict also carries the amplification (`metrics.amplification`):
per layer the ratio of the sample means of the noise-to-signal ratio after and before,
mean NSR_out / mean NSR_in, then the mean over layers. Above 1, the component amplifies the
clean-adversarial difference more than the clean signal, whatever its gain.

    table = verdicts(summary)       # summary: `discrepancy.summarise`'s rows as a DataFrame
    disagreements(table)            # the (row, metric) pairs where plain and relative differ
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ssmprobe.models import FAMILIES, FAMILY_TITLES
from ssmprobe.probe.metrics import AMPLIFICATION, rate_metrics
from ssmprobe.vocab import ADS_NAMES, COMPONENT_KINDS, KIND_NAMES, METHOD_NAMES

LABELS = ["model", "method", "ads", "checkpoint", "kind", "split"]  # ads: "none" without AdS


def rate_columns() -> dict[tuple[str, str], str]:
    """(metric, norm) -> its column: every rate metric plain, a scaled one relative too
    (`metrics.METRICS`: a registered metric gets its columns)."""
    return {
        (m.name, n): f"{m.name}_{'plain' if n == 'none' else n}"
        for m in rate_metrics()
        for n in (("none", "relative") if m.scaled else ("none",))
    }


def columns() -> list[str]:
    return [*LABELS, "layers", *rate_columns().values(), "amplification", "disagree"]


def word(rate: float) -> str:
    """The verdict of a rate in %: raises, lowers, or – where it is undefined."""
    if rate is None or math.isnan(rate):
        return "–"
    return "raises" if rate > 0 else "lowers" if rate < 0 else "keeps"


def verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, component kind, split) of `summarise`d rows: the MSE and KL rates
    (%) plain and relative, the amplification (the mean over layers of mean NSR after / mean NSR
    before) and `disagree`, the metrics whose plain and relative verdicts differ ("mse", "kl",
    "mse, kl")."""
    rows = []
    for key, group in summary.groupby(LABELS, sort=False, dropna=False):
        row = dict(zip(LABELS, key, strict=True))
        row["layers"] = int(group["layers"].max())
        by = group.set_index(["metric", "norm"])["rate"]
        for (metric, norm), column in rate_columns().items():
            row[column] = float(by.get((metric, norm), math.nan))
        row["amplification"] = 1 + float(by.get((AMPLIFICATION, "none"), math.nan)) / 100
        row["disagree"] = ", ".join(
            m.name
            for m in rate_metrics()
            if m.scaled and word(row[f"{m.name}_plain"]) != word(row[f"{m.name}_relative"])
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns())
    order = {
        "model": {f: i for i, f in enumerate(FAMILIES)},
        "method": {m: i for i, m in enumerate(METHOD_NAMES)},
        "kind": {k: i for i, k in enumerate(COMPONENT_KINDS)},
    }
    frame["ads"] = frame["ads"].map(lambda v: v if isinstance(v, str) and v else "none")
    keys = [frame[c].map(o) for c, o in order.items()]
    return (
        frame.assign(_m=keys[0], _t=keys[1], _a=frame["ads"], _k=keys[2])
        .sort_values(["_m", "_t", "_a", "checkpoint", "split", "_k"], kind="stable")
        .drop(columns=["_m", "_t", "_a", "_k"])
        .reset_index(drop=True)
    )


def disagreements(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of `verdicts` where the plain and the relative form give opposite verdicts."""
    return table[table["disagree"] != ""]


def _rate(value: float, other: float) -> str:
    """A rate in % with its sign, bold where its verdict differs from the other form's."""
    if math.isnan(value):
        return "–"
    text = f"{value:+.0f}" if abs(value) < 1e4 else f"{value:+.1e}"
    return f"**{text}**" if word(value) != word(other) else text


def to_markdown(table: pd.DataFrame, split: str = "test") -> str:
    """A markdown table of one split's verdicts: rates in %, a bold pair where the plain and
    relative forms disagree, the amplification (bold where above 1, unrounded; three decimals
    where two would print 1.00 and hide which side of 1 it is on)."""
    part = table[table["split"] == split]
    rated = {key: c for key, c in rate_columns().items() if c in table}
    # each rate beside the other form of its metric (itself for a scale-free one)
    flip = {"none": "relative", "relative": "none"}
    pairs = {c: rated.get((m, flip[n]), c) for (m, n), c in rated.items()}
    titles = [f"{m.upper()} {c.rpartition('_')[2]}" for (m, _), c in rated.items()]
    head = [
        "| model | method | AdS | component | " + " | ".join(titles) + " | amplification |",
        "|---|---|---|---|" + "---:|" * (len(rated) + 1),
    ]
    lines = []
    for _, r in part.iterrows():
        amp = r["amplification"]
        amp_text = "–" if math.isnan(amp) else f"{amp:.2f}" if round(amp, 2) != 1 else f"{amp:.3f}"
        lines.append(
            f"| {FAMILY_TITLES.get(r['model'], r['model'])} "
            f"| {METHOD_NAMES.get(r['method'], r['method'])} "
            f"| {ADS_NAMES.get(r['ads'], r['ads'])} | {r['kind']} "
            + "".join(f"| {_rate(r[c], r[other])} " for c, other in pairs.items())
            + f"| {f'**{amp_text}**' if amp > 1 else amp_text} |"
        )
    return "\n".join([*head, *lines]) + "\n"


def _measure(metric: str, norm: str) -> str:
    if metric == AMPLIFICATION:
        return "amplification"
    return f"{metric.upper()} {'plain' if norm == 'none' else norm}"


def _value(metric: str, rate: float) -> str:
    """A rate in %, or for NSR the amplification it gives (1 + rate / 100)."""
    if math.isnan(rate):
        return "–"
    return f"{1 + rate / 100:.3f}" if metric == AMPLIFICATION else f"{rate:+.1f}"


def spread_markdown(rows: list[dict], seeds: tuple[int, ...], n: int) -> str:
    """The spread (`probe.spread`) of `discrepancy` results as Markdown: how many directions
    are resolved, every one that is not (its interval, its seeds), the widest seed range, and
    the kinds whose layers disagree in sign."""
    unresolved = [r for r in rows if not r["resolved"]]
    head = (
        f"{len(rows) - len(unresolved)} of {len(rows)} kind rates (checkpoint × kind × split × "
        f"measure) are resolved: their 95% bootstrap interval over the {n} samples excludes 0 "
        f"(amplification: 1) and attack seeds {', '.join(map(str, seeds))} agree in sign. The "
        f"{len(unresolved)} others are reported as not resolved, not as a direction."
    )
    columns = "| checkpoint | kind | split | measure | value | 95% interval | other seeds |"
    lines = [head, "", columns, "|---|---|---|---|---:|---:|---:|"]
    for r in unresolved:
        others = ", ".join(_value(r["metric"], v) for v in r["seed_rates"].values())
        interval = f"[{_value(r['metric'], r['low'])}, {_value(r['metric'], r['high'])}]"
        lines.append(
            f"| {Path(r['checkpoint']).stem} | {KIND_NAMES[r['kind']]} | {r['split']} "
            f"| {_measure(r['metric'], r['norm'])} | {_value(r['metric'], r['rate'])} "
            f"| {interval} | {others} |"
        )
    moved = [
        (max(abs(v - r["rate"]) for v in r["seed_rates"].values()) / abs(r["rate"]), r)
        for r in rows
        if r["seed_rates"] and r["resolved"]
    ]
    if moved:
        share, r = max(moved, key=lambda g: g[0])
        others = ", ".join(_value(r["metric"], v) for v in r["seed_rates"].values())
        lines += ["", f"Other seeds move a resolved rate by at most {100 * share:.0f}% of its "
                  f"value ({Path(r['checkpoint']).stem}, {KIND_NAMES[r['kind']]}, {r['split']}, "
                  f"{_measure(r['metric'], r['norm'])}: {_value(r['metric'], r['rate'])} at "
                  f"seed 0, {others} at the others)."]  # fmt: skip
    split_layers = [r for r in rows if r["layers"]]
    lines += ["", f"{len(split_layers)} kind rates average layers that disagree in sign:", "",
              "| checkpoint | kind | split | measure | kind's value | its layers |",
              "|---|---|---|---|---:|---|"]  # fmt: skip
    for r in split_layers:
        layers = ", ".join(f"{layer}: {_value(r['metric'], v)}" for layer, v in r["layers"])
        lines.append(
            f"| {Path(r['checkpoint']).stem} | {KIND_NAMES[r['kind']]} | {r['split']} "
            f"| {_measure(r['metric'], r['norm'])} | {_value(r['metric'], r['rate'])} "
            f"| {layers} |"
        )
    return "\n".join(lines) + "\n"
