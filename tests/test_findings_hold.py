"""Every quantified sentence of the docs about the committed results, recomputed row by row.

Each `Claim` is one sentence of README.md or docs/ stated as data: a phrase of the sentence, the
rows it covers (and how many), the column and the condition each row must meet, and the rows the
sentence names as exceptions. A test fails when the phrase left the prose, when the rows covered
are not as many as stated, or when the rows that break the condition are not exactly the named
exceptions. Values are compared unrounded; a row is named by its source's label columns joined
with "/" (`SOURCES`), e.g. "dss/pgd/sigmoid/ssm/test" or "dss/trades/relu/3" (seed 3).
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from ssmprobe.models.base import module_component
from ssmprobe.probe import DiscrepancyStats, record
from ssmprobe.probe.discrepancy import component_rows, load_rows, summarise
from ssmprobe.probe.metrics import amplification, sample_amplification
from ssmprobe.probe.verdicts import verdicts
from ssmprobe.report.findings import verdict_finding

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"
RATES = ("mse_plain", "mse_relative", "kl_plain", "kl_relative", "amplification")
METHODS = {"ST": "st", "PGD-AT": "pgd", "TRADES": "trades"}


@cache
def verdict_rows() -> pd.DataFrame:
    """figures/discrepancy/verdicts.csv, train and test, with which metric's forms disagree."""
    path = FIGURES / "discrepancy" / "verdicts.csv"
    frame = pd.read_csv(path, keep_default_na=False, na_values=["nan"])  # "" is no disagreement
    for metric in ("mse", "kl"):
        frame[f"{metric}_split"] = frame["disagree"].str.contains(metric).astype(float)
    return frame


@cache
def linear_rows() -> pd.DataFrame:
    """figures/discrepancy/linear_layer.csv as its table shows it: the mean over layers."""
    frame = pd.read_csv(FIGURES / "discrepancy" / "linear_layer.csv", keep_default_na=False)
    frame = frame.groupby(["model", "method", "ads"], sort=False).mean(numeric_only=True)
    return (
        frame.drop(columns="layer")
        .reset_index()
        .assign(
            gelu_over_linear=lambda f: f["gelu_linear_amp"] - f["linear_amp"],
            diff_over_rms=lambda f: f["diff_gain"] - f["w_rms"],
            signal_over_diff=lambda f: f["signal_gain"] - f["diff_gain"],
        )
    )


@cache
def mamba_lead() -> pd.DataFrame:
    """Per method and split, Mamba's SSM rate over the largest other family's, in every form."""
    ssm = verdict_rows()[verdict_rows()["kind"] == "ssm"].set_index(["method", "split"])
    mamba, others = ssm[ssm["model"] == "mamba"], ssm[ssm["model"] != "mamba"]
    lead = mamba[list(RATES)] / others.groupby(["method", "split"])[list(RATES)].max()
    lead = lead.reset_index().melt(["method", "split"], var_name="form", value_name="lead")
    return lead.assign(model="mamba", ads="none")


@cache
def split_gap() -> pd.DataFrame:
    """|train - test| of every rate, per checkpoint and component kind."""
    keys = ["model", "method", "ads", "kind"]
    by = verdict_rows().set_index([*keys, "split"])[list(RATES)]
    gap = (by.xs("train", level="split") - by.xs("test", level="split")).abs()
    return gap.reset_index()


def _runs(path: Path, dataset: str | None = None) -> pd.DataFrame:
    """A table.csv the report wrote (its rows of `dataset` if given): per run its checkpoint's
    clean, PGD-10 and AA accuracy (best after adversarial training, last after standard), and
    the gains over the ST run of its model and over the run without AdS of its model, method
    and seed."""
    table = pd.read_csv(path, keep_default_na=False)
    if dataset is not None:
        table = table[table["Dataset"] == dataset].reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "model": table["Model"].str.lower(),
            "method": table["Method"].str.split().str[0].map(METHODS),
            "ads": table["AdS"].str.lower().replace("–", "none"),
            "seed": table["Seed"],
        }
    )
    st = frame["method"] == "st"
    for name, column in (("clean", "Clean"), ("pgd", "PGD-10"), ("aa", "AA")):
        best, last = (pd.to_numeric(table[f"{column} {at}"]) for at in ("Best", "Last"))
        frame[name] = last.where(st, best)
    frame["pgd_best_last"] = pd.to_numeric(table["PGD-10 Diff"]).abs()
    frame["aa_drop"] = frame["pgd"] - frame["aa"]
    frame["masked"] = (table["Suspected masking"] != "").astype(float)
    frame["aa_warned_best"] = table["AutoAttack checks"].str.contains("best:").astype(float)
    frame["aa_warned_last"] = table["AutoAttack checks"].str.contains("last:").astype(float)
    frame["aa_last_scored"] = (table["AA Last"] != "").astype(float)
    if "Robust gap Last" in table:
        frame["gap"] = pd.to_numeric(table["Robust gap Last"])
        best, last = (pd.to_numeric(table[f"Test PGD-10 {at}"]) for at in ("Best", "Last"))
        frame["test_best_last"] = (best - last).abs()
    base = frame[st].set_index("model")
    for name in ("clean", "pgd"):
        frame[f"{name}_over_st"] = frame[name] - frame["model"].map(base[name])
    keys = ["model", "method", "seed"]
    plain = frame[frame["ads"] == "none"].set_index(keys)
    for name in ("pgd", "aa", "gap"):
        if name in frame:
            frame[f"{name}_over_plain"] = (
                frame[name] - plain[name].reindex(pd.MultiIndex.from_frame(frame[keys])).to_numpy()
            )
    return frame


