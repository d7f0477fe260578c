"""Figures 3-4's verdicts in every form: does a component raise or lower the discrepancy?

The paper records the relative form d(f', f) / ||f|| (§4.2); the plain form d(f', f) is what
Figures 3-4 drew before. Neither is scale-free (a map that doubles its input doubles MSE/||f||
and quadruples MSE), so each verdict also carries the amplification
(||Δ_out|| / ||Δ_in||) / (||f_out|| / ||f_in||) (`metrics.amplification`): above 1, the component
amplifies the clean-adversarial difference more than the clean signal, whatever its gain.

    table = verdicts(summary)       # summary: `discrepancy.summarise`'s rows as a DataFrame
    disagreements(table)            # the (row, metric) pairs where plain and relative differ
"""

from __future__ import annotations

import math

import pandas as pd

from ssmprobe.vocab import ADS_NAMES, FAMILIES, FAMILY_NAMES, METHOD_NAMES

LABELS = ["model", "method", "ads", "checkpoint", "kind", "split"]  # ads: "none" without AdS
RATES = {
    (m, n): f"{m}_{'plain' if n == 'none' else n}"
    for m in ("mse", "kl")
    for n in ("none", "relative")
}
COLUMNS = [*LABELS, "layers", *RATES.values(), "amplification", "disagree"]
KIND_ORDER = ("ssm", "ads", "attention", "linear", "norm")


def word(rate: float) -> str:
    """The verdict of a rate in %: raises, lowers, or – where it is undefined."""
    if rate is None or math.isnan(rate):
        return "–"
    return "raises" if rate > 0 else "lowers" if rate < 0 else "keeps"


def verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, component kind, split) of `summarise`d rows: the MSE and KL rates
    (%) plain and relative, the amplification (mean over layers of NSR after / before), and
    `disagree`, the metrics whose plain and relative verdicts differ ("mse", "kl", "mse, kl")."""
    rows = []
    for key, group in summary.groupby(LABELS, sort=False, dropna=False):
        row = dict(zip(LABELS, key, strict=True))
        row["layers"] = int(group["layers"].max())
        by = group.set_index(["metric", "norm"])["rate"]
        for (metric, norm), column in RATES.items():
            row[column] = float(by.get((metric, norm), math.nan))
        row["amplification"] = 1 + float(by.get(("nsr", "none"), math.nan)) / 100
        row["disagree"] = ", ".join(
            m for m in ("mse", "kl") if word(row[f"{m}_plain"]) != word(row[f"{m}_relative"])
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    order = {
        "model": {f: i for i, f in enumerate(FAMILIES)},
        "method": {m: i for i, m in enumerate(METHOD_NAMES)},
        "kind": {k: i for i, k in enumerate(KIND_ORDER)},
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
    relative forms disagree, the amplification (bold where above 1.00 as printed)."""
    part = table[table["split"] == split]
    head = [
        "| model | method | AdS | component | MSE plain | MSE relative | KL plain | KL relative "
        "| amplification |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    lines = []
    for _, r in part.iterrows():
        amp = r["amplification"]
        amp_text = "–" if math.isnan(amp) else f"{amp:.2f}"
        lines.append(
            f"| {FAMILY_NAMES.get(r['model'], r['model'])} "
            f"| {METHOD_NAMES.get(r['method'], r['method'])} "
            f"| {ADS_NAMES.get(r['ads'], r['ads'])} | {r['kind']} "
            f"| {_rate(r['mse_plain'], r['mse_relative'])} "
            f"| {_rate(r['mse_relative'], r['mse_plain'])} "
            f"| {_rate(r['kl_plain'], r['kl_relative'])} "
            f"| {_rate(r['kl_relative'], r['kl_plain'])} "
            f"| {f'**{amp_text}**' if round(amp, 2) > 1 else amp_text} |"
        )
    return "\n".join([*head, *lines]) + "\n"
