"""The scale-free amplification, Figures 3-4's verdicts in both forms, and the robust gap."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from run_fixtures import metrics_rows, write_run
from torch import nn

from ssmprobe.models.base import module_component
from ssmprobe.probe import DiscrepancyStats, record, summarise
from ssmprobe.probe.discrepancy import component_rows
from ssmprobe.probe.metrics import amplification, nsr
from ssmprobe.probe.verdicts import disagreements, to_markdown, verdicts
from ssmprobe.report.findings import gap_findings, verdict_finding
from ssmprobe.report.runs import collect_runs, read_metrics, robust_gap
from ssmprobe.report.tables import gap_markdown


def test_nsr_by_hand() -> None:
    f = torch.tensor([[[3.0, 0.0], [0.0, 4.0]]])  # ||f|| = 5
    g = f + torch.tensor([[[1.0, 0.0], [0.0, -1.0]]])  # ||g - f|| = sqrt(2)
    assert nsr(f, g).item() == pytest.approx(math.sqrt(2) / 5)
    assert amplification(0.5, 0.25) == 0.5 and math.isnan(amplification(0.0, 1.0))


class Scale(nn.Module):
    """y = W x: one linear map, the only component."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.map = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.map.weight.data = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x)

    def components(self) -> list:
        return [module_component("layers.0.map", "linear", self.map)]


def rows_of(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> dict:
    stats = DiscrepancyStats()
    with torch.no_grad(), record(model) as rec:
        stats.add(rec.capture(x), rec.capture(x_adv))
    return {(r["metric"], r["norm"]): r for r in component_rows(model, stats, "test")}


@settings(max_examples=25, deadline=None)
@given(c=st.floats(0.05, 20.0), seed=st.integers(0, 10_000))
def test_a_pure_gain_moves_plain_and_relative_mse_but_not_the_amplification(
    c: float, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 8, 4, generator=g, dtype=torch.float64)
    x_adv = x + 0.1 * torch.randn(3, 8, 4, generator=g, dtype=torch.float64)
    rows = rows_of(Scale(c * torch.eye(4, dtype=torch.float64)), x, x_adv)
    assert rows["mse", "none"]["rate"] == pytest.approx(100 * (c**2 - 1), rel=1e-9, abs=1e-9)
    assert rows["mse", "relative"]["rate"] == pytest.approx(100 * (c - 1), rel=1e-9, abs=1e-9)
    assert 1 + rows["nsr", "none"]["rate"] / 100 == pytest.approx(1.0, abs=1e-9)


def test_a_map_that_favours_the_difference_amplifies_it() -> None:
    # The clean signal lies along e0, the difference along e1; W doubles e1 and keeps e0.
    x = torch.zeros(2, 5, 2, dtype=torch.float64)
    x[..., 0] = 1.0
    x_adv = x.clone()
    x_adv[..., 1] = 0.1
    rows = rows_of(Scale(torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))), x, x_adv)
    assert 1 + rows["nsr", "none"]["rate"] / 100 == pytest.approx(2.0)


def summary_rows(rates: dict[tuple[str, str, str], float]) -> pd.DataFrame:
    """A summarised frame of one checkpoint from {(kind, metric, norm): rate}."""
    base = {"checkpoint": "c.pt", "model": "s4", "method": "pgd", "ads": None, "dataset": "digits"}
    rows = [
        base | {"kind": k, "split": "test", "metric": m, "norm": n, "layers": 2,
                "before": 1.0, "after": 1 + r / 100, "rate": r}
        for (k, m, n), r in rates.items()
    ]  # fmt: skip
    return pd.DataFrame(summarise(rows))