@cache
def bound_rows() -> pd.DataFrame:
    """Channels where Theorem 4.1.1's bounds failed, per entry of each cached check's summary
    of a digits checkpoint (the sentences are about digits)."""
    manifest = json.loads((ROOT / "checkpoints" / "manifest.json").read_text(encoding="utf-8"))
    rows = []
    for path in sorted((ROOT / "checkpoints" / "cache").glob("*/bounds.json")):
        if manifest[f"{path.parent.name}.pt"]["dataset"] != "digits":
            continue
        model, method = path.parent.name.split("_")[:2]
        for entry, s in enumerate(json.loads(path.read_text(encoding="utf-8"))["summary"]):
            fails = {
                f"{form}_fails": s["channels"] - s[f"{form}_upper_holds"]
                for form in ("kernel", "spectral")
                if s.get(f"{form}_upper_holds") is not None
            }
            rows.append({"model": model, "method": method, "entry": entry, **fails})
    return pd.DataFrame(rows)


@cache
def zoo_rows() -> pd.DataFrame:
    """The zoo's digits rows (its MNIST-10k rows are docs/mnist10k.md's)."""
    return _runs(FIGURES / "table.csv", dataset="Digits")


@cache
def seed_rows() -> pd.DataFrame:
    return _runs(FIGURES / "seeds" / "table.csv")


@cache
def ads_settings() -> pd.DataFrame:
    """Per AdS setting of the seed study, its smallest gain over the run without AdS."""
    ads = seed_rows()[seed_rows()["ads"] != "none"]
    worst = ads.groupby(["model", "method", "ads"], sort=False)[["pgd_over_plain", "aa_over_plain"]]
    return worst.min().reset_index()


SOURCES = {
    "verdicts": (verdict_rows, ("model", "method", "ads", "kind", "split")),
    "linear": (linear_rows, ("model", "method", "ads")),
    "mamba": (mamba_lead, ("model", "method", "form", "split")),
    "split_gap": (split_gap, ("model", "method", "ads", "kind")),
    "zoo": (zoo_rows, ("model", "method", "ads")),
    "seeds": (seed_rows, ("model", "method", "ads", "seed")),
    "settings": (ads_settings, ("model", "method", "ads")),
    "bounds": (bound_rows, ("model", "method", "entry")),
}
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq}
AT = ("pgd", "trades")


@dataclass(frozen=True)
class Claim:
    """One quantified sentence: each (doc, phrase) of `says` is in the prose; of the `of` rows of
    `source` that `rows` selects (column -> allowed values), each meets `holds` on `column`
    ("> 0", "<= 1.5"; all of them) except exactly `exceptions`."""

    says: tuple[tuple[str, str], ...]
    source: str
    rows: dict[str, tuple] = field(hash=False)
    column: str
    holds: tuple[str, ...]
    of: int
    exceptions: tuple[str, ...] = ()

    def covered(self) -> pd.DataFrame:
        frame = SOURCES[self.source][0]()
        for column, allowed in self.rows.items():
            frame = frame[frame[column].isin(allowed)]
        return frame

    def breaking(self) -> set[str]:
        frame = self.covered()
        ok = pd.Series(True, index=frame.index)
        for condition in self.holds:
            op, value = condition.split()
            ok &= OPS[op](frame[self.column], float(value))  # NaN breaks every condition
        labels = SOURCES[self.source][1]
        return {"/".join(str(r[c]) for c in labels) for _, r in frame[~ok].iterrows()}


DISC, RES, README = "docs/discrepancy.md", "docs/results.md", "README.md"
S4_DSS = {"model": ("s4", "dss")}
AT_S4_DSS = {**S4_DSS, "method": AT}
SIGMOID = {"kind": ("ads",), "ads": ("sigmoid",)}
BOTH = ("test", "train")


