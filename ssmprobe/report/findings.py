"""The findings at the top of the report: sentences with the runs' own numbers, each a small
function from the collected rows, the discrepancy verdicts or the saved bounds checks to prose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ssmprobe.evaluation.sanity import COLLAPSE_MARK
from ssmprobe.report.runs import KEY_COLUMNS, display, rank, setting_title
from ssmprobe.vocab import KIND_NAMES


def compute_findings(
    frame: pd.DataFrame, discrepancy: pd.DataFrame, bounds: Sequence[dict[str, Any] | None]
) -> list[str]:
    """Sentences with the runs' own numbers: per family, what adversarial training did to
    PGD-10 accuracy; which components raise and lower the discrepancy of one adversarially
    trained run (yours before the zoo's); whether the bounds hold; how many rows look like
    gradient masking."""
    from ssmprobe.probe.verdicts import verdicts

    findings = accuracy_findings(frame)
    table = verdicts(discrepancy) if not discrepancy.empty else pd.DataFrame()
    at_rows = table[(table["method"] != "st") & (table["split"] == "test")] if len(table) else table
    if not at_rows.empty:  # a model that learned, yours before the zoo's, without AdS first
        collapsed = at_rows["checkpoint"].map(lambda c: _collapsed_checkpoint(frame, c))
        order = collapsed * 4 + _from_zoo(at_rows["checkpoint"]) * 2 + (at_rows["ads"] != "none")
        at_rows = at_rows.iloc[order.argsort(kind="stable")]
        first = at_rows.iloc[0]
        rows = at_rows[at_rows["checkpoint"] == first["checkpoint"]]
        what = f"{display('model', first['model'])} {display('method', first['method'])}"
        what += " (collapsed to a constant prediction)" if collapsed[first.name] else ""
        findings.append(component_finding(what, rows))
    if len(table):  # one sentence per dataset: counts over digits and MNIST are not one thing
        test = table[table["split"] == "test"]
        named = discrepancy.get("dataset", pd.Series(dtype=object))  # a wrapped model names none
        of = test["checkpoint"].map(named.groupby(discrepancy["checkpoint"]).first())
        of = of.astype(object).fillna("")
        for name in sorted(of.unique(), key=lambda d: rank("dataset", d)):
            on = display("dataset", name) if of.nunique() > 1 else ""
            findings.append(verdict_finding(test[of == name], on))
    findings += gap_findings(frame)
    held = [b for b in bounds if b]
    if held:
        findings.append(bounds_finding(held))
    findings += masking_findings(frame)
    return findings


def accuracy_findings(frame: pd.DataFrame) -> list[str]:
    """Per family and dataset, what adversarial training did to PGD-10 accuracy: its best run
    that did not collapse to a constant prediction against standard training, from your runs,
    else from the zoo's."""
    findings = []
    plain = frame[frame["ads"] == "none"]
    zoo = _from_zoo(plain["run"])
    reported: set[tuple[str, str]] = set()
    for part in (plain[~zoo], plain[zoo]):  # a family's pair from your runs, else the zoo's
        for (dataset, model), group in part.groupby(["dataset", "model"], sort=False):
            st = group[group["method"] == "st"]
            at = group[group["method"] != "st"].dropna(subset=["pgd10_best"])
            at = at[~_collapsed(at)]  # a constant prediction raised nothing
            if (dataset, model) in reported or st.empty or at.empty:
                continue
            if pd.isna(st["pgd10_last"].iloc[0]):
                continue
            reported.add((dataset, model))
            best = at.loc[at["pgd10_best"].idxmax()]
            before, after = st["pgd10_last"].iloc[0], best["pgd10_best"]
            verb = "raised" if after > before else "lowered" if after < before else "left"
            findings.append(
                f"{display('method', best['method'])} {verb} {display('model', model)}'s PGD-10 "
                f"accuracy on {display('dataset', dataset)} "
                + (
                    f"at {after:.1f}%"
                    if verb == "left"
                    else f"from {before:.1f}% (ST) to {after:.1f}%"
                )
                + ("" if pd.isna(best["aa_best"]) else f" (AutoAttack {best['aa_best']:.1f}%)")
                + f", clean {st['clean_last'].iloc[0]:.1f}% -> {best['clean_best']:.1f}%."
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
    saved checks (`BoundsCheck.save`'s JSON) `held`, each family named with its dataset (the
    check's "dataset") where they hold several."""
    several = len({b.get("dataset") for b in held}) > 1
    kernel = [
        (
            display("model", b["meta"]["model"])
            + (f" ({display('dataset', b['dataset'])})" if several else ""),
            *_holds(b, "kernel_upper"),
        )
        for b in held
    ]
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


def verdict_finding(table: pd.DataFrame, dataset: str = "") -> str:
    """How often the plain and the relative form of Figures 3-4 disagree, and how often a
    component amplifies the attack more than the signal (`probe.verdicts`), on the test inputs
    of `dataset` (its display name; "" where the report holds one dataset)."""
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
        f"Figures 3-4 on test inputs{f' of {dataset}' if dataset else ''}: the plain and the "
        "relative form give opposite verdicts on "
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
    signs of robust overfitting, on the adversarially trained runs that did not collapse to a
    constant prediction (whose gap is that of a constant), one sentence per dataset."""
    if "gap_last" not in frame:
        return []
    at = frame[(frame["method"] != "st") & frame["gap_last"].notna()]
    at = at[~_collapsed(at)]
    datasets = sorted(at["dataset"].unique(), key=lambda d: rank("dataset", d))
    lines = []
    for dataset in datasets:
        part = at[at["dataset"] == dataset]
        top = part.loc[part["gap_last"].idxmax()]
        on = f" on {display('dataset', dataset)}" if len(datasets) > 1 else ""
        lines.append(
            f"Robust generalisation gap (train - test PGD-10 at the last epoch){on} of the "
            f"{len(part)} adversarially trained runs: {part['gap_last'].min():.1f} to "
            f"{part['gap_last'].max():.1f} points, largest for {setting_title(*top[KEY_COLUMNS])} "
            f"({top['train_pgd_last']:.1f} train vs {top['test_pgd_last']:.1f} test); test PGD-10 "
            "at the best and the last epoch differ by at most "
            f"{(part['test_pgd_best'] - part['test_pgd_last']).abs().max():.1f} points."
        )
    plain = at[at["ads"] == "none"]
    paired = at[at["ads"] != "none"].merge(
        plain[["dataset", "model", "method", "gap_last"]],
        on=["dataset", "model", "method"],
        suffixes=("", "_plain"),
    )
    if len(paired):
        wider = int((paired["gap_last"] > paired["gap_last_plain"]).sum())
        lines.append(
            f"AdS runs have a wider robust gap than the same setting without AdS in {wider} of "
            f"{len(paired)} settings."
        )
    return lines


def masking_findings(frame: pd.DataFrame) -> list[str]:
    """How many rows look like gradient masking, which collapsed to a constant prediction, and
    where AutoAttack's own checks warned."""
    findings = []
    flagged = frame[frame["masking"].fillna("") != ""]
    findings.append(
        f"{len(flagged)} of {len(frame)} rows show a gradient-masking pattern."
        if len(flagged)
        else f"No row of {len(frame)} shows a gradient-masking pattern."
    )
    collapsed = frame[_collapsed(frame)]
    if len(collapsed):
        names = "; ".join(setting_title(*row[KEY_COLUMNS]) for _, row in collapsed.iterrows())
        findings.append(
            f"{len(collapsed)} row(s) collapsed to a constant prediction ({names}): their clean "
            "and robust accuracy are the share of the one class they predict, not robustness "
            f"({COLLAPSE_MARK} in the tables)."
        )
    checked = frame[frame["aa_checks"].fillna("") != ""]
    if len(checked):
        names = "; ".join(setting_title(*row[KEY_COLUMNS]) for _, row in checked.iterrows())
        findings.append(
            f"AutoAttack's own checks warned on {len(checked)} row(s) ({names}); the warnings "
            "are in table.csv, and AA already counts what its attacks found."
        )
    return findings


def _collapsed(frame: pd.DataFrame) -> pd.Series:
    """Which rows collapsed to a constant prediction (none in a frame without the column, e.g.
    the spread of seeds)."""
    if "collapse" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["collapse"].fillna("") != ""


def _collapsed_checkpoint(frame: pd.DataFrame, checkpoint: str) -> bool:
    """Whether the checkpoint file (a discrepancy row's) is one the frame flags as collapsed:
    its run folder is a flagged row's run and its name (best / last) is in the flag."""
    path = Path(checkpoint)
    return any(
        path.parent.as_posix().endswith(str(row["run"])) and f"{path.stem}: " in row["collapse"]
        for _, row in frame[_collapsed(frame)].iterrows()
    )


def _from_zoo(paths: pd.Series) -> pd.Series:
    """Which of `paths` (of runs or checkpoints) lie in the zoo/ folder `zoo_runs` fills."""
    return paths.astype(str).str.contains("zoo/")


def _holds(bounds: dict[str, Any], form: str) -> tuple[int, int]:
    """(channels where the `form` bound held, channels where it was checked) of one check."""
    rows = [s for s in bounds["summary"] if f"{form}_holds" in s]
    return sum(s[f"{form}_holds"] for s in rows), sum(s["channels"] for s in rows)
