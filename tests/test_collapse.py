"""A model that predicts one class for every input is named as collapsed, never as robust: its
clean = PGD accuracy is that class's share of the test samples (MNIST-10k's S4, DSS and S5
PGD-AT runs all predict "1" on 11.35% of the 2,000)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from run_fixtures import write_run
from torch import Tensor, nn

from ssmprobe.attacks import score
from ssmprobe.evaluation.evaluate import evaluate_model, format_results
from ssmprobe.evaluation.sanity import COLLAPSE_FOOTNOTE, COLLAPSE_MARK, collapse_flag
from ssmprobe.interop.wrap import wrap
from ssmprobe.report.findings import accuracy_findings, masking_findings
from ssmprobe.report.runs import RunDirError, collect_runs, read_eval_record
from ssmprobe.report.tables import write_tables


class Constant(nn.Module):
    """Logits that favour `top` whatever the input (a collapsed model)."""

    def __init__(self, top: int, n_classes: int = 10) -> None:
        super().__init__()
        self.head = nn.Linear(1, n_classes)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(torch.eye(n_classes)[top])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x.mean(dim=1))


def test_score_counts_the_predicted_classes() -> None:
    x, y = torch.rand(10, 5, 1), torch.tensor([1, 1, 1, 0, 2, 3, 4, 5, 6, 7])
    scored = score(Constant(1), [(x[:6], y[:6]), (x[6:], y[6:])])
    assert (scored["top_class"], scored["top_share"], scored["acc"]) == (1, 1.0, 0.3)
    # by hand: argmax of x's first step over 3 classes
    x = torch.tensor([[[0.0], [2.0]], [[1.0], [0.0]], [[0.5], [0.0]]])  # (3, 2, 1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    scored = score(model, [(x, torch.tensor([0, 1, 2]))])
    assert (scored["top_class"], scored["top_share"]) == (1, pytest.approx(2 / 3))


@pytest.mark.parametrize(
    ("share", "flagged"), [(1.0, True), (0.99, True), (0.989, False), (0.5, False)]
)
def test_the_flag_needs_one_class_on_99_percent(share: float, flagged: bool) -> None:
    flag = collapse_flag(1, share, 2000)
    assert (flag is not None) == flagged
    if flagged:
        assert flag.startswith(f"constant prediction: class 1 for {100 * share:.1f}% of 2000")


def test_eval_records_the_prediction_and_warns() -> None:
    x, y = torch.rand(20, 4, 1), torch.arange(20) % 10
    model = wrap(Constant(3), {"linear": "head"}, eps=0.1)
    record = evaluate_model(model, (x, y), ["fgsm"], progress=False)
    assert record["prediction"] == {"top_class": 3, "top_share": 1.0}
    assert record["results"] == {"clean": 0.1, "fgsm": 0.1}
    assert "warning: collapsed: constant prediction: class 3" in format_results(record)
    assert "collapsed" not in format_results({**record, "prediction": None})  # older records


def _collapsed_run(runs: Path) -> None:
    """MNIST-10k's pattern: ST learns and breaks, PGD-AT predicts "1" for everything."""
    write_run(runs, "st", method="st", best={"clean": 0.6, "pgd10": 0.01},
              last={"clean": 0.6, "pgd10": 0.014})  # fmt: skip
    write_run(runs, "pgd", method="pgd", best={"clean": 0.1135, "pgd10": 0.1135},
              last={"clean": 0.1135, "pgd10": 0.1135})  # fmt: skip
    for which in ("best", "last"):
        path = runs / "pgd" / f"eval_{which}.json"
        payload = json.loads(path.read_text())
        payload["prediction"] = {"top_class": 1, "top_share": 1.0}
        path.write_text(json.dumps(payload))


def test_tables_and_findings_name_the_collapse_not_a_robustness_gain(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _collapsed_run(runs)
    frame = collect_runs(runs)
    flags = frame.set_index("method")["collapse"]
    assert flags["st"] == "" and flags["pgd"].startswith("best: constant prediction: class 1")
    md = write_tables(frame, tmp_path / "out")["md"].read_text()
    assert f"PGD-AT {COLLAPSE_MARK}" in md and COLLAPSE_FOOTNOTE in md
    assert not any("raised" in f for f in accuracy_findings(frame))
    (collapse,) = [f for f in masking_findings(frame) if "collapsed" in f]
    assert collapse.startswith("1 row(s) collapsed to a constant prediction (S4 · PGD-AT")
    # A run that learned is still compared with ST.
    for which in ("best", "last"):
        path = runs / "pgd" / f"eval_{which}.json"
        payload = json.loads(path.read_text())
        payload["prediction"] = {"top_class": 1, "top_share": 0.2}
        path.write_text(json.dumps(payload))
    frame = collect_runs(runs)
    (raised,) = accuracy_findings(frame)
    assert raised.startswith("PGD-AT raised S4's PGD-10 accuracy")
    # No gain is no "raise" (MNIST-10k's S5 TRADES: 0.0% after ST's 0.0%).
    st = frame.loc[frame["method"] == "st", "pgd10_last"].iloc[0]
    for pgd, verb, then in ((st, "left", f"at {st:.1f}%"), (0.0, "lowered", "from ")):
        frame.loc[frame["method"] == "pgd", "pgd10_best"] = pgd
        (said,) = accuracy_findings(frame)
        assert said.startswith(f"PGD-AT {verb} S4's PGD-10 accuracy on Digits {then}")


def test_a_malformed_prediction_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "eval_best.json"
    path.write_text(json.dumps({"n": 10, "results": {}, "prediction": {"top_class": "1"}}))
    with pytest.raises(RunDirError, match='"prediction" must hold a top_class'):
        read_eval_record(path)


def test_the_component_finding_is_of_a_model_that_learned() -> None:
    """The discrepancy sentence names a collapsed checkpoint only when no other was probed,
    and then says so."""
    import pandas as pd

    from ssmprobe.report.findings import compute_findings

    flag = "best: constant prediction: class 1 for 100.0% of 2000 test samples"
    frame = pd.DataFrame(
        [
            {"run": "s4_pgd", "dataset": "mnist10k", "model": "s4", "method": "pgd",
             "ads": "none", "clean_best": 11.35, "pgd10_best": 11.35, "aa_best": None,
             "masking": "", "aa_checks": "", "collapse": flag},
            {"run": "s4_trades", "dataset": "mnist10k", "model": "s4", "method": "trades",
             "ads": "none", "clean_best": 60.0, "pgd10_best": 5.0, "aa_best": None,
             "masking": "", "aa_checks": "", "collapse": ""},
        ]
    )  # fmt: skip
    rows = [
        {"checkpoint": f"/r/{run}/best.pt", "model": "s4", "method": method, "ads": None,
         "split": "test", "metric": "kl", "norm": "none", "kind": "ssm", "layers": 2,
         "rate": rate}
        for run, method, rate in (("s4_pgd", "pgd", 82.0), ("s4_trades", "trades", 30.0))
    ]  # fmt: skip
    (sentence,) = [f for f in compute_findings(frame, pd.DataFrame(rows), []) if "KL" in f]
    assert sentence.startswith("S4 TRADES, adversarial test inputs: the SSM raises KL by 30%")
    only = compute_findings(frame, pd.DataFrame(rows[:1]), [])
    (sentence,) = [f for f in only if "KL" in f]
    assert sentence.startswith("S4 PGD-AT (collapsed to a constant prediction), adversarial")