def _both(*rows: str) -> tuple[str, ...]:
    """A row named on both splits."""
    return tuple(f"{row}/{split}" for row in rows for split in BOTH)


CLAIMS: list[Claim] = [
    # Feature discrepancy: figures/discrepancy/verdicts.csv, both splits unless a claim says test.
    Claim(
        ((DISC, "in the plain form, MSE in all 27 rows"), (RES, "in the plain MSE in all 27 rows")),
        "verdicts", {"kind": ("ssm",)}, "mse_plain", ("> 0",), 54,
    ),
    Claim(
        ((DISC, "KL in 26 of 27 (not DSS PGD-AT: −4% on test, −3% on train)"),
         (RES, "the plain KL in 26 of 27 (not DSS PGD-AT)")),
        "verdicts", {"kind": ("ssm",)}, "kl_plain", ("> 0",), 54, _both("dss/pgd/none/ssm"),
    ),
    Claim(
        ((DISC, "lowers KL in 14 of their 16 test rows (not S4 + Sigmoid AdS: +1.8% under PGD-AT"),
         (RES, "relative KL falling in 14 of 16 on test (not S4 + Sigmoid AdS under PGD-AT and")),
        "verdicts", {**AT_S4_DSS, "kind": ("ssm",), "split": ("test",)}, "kl_relative", ("< 0",),
        16, ("s4/pgd/sigmoid/ssm/test", "s4/trades/sigmoid/ssm/test"),
    ),
    Claim(
        ((DISC, "on train only the TRADES one, +13.1%"),),
        "verdicts", {**AT_S4_DSS, "kind": ("ssm",), "split": ("train",)}, "kl_relative",
        ("< 0",), 16, ("s4/trades/sigmoid/ssm/train",),
    ),
    Claim(
        ((DISC, "still raises MSE in 14 of 16 (not S4 and DSS PGD-AT without AdS"),
         (RES, "relative MSE still rising in 14 of their 16 rows (not S4 and DSS PGD-AT without")),
        "verdicts", {**AT_S4_DSS, "kind": ("ssm",)}, "mse_relative", ("> 0",), 32,
        _both("s4/pgd/none/ssm", "dss/pgd/none/ssm"),
    ),
    Claim(
        ((DISC, "in 16 of their 18 rows on each split, not DSS PGD-AT + Sigmoid AdS (1.005 on "
                "test, 1.002 on train) or + Tanh AdS (1.011 on both)"),),
        "verdicts", {"model": ("s4", "dss", "mega"), "method": AT, "kind": ("ssm",)},
        "amplification", ("< 1",), 36, _both("dss/pgd/sigmoid/ssm", "dss/pgd/tanh/ssm"),
    ),
    Claim(
        ((DISC, "Mamba's SSM amplifies the attack under every method (1.81-3.09)"),),
        "verdicts", {"model": ("mamba",), "kind": ("ssm",)}, "amplification",
        (">= 1.805", "< 3.095"), 6,
    ),
    Claim(
        ((DISC, "raises plain KL but lowers relative KL in 13 of their 16 rows"),),
        "verdicts", {**AT_S4_DSS, "kind": ("ssm",), "split": ("test",)}, "kl_split", ("== 1",),
        16, ("s4/pgd/sigmoid/ssm/test", "s4/trades/sigmoid/ssm/test", "dss/pgd/none/ssm/test"),
    ),
    Claim(
        ((DISC, "on train in 14, S4 PGD-AT + Sigmoid included"),),
        "verdicts", {**AT_S4_DSS, "kind": ("ssm",), "split": ("train",)}, "kl_split", ("== 1",),
        16, ("s4/trades/sigmoid/ssm/train", "dss/pgd/none/ssm/train"),
    ),
    Claim(  # MSE disagrees on no other of these rows
        ((DISC, "raises plain MSE but lowers relative MSE only in S4 and DSS PGD-AT without AdS"),),
        "verdicts", {**AT_S4_DSS, "kind": ("ssm",)}, "mse_split", ("== 0",), 32,
        _both("s4/pgd/none/ssm", "dss/pgd/none/ssm"),
    ),
    Claim(
        ((DISC, "lowers relative KL in 7 of the 8 adversarially trained rows without AdS or with "
                "ReLU AdS (not S4 PGD-AT without AdS)"),),
        "verdicts", {**AT_S4_DSS, "ads": ("none", "relu"), "kind": ("linear",)}, "kl_split",
        ("== 1",), 16, _both("s4/pgd/none/linear"),
    ),
    Claim(
        ((DISC, "Mega's attention lowers plain MSE but raises relative MSE in all 3 rows"),),
        "verdicts", {"kind": ("attention",)}, "mse_split", ("== 1",), 6,
    ),
    Claim(
        ((DISC, "the Sigmoid AdS lowers plain KL but raises relative KL in all 4 rows"),),
        "verdicts", SIGMOID, "kl_split", ("== 1",), 8,
    ),
    Claim(
        ((DISC, "lowers plain MSE but raises relative MSE in S4's 2 (DSS's relative MSE falls "
                "too)"),),
        "verdicts", SIGMOID, "mse_split", ("== 1",), 8,
        _both("dss/pgd/sigmoid/ads", "dss/trades/sigmoid/ads"),
    ),
    Claim(
        ((DISC, "(both rise in all 24 linear rows)"),),
        "verdicts", {"kind": ("linear",)}, "mse_plain", ("> 0",), 48,
    ),
    Claim(
        ((DISC, "(both rise in all 24 linear rows)"),),
        "verdicts", {"kind": ("linear",)}, "mse_relative", ("> 0",), 48,
    ),
    Claim(
        ((DISC, "for S4 and DSS in 17 of their 18 rows (section above; not DSS TRADES + Sigmoid "
                "AdS, 1.002 on test)"),
         (RES, "(S4 and DSS in 17 of 18 rows, not DSS TRADES + Sigmoid AdS;")),
        "verdicts", {**S4_DSS, "kind": ("linear",)}, "amplification", ("< 1",), 36,
        ("dss/trades/sigmoid/linear/test",),
    ),
    Claim(
        ((DISC, "Mamba's adversarially trained `out_proj` (0.91-0.92)"),),
        "verdicts", {"model": ("mamba",), "method": AT, "kind": ("linear",)}, "amplification",
        (">= 0.905", "< 0.925"), 4,
    ),
    Claim(
        ((DISC, "Mega's FFN amplifies the attack (1.05-1.32)"),),
        "verdicts", {"model": ("mega",), "kind": ("linear",)}, "amplification",
        (">= 1.045", "< 1.325"), 6,
    ),
    Claim(
        ((DISC, "only in the plain MSE, in all 3 Mega rows"),),
        "verdicts", {"kind": ("attention",)}, "mse_plain", ("< 0",), 6,
    ),
    Claim(
        ((DISC, "(plain KL rises in all 3)"),),
        "verdicts", {"kind": ("attention",)}, "kl_plain", ("> 0",), 6,
    ),
    Claim(
        ((DISC, "Mega's attention raises the relative MSE and KL in all 3"),),
        "verdicts", {"kind": ("attention",)}, "mse_relative", ("> 0",), 6,
    ),
    Claim(
        ((DISC, "Mega's attention raises the relative MSE and KL in all 3"),),
        "verdicts", {"kind": ("attention",)}, "kl_relative", ("> 0",), 6,
    ),
    Claim(
        ((DISC, "1.83-2.95, where every other component stays below 1.6"),),
        "verdicts", {"kind": ("attention",)}, "amplification", (">= 1.825", "< 2.955"), 6,
    ),
    Claim(
        ((DISC, "under PGD-AT and TRADES (1.83-1.96)"),),
        "verdicts", {"kind": ("attention",), "method": AT}, "amplification",
        (">= 1.825", "< 1.965"), 4,
    ),
    Claim(
        ((DISC, "where every other component stays below 1.6"),),
        "verdicts", {"model": ("s4", "dss", "s5", "mega"), "kind": ("ssm",)}, "amplification",
        ("< 1.6",), 48,
    ),
    Claim(
        ((DISC, "where every other component stays below 1.6"),),
        "verdicts", {"kind": ("ads", "linear", "norm")}, "amplification", ("< 1.6",), 126,
    ),
    Claim(
        ((DISC, "plain MSE rate differs between train and test by at most 1.8 points"),),
        "split_gap", {"kind": ("attention",)}, "mse_plain", ("<= 1.8",), 3,
    ),
    Claim(
        ((DISC, "which lowers plain MSE and KL in all 4 of its rows"),
         (RES, "(only the Sigmoid AdS in the plain form)")),
        "verdicts", SIGMOID, "mse_plain", ("< 0",), 8,
    ),
    Claim(
        ((DISC, "which lowers plain MSE and KL in all 4 of its rows"),
         (RES, "(only the Sigmoid AdS in the plain form)")),
        "verdicts", SIGMOID, "kl_plain", ("< 0",), 8,
    ),
    Claim(
        ((DISC, "where ReLU and Tanh raise both in all 8 of theirs"),),
        "verdicts", {"kind": ("ads",), "ads": ("relu", "tanh")}, "mse_plain", ("> 0",), 16,
    ),
    Claim(
        ((DISC, "where ReLU and Tanh raise both in all 8 of theirs"),),
        "verdicts", {"kind": ("ads",), "ads": ("relu", "tanh")}, "kl_plain", ("> 0",), 16,
    ),
    Claim(
        ((DISC, "In the relative form the Sigmoid AdS raises KL in all 4"),),
        "verdicts", SIGMOID, "kl_relative", ("> 0",), 8,
    ),
    Claim(
        ((DISC, "and MSE in S4's 2 (DSS's relative MSE falls, by 1% under PGD-AT and 15% under "
                "TRADES)"),),
        "verdicts", SIGMOID, "mse_relative", ("> 0",), 8,
        _both("dss/pgd/sigmoid/ads", "dss/trades/sigmoid/ads"),
    ),
    Claim(
        ((DISC, "both methods: 12 of 12, both splits) has an amplification above 1"),),
        "verdicts", {"kind": ("ads",)}, "amplification", ("> 1",), 24,
    ),
    Claim(
        ((DISC, "by a factor of 1.4 (relative KL under ST) to over 100"),
         (RES, "**Mamba's SSM far above the others**: yes, in every form.")),
        "mamba", {}, "lead", (">= 1.35",), 30,
    ),
    Claim(
        ((DISC, "to over 100 (plain MSE under ST and PGD-AT)"),),
        "mamba", {"form": ("mse_plain",), "method": ("st", "pgd")}, "lead", ("> 100",), 4,
    ),
    Claim(
        ((DISC, "Its plain MSE and KL rise by more than 40 times under every method"),),
        "verdicts", {"model": ("mamba",), "kind": ("ssm",)}, "mse_plain", ("> 4000",), 6,
    ),
    Claim(
        ((DISC, "Its plain MSE and KL rise by more than 40 times under every method"),),
        "verdicts", {"model": ("mamba",), "kind": ("ssm",)}, "kl_plain", ("> 4000",), 6,
    ),
    Claim(
        ((DISC, "the LayerNorm (amplification above 1 in all 18 S4 and DSS rows of the table "
                "before, and on train)"),),
        "verdicts", {**S4_DSS, "kind": ("norm",)}, "amplification", ("> 1",), 36,
    ),
    # Why the linear layer raises the plain discrepancy: figures/discrepancy/linear_layer.csv.
    Claim(
        ((DISC, "removes 42-71% of the difference in MSE"),),
        "linear", {}, "gelu_mse", (">= -71.5", "< -41.5"), 18,
    ),
    Claim(
        ((DISC, "(more than half in 15 of 18 rows; not with the ReLU AdS of DSS PGD-AT, DSS TRADES "
                "and S4 TRADES)"),),
        "linear", {}, "gelu_mse", ("< -50",), 18,
        ("dss/pgd/relu", "dss/trades/relu", "s4/trades/relu"),
    ),
    Claim(
        ((DISC, "(GELU+linear amplification above the Linear's own in all 6)"),),
        "linear", {"ads": ("none",)}, "gelu_over_linear", ("> 0",), 6,
    ),
    Claim(
        ((DISC, "by more than its RMS gain ||W||_F/√d in all 18 rows"),),
        "linear", {}, "diff_over_rms", ("> 0",), 18,
    ),
    Claim(
        ((DISC, "and the clean signal by more still in 17 of 18"),),
        "linear", {}, "signal_over_diff", ("> 0",), 18, ("dss/trades/sigmoid",),
    ),
    Claim(
        ((DISC, "its amplification is below 1 in 17 of the 18 S4 and DSS rows, not DSS TRADES + "
                "Sigmoid AdS (1.002 on test, 0.998 on train)"),),
        "linear", {}, "linear_amp", ("< 1",), 18, ("dss/trades/sigmoid",),
    ),
    Claim(
        ((DISC, "the whole block amplifies it in all 18 rows"),),
        "linear", {}, "block_amp", ("> 1",), 18,
    ),
    # Accuracy: figures/table.csv (the zoo) and figures/seeds/table.csv (seeds 0-4).
    Claim(
        ((RES, "The zoo holds the whole digits grid, 27 runs."),),
        "zoo", {}, "clean", ("> 0",), 27,
    ),
    Claim(
        ((RES, "PGD-10 accuracy from 2-12% under standard training"),),
        "zoo", {"method": ("st",)}, "pgd", (">= 1.5", "< 12.5"), 5,
    ),
    Claim(
        ((RES, "to 76-93% under PGD-AT and TRADES"),),
        "zoo", {"method": AT}, "pgd", (">= 75.5", "< 93.5"), 22,
    ),
    Claim(
        ((RES, "(all 22 adversarially trained runs above their family's ST run)"),
         (README, "Adversarial training buys robustness for every family")),
        "zoo", {"method": AT}, "pgd_over_st", ("> 0",), 22,
    ),
    Claim(
        ((RES, "AutoAttack within 3.1 points."),),
        "zoo", {"method": AT}, "aa_drop", ("<= 3.1",), 22,
    ),
    Claim(
        ((RES, "ties with S4 PGD-AT + Sigmoid AdS for the widest of the adversarially trained "
               "rows (every other is below 3)"),),
        "zoo", {"method": AT}, "aa_drop", ("< 3",), 22, ("mamba/pgd/none", "s4/pgd/sigmoid"),
    ),
    Claim(
        ((RES, "raise clean accuracy in 21 of the 22 adversarially trained runs, AdS included, "
               "and keep it in DSS TRADES"),
         (README, "and costs no clean accuracy")),
        "zoo", {"method": AT}, "clean_over_st", ("> 0",), 22, ("dss/trades/none",),
    ),
    Claim(
        ((RES, "every PGD-AT row with an AdS is below the plain one (6 of 6, PGD-10 and AA)"),),
        "zoo", {"method": ("pgd",), "ads": ("relu", "tanh", "sigmoid")}, "pgd_over_plain",
        ("< 0",), 6,
    ),
    Claim(
        ((RES, "every PGD-AT row with an AdS is below the plain one (6 of 6, PGD-10 and AA)"),),
        "zoo", {"method": ("pgd",), "ads": ("relu", "tanh", "sigmoid")}, "aa_over_plain",
        ("< 0",), 6,
    ),
    Claim(
        ((RES, "DSS gains with ReLU and Tanh and ties with Sigmoid in PGD-10 (86.94; below in "
               "AA)"),),
        "zoo", {"method": ("trades",), "ads": ("relu", "tanh", "sigmoid")}, "pgd_over_plain",
        ("< 0",), 6, ("dss/trades/relu", "dss/trades/tanh", "dss/trades/sigmoid"),
    ),
    Claim(
        ((RES, "DSS gains with ReLU and Tanh and ties with Sigmoid in PGD-10 (86.94; below in "
               "AA)"),),
        "zoo", {"method": ("trades",), "ads": ("relu", "tanh", "sigmoid")}, "aa_over_plain",
        ("< 0",), 6, ("dss/trades/relu", "dss/trades/tanh"),
    ),
    Claim(
        ((RES, "Test PGD-10 at the best and the last epoch of every adversarially trained zoo run "
               "are within 1.4 points of each other"),
         (README, "Test PGD-10 accuracy at the last epoch stays within 1.4 points of the best.")),
        "zoo", {"method": AT}, "test_best_last", ("< 1.4",), 22,
    ),
    Claim(
        ((RES, "and so are the best and last checkpoints of the 38 seed runs"),),
        "seeds", {"method": AT, "seed": (1, 2, 3, 4)}, "pgd_best_last", ("< 1.4",), 38,
    ),
    Claim(
        ((RES, "AdS runs have wider gaps than the same setting without AdS in 11 of the 12 "
               "settings (not DSS TRADES + Tanh)"),),
        "zoo", {"ads": ("relu", "tanh", "sigmoid")}, "gap_over_plain", ("> 0",), 12,
        ("dss/trades/tanh",),
    ),
    Claim(
        ((RES, "the sanity flags mark none of the 60 adversarially trained runs"),),
        "seeds", {"method": AT}, "masked", ("== 0",), 60,
    ),
    Claim(
        ((RES, "warned on two zoo entries, Mamba PGD-AT (0.96% of the digits, on its best "
               "checkpoint) and DSS PGD-AT + ReLU AdS"),),
        "zoo", {}, "aa_warned_best", ("== 0",), 27, ("mamba/pgd/none", "dss/pgd/relu"),
    ),
    Claim(
        ((RES, "on two of the 38 seed runs' best checkpoints"),),
        "seeds", {"seed": (1, 2, 3, 4)}, "aa_warned_best", ("== 0",), 38,
        ("s4/pgd/none/1", "s4/pgd/relu/1"),
    ),
    Claim(
        ((RES, "on two of the 21 last checkpoints scored so far, DSS PGD-AT + Sigmoid seed 1"),),
        "seeds", {"seed": (1, 2, 3, 4), "aa_last_scored": (1.0,)}, "aa_warned_last", ("== 0",),
        21, ("dss/pgd/sigmoid/1", "dss/pgd/tanh/2"),
    ),
    Claim(
        ((RES, "on no TRADES run"),), "seeds", {"method": ("trades",)}, "aa_warned_best",
        ("== 0",), 33,
    ),
    Claim(
        ((RES, "on no TRADES run"),), "seeds", {"method": ("trades",)}, "aa_warned_last",
        ("== 0",), 33,
    ),
    # The seed study: each AdS run against the run without AdS of the same seed.
    Claim(
        ((RES, "ReLU and Tanh are below it on every seed, in PGD-10 and AA"),),
        "seeds", {"model": ("s4",), "method": ("pgd",), "ads": ("relu", "tanh")},
        "pgd_over_plain", ("< 0",), 6,
    ),
    Claim(
        ((RES, "ReLU and Tanh are below it on every seed, in PGD-10 and AA"),),
        "seeds", {"model": ("s4",), "method": ("pgd",), "ads": ("relu", "tanh")},
        "aa_over_plain", ("< 0",), 6,
    ),
    Claim(
        ((RES, "on seed 2 ReLU and Sigmoid are above it in PGD-10"),),
        "seeds", {"model": ("dss",), "method": ("pgd",), "ads": ("relu", "tanh", "sigmoid"),
                  "seed": (2,)},
        "pgd_over_plain", ("> 0",), 3, ("dss/pgd/tanh/2",),
    ),
    Claim(
        ((RES, "After three seeds ReLU and Tanh were above plain DSS TRADES on each of them"),),
        "seeds", {"model": ("dss",), "method": ("trades",), "ads": ("relu", "tanh"),
                  "seed": (0, 1, 2)},
        "pgd_over_plain", ("> 0",), 6,
    ),
    Claim(
        ((RES, "Tanh held: above plain on all five seeds, by 0.6-3.3 points of PGD-10"),),
        "seeds", {"model": ("dss",), "method": ("trades",), "ads": ("tanh",)},
        "pgd_over_plain", (">= 0.55", "< 3.35"), 5,
    ),
    Claim(
        ((RES, "and 0.8-2.2 of AA"),),
        "seeds", {"model": ("dss",), "method": ("trades",), "ads": ("tanh",)},
        "aa_over_plain", (">= 0.75", "< 2.25"), 5,
    ),
    Claim(
        ((RES, "ReLU did not hold on every seed: its seed 3 is 2.0 points below plain (PGD-10 and "
               "AA)"),),
        "seeds", {"model": ("dss",), "method": ("trades",), "ads": ("relu",)},
        "pgd_over_plain", ("> 0",), 5, ("dss/trades/relu/3",),
    ),
    Claim(
        ((RES, "ReLU did not hold on every seed: its seed 3 is 2.0 points below plain (PGD-10 and "
               "AA)"),),
        "seeds", {"model": ("dss",), "method": ("trades",), "ads": ("relu",)},
        "aa_over_plain", ("> 0",), 5, ("dss/trades/relu/3",),
    ),
    Claim(
        ((RES, "above on one seed of three"),),
        "seeds", {"model": ("dss",), "method": ("trades",), "ads": ("sigmoid",)},
        "pgd_over_plain", ("<= 0",), 3, ("dss/trades/sigmoid/2",),
    ),
    Claim(
        ((RES, "above on one seed of three"),),
        "seeds", {"model": ("dss",), "method": ("trades",), "ads": ("sigmoid",)},
        "aa_over_plain", ("<= 0",), 3, ("dss/trades/sigmoid/2",),
    ),
    Claim(
        ((RES, "Tanh is below plain on every seed (mean −2.5 PGD-10, −2.8 AA)"),),
        "seeds", {"model": ("s4",), "method": ("trades",), "ads": ("tanh",)},
        "pgd_over_plain", ("< 0",), 3,
    ),
    Claim(
        ((RES, "Tanh is below plain on every seed (mean −2.5 PGD-10, −2.8 AA)"),),
        "seeds", {"model": ("s4",), "method": ("trades",), "ads": ("tanh",)},
        "aa_over_plain", ("< 0",), 3,
    ),
    Claim(  # a setting gains on every seed where its smallest gain is above 0
        ((RES, "of the 12 AdS settings one, Tanh on DSS under TRADES, gains on every seed"),
         (README, "The AdS adds robustness only for DSS with Tanh under TRADES (five seeds).")),
        "settings", {}, "pgd_over_plain", ("<= 0",), 12, ("dss/trades/tanh",),
    ),
    Claim(
        ((RES, "of the 12 AdS settings one, Tanh on DSS under TRADES, gains on every seed"),),
        "settings", {}, "aa_over_plain", ("<= 0",), 12, ("dss/trades/tanh",),
    ),
    # Theorem 4.1.1: checkpoints/cache/*/bounds.json.
    Claim(
        ((RES, "its kernel form holds on every channel of the checked PGD-AT checkpoint of every "
               "LTI model (S4, DSS, S5, Mega)"),),
        "bounds", {"model": ("s4", "dss", "s5", "mega")}, "kernel_fails", ("== 0",), 10,
    ),
    Claim(
        ((RES, "the spectral bound never"),),
        "bounds", {"model": ("mamba",)}, "spectral_fails", ("== 0",), 4,
    ),
]  # fmt: skip


