"""`ssmprobe report` on your own model (`report.model.model_report`): the same accuracy,
discrepancy and bounds as each analysis run alone, gathered into report.md / report.html."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from local_s4d import LocalS4D
from torch import nn

import ssmprobe
from ssmprobe.bounds.check import check_wrapped
from ssmprobe.cli import main
from ssmprobe.evaluation.evaluate import evaluate_model
from ssmprobe.probe.discrepancy import discrepancy
from ssmprobe.report.build import ReportOptions
from ssmprobe.report.model import model_report

N = 12


class S4DNet(nn.Module):
    """Two residual state-spaces S4D layers between a linear encoder and a mean-pooled head."""

    def __init__(self, d: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.enc = nn.Linear(1, d)
        self.layers = nn.ModuleList(LocalS4D(d, 4) for _ in range(2))
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x).transpose(1, 2)  # S4D is channels-first
        for layer in self.layers:
            h = h + layer(h)
        return self.head(h.mean(-1))


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = ssmprobe.wrap(S4DNet(), {"ssm": "layers.*"}, eps=0.1)
    g = torch.Generator().manual_seed(1)
    return model, (torch.rand(N, 16, 1, generator=g), torch.randint(0, 3, (N,), generator=g))


OPTIONS = ReportOptions(attacks=("pgd10",), n_eval=N, n_probe=N, progress=False)


def test_the_report_gathers_what_each_analysis_gives_alone(setup, tmp_path: Path) -> None:
    model, data = setup
    result = model_report(model, data, tmp_path, OPTIONS, log=lambda _: None)
    alone = evaluate_model(model, data, ["pgd10"], n=N, progress=False)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["results"] == alone["results"]
    rows = pd.read_csv(tmp_path / "discrepancy.csv")
    want = pd.DataFrame(discrepancy(model, data=data, n=N, progress=False).rows)
    assert len(rows) == len(want) > 0
    assert rows["rate"].to_numpy() == pytest.approx(want["rate"].to_numpy(), rel=1e-6, nan_ok=True)
    bounds = json.loads((tmp_path / "bounds.json").read_text())
    check = check_wrapped(model, data, L=16, eps=0.1, n=N)
    assert bounds["summary"] == json.loads(json.dumps(check.summary))
    report = result.report_md.read_text()
    for title in ("Accuracy of S4DNet", "Figure 3", "Verdicts", "Per-position", "Theorem 4.1.1"):
        assert f"## {title}" in report
    clean = 100 * alone["results"]["clean"]
    assert f"clean {clean:.1f}%" in result.findings[0]
    assert "kernel-form upper bound held on" in result.findings[-1]
    linked = [line.split("](")[1].rstrip(")") for line in report.splitlines() if "![" in line]
    assert linked and all((tmp_path / path).is_file() for path in linked)
    assert {p.name for p in (tmp_path / "bounds").iterdir()} >= {"bounds_S4DNet.png"}
    html = result.report_html.read_text()
    assert '">Theorem 4.1.1 on S4DNet&#x27;s SSM layers</h2>' in html  # escaped, with its anchor


def test_a_model_without_readable_ssm_layers_says_so(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ssmprobe.wrap(
        nn.Sequential(nn.Linear(1, 4), nn.GRU(4, 4, batch_first=True), SelectLast()),
        {"ssm": "1"},
        eps=0.1,
    )
    data = (torch.rand(N, 8, 1), torch.randint(0, 4, (N,)))
    result = model_report(model, data, tmp_path, OPTIONS, log=lambda _: None)
    assert result.findings[-1] == (
        "Sequential has no SSM component a reader knows: Theorem 4.1.1 not checked."
    )
    assert "Theorem" not in (tmp_path / "report.md").read_text().split("\n## ", 1)[1]
    assert not (tmp_path / "bounds.json").exists()


class SelectLast(nn.Module):
    def forward(self, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return out[0][:, -1]


MODEL = """
import torch
from local_s4d import LocalS4D
from test_model_report import S4DNet


def factory():
    torch.manual_seed(0)
    return S4DNet()


def data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(12, 16, 1, generator=g), torch.randint(0, 3, (12,), generator=g)
"""


def test_report_on_the_command_line(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "mine.py").write_text(MODEL)
    (tmp_path / "spec.toml").write_text('eps = 0.1\n[components]\nssm = "layers.*"\n')
    monkeypatch.chdir(tmp_path)
    user = ["--model", "mine.py:factory", "--components", "spec.toml", "--data", "mine.py:data"]
    sizes = ["--attack", "pgd10", "--n", "12", "--n-probe", "12", "--jobs", "1", "--quiet"]
    assert main(["report", *user, *sizes]) == 0
    out = capsys.readouterr().out
    assert "kernel-form upper bound held on" in out
    assert (tmp_path / "report_factory" / "report.html").is_file()
    assert not (tmp_path / "runs").exists()  # nothing of a runs report
    assert main(["report", "--data", "mine.py:data"]) == 2
    assert "go with --model" in capsys.readouterr().err