def test_verdicts_name_where_plain_and_relative_disagree() -> None:
    summary = summary_rows(
        {
            ("ssm", "mse", "none"): 127.0, ("ssm", "mse", "relative"): -15.0,
            ("ssm", "kl", "none"): 56.0, ("ssm", "kl", "relative"): 10.0,
            ("ssm", "nsr", "none"): -43.0,
            ("linear", "mse", "none"): 840.0, ("linear", "mse", "relative"): 143.0,
            ("linear", "kl", "none"): 335.0, ("linear", "kl", "relative"): 11.0,
            ("linear", "nsr", "none"): 25.0,
        }
    )  # fmt: skip
    table = verdicts(summary)
    assert list(table["kind"]) == ["ssm", "linear"]  # the block's order, not the input's
    ssm, linear = table.iloc[0], table.iloc[1]
    assert ssm["disagree"] == "mse" and linear["disagree"] == ""
    assert ssm["amplification"] == pytest.approx(0.57) and linear["amplification"] == 1.25
    assert list(disagreements(table)["kind"]) == ["ssm"]
    text = to_markdown(table)
    assert "| **+127** | **-15** | +56 | +10 | 0.57 |" in text
    assert "| +840 | +143 | +335 | +11 | **1.25** |" in text
    finding = verdict_finding(table)
    assert "opposite verdicts on 1 of 4" in finding and "SSM 1" in finding
    assert "above 1 for 1 of 1 SSM" not in finding and "1 of 1 linear layer" in finding


def test_robust_gap_at_best_and_last_epoch(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", epochs=6, best_epoch=3)
    gap = robust_gap(read_metrics(run), best=3)
    rows = metrics_rows(6, 3)
    for at, row in (("best", rows[2]), ("last", rows[5])):
        train, test = round(100 * row["train_pgd_acc"], 2), round(100 * row["test_pgd_acc"], 2)
        assert gap[f"train_pgd_{at}"] == train and gap[f"test_pgd_{at}"] == test
        assert gap[f"gap_{at}"] == pytest.approx(train - test)
    assert all(math.isnan(v) for v in robust_gap(pd.DataFrame({"epoch": [1]}), 1).values())


def test_gap_reaches_the_tables_csv_and_the_findings(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "plain", best={"pgd10": 0.5}, last={"pgd10": 0.4})
    wide = write_run(root, "relu", ads="relu", best={"pgd10": 0.5}, last={"pgd10": 0.4})
    rows = metrics_rows(6, 3)
    rows[-1]["train_pgd_acc"] = 0.99  # the AdS run ends further ahead on train
    (wide / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    frame = collect_runs(root)
    assert {"gap_best", "gap_last", "train_pgd_last"} <= set(frame.columns)
    relu = frame[frame["ads"] == "relu"].iloc[0]
    assert relu["gap_last"] == pytest.approx(99.0 - round(100 * rows[-1]["test_pgd_acc"], 2))
    assert "Robust gap Last" in gap_markdown(frame)
    found = gap_findings(frame)
    assert "largest for S4 + ReLU AdS · PGD-AT · Digits" in found[0]
    assert found[1] == (
        "AdS runs have a wider robust gap than the same setting without AdS in 1 of 1 settings."
    )


def test_the_gap_finding_is_per_dataset_and_leaves_out_collapsed_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "digits", best={"pgd10": 0.5}, last={"pgd10": 0.4})
    write_run(root, "mnist", dataset="mnist10k", best={"pgd10": 0.5}, last={"pgd10": 0.4})
    write_run(root, "flat", dataset="mnist10k", model="dss", best={"pgd10": 0.1})
    frame = collect_runs(root)
    frame.loc[frame["model"] == "dss", "collapse"] = "best: constant prediction: class 1"
    found = gap_findings(frame)
    assert [f.split(" of the ")[0] for f in found] == [
        "Robust generalisation gap (train - test PGD-10 at the last epoch) on Digits",
        "Robust generalisation gap (train - test PGD-10 at the last epoch) on MNIST-10k",
    ]
    assert all(" of the 1 adversarially trained runs" in f for f in found)  # not the collapsed