def _text(doc: str) -> str:
    return re.sub(r"\s+", " ", (ROOT / doc).read_text(encoding="utf-8"))


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: f"{c.says[0][1][:50]}-{c.column}")
def test_the_claim_holds_row_by_row(claim: Claim) -> None:
    for doc, phrase in claim.says:
        assert re.sub(r"\s+", " ", phrase) in _text(doc), f"the sentence left {doc}"
    assert len(claim.covered()) == claim.of, "the sentence covers another number of rows"
    assert claim.breaking() == set(claim.exceptions), "the exceptions are not the ones named"


def test_the_generated_verdict_sentence_counts_pairs_and_unrounded_amplifications() -> None:
    """The report's sentence on digits (figures/discrepancy/, the first dataset's folder) is
    the code's on the committed rows, and its numbers recount."""
    rows = load_rows([FIGURES / "discrepancy" / "discrepancy.csv"])
    assert set(rows["dataset"]) == {"digits"}  # MNIST-10k's are in discrepancy/mnist10k/
    table = verdicts(pd.DataFrame(summarise(rows.to_dict("records"))))
    sentence = verdict_finding(table[table["split"] == "test"], "Digits")
    assert f"- {sentence}\n" in (FIGURES / "report.md").read_text(encoding="utf-8")
    test = verdict_rows()[verdict_rows()["split"] == "test"]
    pairs = test.groupby("kind")[["mse_split", "kl_split"]].sum().sum(axis=1).astype(int)
    assert f"opposite verdicts on {pairs.sum()} of {2 * len(test)} " in sentence
    names = {"ssm": "SSM", "linear": "linear layer", "ads": "AdS", "norm": "LayerNorm"}
    for kind, group in test.groupby("kind"):
        name = names.get(kind, kind)
        assert f"{name} {pairs[kind]}" in sentence
        assert f"{(group['amplification'] > 1).sum()} of {len(group)} {name}" in sentence


