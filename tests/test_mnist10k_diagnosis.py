"""analysis/mnist10k_diagnosis.py: each explanation for PGD accuracy above clean is flagged on a
model built to have it, a plain model gets none, and the script writes and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from analysis_scripts import load_analysis
from run_fixtures import write_run
from torch import Tensor, nn

from ssmprobe.checkpoint import save_checkpoint
from ssmprobe.models import build_model, model_config

LENGTH = 16


def load_script():
    return load_analysis("mnist10k_diagnosis")


class Constant(nn.Module):
    """The same logits for every input (class 9); its input gradient is exactly 0."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.arange(10.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.bias + 0 * x.sum((1, 2))[:, None]


class Linear(nn.Module):
    """A linear classifier, on inputs rounded to quarters with `quantise` (round's gradient is 0
    everywhere, while the predictions still depend on the input)."""

    def __init__(self, quantise: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(LENGTH, 10)
        self.quantise = quantise

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        return self.linear((4 * x).round() / 4 if self.quantise else x)


def _data(n: int = 12) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, LENGTH, 1, generator=generator), torch.arange(n) % 10


def _diagnose(model: nn.Module) -> dict:
    x, y = _data()
    return load_script().diagnose(model, x, y, 0.3, 0.04, square_queries=50, batch_size=5)


def test_a_constant_model_is_collapsed() -> None:
    record = _diagnose(Constant())
    assert record["clean"]["collapsed"] and record["clean"]["top_class"] == 9
    assert record["clean"]["top_share"] == 1.0 and record["clean"]["logit_std_max"] == 0.0
    assert record["clean"]["histogram"] == [0] * 9 + [12]
    # robust = clean: nothing changes a constant
    assert record["label_leak"]["pgd10_true"] == record["clean"]["acc"] == 1 / 12
    assert record["pgd100x5"]["acc"] == record["square"]["acc"] == 1 / 12
    assert record["verdict"]["explanations"][0] == "collapse"
    assert not record["verdict"]["pgd_above_clean"]
    assert set(record["seconds"]) == {"clean", "label_leak", "pgd100x5", "gradients", "square"}


def test_a_zero_gradient_is_masking() -> None:
    record = _diagnose(Linear(quantise=True))
    assert not record["clean"]["collapsed"]
    assert record["gradients"]["zero_share"] == record["gradients"]["tiny_share"] == 1.0
    assert record["verdict"]["explanations"] == ["masking"]


def test_a_plain_model_has_no_explanation() -> None:
    record = _diagnose(Linear(quantise=False))
    assert record["gradients"]["zero_share"] == 0.0
    assert record["verdict"]["explanations"] == ["none"]
    assert record["pgd100x5"]["acc"] <= record["label_leak"]["pgd10_true"]
    assert len(record["pgd100x5"]["acc_after_restart"]) == 5


def test_label_leaking_is_read_off_the_two_pgd_runs() -> None:
    record = _diagnose(Linear(quantise=False))
    record["clean"]["acc"] = 0.5
    record["label_leak"] = {"pgd10_true": 0.99, "pgd10_pred": 0.02}
    found = load_script().verdict(record)
    assert found["pgd_above_clean"] and found["explanations"] == ["label leaking"]
    assert "own prediction gives 2.0%" in found["finding"]


def test_square_breaking_what_pgd_left_is_masking_with_its_numbers() -> None:
    record = _diagnose(Linear(quantise=False))
    record["pgd100x5"]["acc"] = 0.58
    record["square"] |= {"acc": 0.5, "only_square": 0.09}
    found = load_script().verdict(record)
    assert found["explanations"] == ["masking"]
    square = "Square, which uses no gradient, breaks 9.0% of the points PGD-100 x 5 leaves robust"
    assert square in found["finding"]
    assert "(PGD-100 x 5 58.0%, Square alone 50.0%;" in found["finding"]
    assert "0% exactly 0)" in found["finding"] and "are exactly 0" not in found["finding"]


def _run(runs: Path, name: str) -> None:
    """A finished run folder of a tiny untrained DSS on the digits (best.pt = last.pt)."""
    folder = write_run(runs, name, model="dss", best={"clean": 0.1}, last={"clean": 0.1})
    config = model_config("dss", preset="digits", d_model=4, n_layers=1, d_state=2)
    torch.manual_seed(0)
    state = build_model(config).state_dict()
    meta = {"dataset": "digits", "method": "pgd", "train": {"eps": 0.1, "alpha": 0.025}}
    for which in ("best", "last"):
        save_checkpoint(folder / f"{which}.pt", config.to_dict(), state, meta)


def test_the_script_writes_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = load_script()
    runs, out = tmp_path / "runs", tmp_path / "out"
    _run(runs, "dss_pgd")
    write_run(runs, "s4_pgd", dataset="digits", epochs=None)  # config.json only: training
    argv = ["--runs", str(runs), "--out", str(out), "--n", "4", "--square-queries", "10"]
    script.main([*argv, "--only", "dss_pgd,s4_pgd"])
    err = capsys.readouterr().err
    assert "skipping s4_pgd: no finished epoch" in err and "dss_pgd/last: square done in" in err
    records = json.loads((out / "diagnosis.json").read_text())
    assert set(records) == {"dss_pgd/best", "dss_pgd/last"}
    best = records["dss_pgd/best"]
    assert (best["n"], best["eps"], best["alpha"], best["square_queries"]) == (4, 0.1, 0.025, 10)
    assert best["verdict"]["finding"] in (out / "diagnosis.md").read_text()
    script.main([*argv, "--checkpoint", "best"])
    assert "dss_pgd/best: done before with n = 4, skipped" in capsys.readouterr().err
    assert json.loads((out / "diagnosis.json").read_text()) == records
    # a skipped checkpoint's verdict is read again from its numbers by the rules of today
    stale = json.loads(json.dumps(records))
    stale["dss_pgd/best"]["verdict"] = {"finding": "stale", "explanations": []}
    (out / "diagnosis.json").write_text(json.dumps(stale))  # by hand: --force to replace it
    script.main([*argv, "--checkpoint", "best", "--force"])
    assert json.loads((out / "diagnosis.json").read_text())["dss_pgd/best"] == best
    assert "stale" not in (out / "diagnosis.md").read_text()
    with pytest.raises(SystemExit):
        script.main([*argv, "--only", "mamba_pgd"])