class Diag(nn.Module):
    """y = diag(1, 2) x: keeps channel 0, doubles channel 1; the only component."""

    def __init__(self) -> None:
        super().__init__()
        self.map = nn.Linear(2, 2, bias=False)
        self.map.weight.data = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x)

    def components(self) -> list:
        return [module_component("layers.0.map", "linear", self.map)]


def test_the_amplification_is_the_ratio_of_the_sample_means_as_the_docs_define_it() -> None:
    """Two samples with clean signal 1 on channel 0: the first's difference (NSR 0.1) lies on the
    doubled channel, the second's (0.4) on the kept one, so NSR goes 0.1 -> 0.2 and 0.4 -> 0.4:
    ratio of means 0.6 / 0.5 = 1.2, mean of ratios (2 + 1) / 2 = 1.5."""
    x = torch.zeros(2, 1, 2, dtype=torch.float64)
    x[..., 0] = 1.0
    x_adv = x.clone()
    x_adv[0, 0, 1], x_adv[1, 0, 0] = 0.1, 1.4
    stats = DiscrepancyStats()
    model = Diag()
    with torch.no_grad(), record(model) as rec:
        stats.add(rec.capture(x), rec.capture(x_adv))
    nsr = next(r for r in component_rows(model, stats, "test") if r["metric"] == "nsr")
    assert 1 + nsr["rate"] / 100 == pytest.approx(1.2)  # what `verdicts` reports
    assert amplification(nsr["before"], nsr["after"]) == pytest.approx(1.2)
    before, after = torch.tensor([0.1, 0.4]), torch.tensor([0.2, 0.4])
    assert sample_amplification(before, after) == pytest.approx(1.5)
    # The docs' example, where the two forms fall on either side of 1.
    before, after = torch.tensor([0.1, 0.4]), torch.tensor([0.2, 0.2])
    assert amplification(before.mean().item(), after.mean().item()) == pytest.approx(0.8)
    assert sample_amplification(before, after) == pytest.approx(1.25)
    assert "NSR 0.1 → 0.2 and 0.4 → 0.2: ratio of means 0.8, mean of ratios 1.25" in _text(DISC)
    # A sample without a difference before has no ratio; with none left there is no mean.
    assert sample_amplification(torch.tensor([0.0, 0.5]), torch.tensor([1.0, 1.0])) == 2.0
    assert math.isnan(sample_amplification(torch.zeros(2), torch.ones(2)))
