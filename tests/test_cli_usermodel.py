"""Your own model on the command line: inspect, discrepancy and eval with --model
path/file.py:factory, --components spec.toml and --data; each misfit one `ssmprobe: error:`
line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssmprobe.cli import main

MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(1, 8)
        self.layers = nn.ModuleList(nn.GRU(8, 8, batch_first=True) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(8) for _ in range(2))
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        h = self.enc(x)
        for gru, norm in zip(self.layers, self.norms):
            h = norm(h + gru(h)[0])
        return self.head(h.mean(1))


def factory():
    torch.manual_seed(0)
    return Net()


def broken():
    raise RuntimeError("no GPU here")


def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 12, 1, generator=g), torch.randint(0, 10, (8,), generator=g)
"""
SPEC = 'eps = 0.1\n[components]\nssm = "layers.*"\nnorm = "norms.*"\n'


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "mymodel.py").write_text(MODEL)
    (tmp_path / "spec.toml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*argv: str) -> int:
    return main(list(argv))


USER = ["--model", "mymodel.py:factory", "--components", "spec.toml", "--data", "mymodel.py:data"]


def test_inspect_lists_every_match_and_checks_a_forward(user: Path, capsys) -> None:
    assert run("inspect", *USER) == 0
    out = capsys.readouterr().out
    assert out.count("GRU") == 2 and out.count("LayerNorm") == 2
    assert "reader: none (no bounds)" in out and "every component ran once" in out


def test_discrepancy_and_eval_of_a_user_model(user: Path, capsys) -> None:
    assert run("discrepancy", *USER, "--n", "8", "--out", "d.csv", "--quiet") == 0
    rows = (user / "d.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 5 and "layers.0" in rows[1]  # 4 components x 5 measures
    assert run("eval", *USER, "--attack", "pgd10", "--out", "e.json", "--quiet") == 0
    record = json.loads((user / "e.json").read_text())
    assert record["n"] == 8 and set(record["results"]) == {"clean", "pgd10"}
    assert run("attribute", *USER, "--n", "4", "--ig-steps", "4", "--out", "a", "--quiet") == 0
    shares = json.loads((user / "a" / "attributions_Net_ig.json").read_text())["components"]
    assert [c["name"] for c in shares] == ["layers.0", "norms.0", "layers.1", "norms.1"]
    assert shares[-1]["share"] == pytest.approx(1.0, abs=1e-4)  # every path crosses the last norm


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--model", "mymodel.py:nope"], "mymodel.py has no 'nope'"),
        (["--model", "missing.py:factory"], "no such file missing.py"),
        (["--model", "no_such_pkg.mod:factory"], "importing no_such_pkg.mod failed"),
        (["--model", "mymodel.py:broken"], "the factory raised RuntimeError"),
        (["--components", "none.toml"], "none.toml: no such file"),
        (["--data", "missing.npz"], "no such data file"),
        (["--weights", "w.pt"], "does not fit the model"),
    ],
)
def test_each_misfit_is_one_error_line(user: Path, capsys, change, message) -> None:
    torch.save({"other.weight": torch.zeros(1)}, user / "w.pt")
    argv = list(USER)
    flag = change[0]
    if flag in argv:
        argv[argv.index(flag) + 1] = change[1]
    else:
        argv += change
    before = sorted(p.name for p in user.iterdir())
    assert run("discrepancy", *argv, "--out", "d.csv", "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssmprobe: error:") and message in err[0]
    assert sorted(p.name for p in user.iterdir() if p.name != "__pycache__") == [
        b for b in before if b != "__pycache__"
    ]


def test_a_spec_without_components_and_a_pattern_matching_nothing(user: Path, capsys) -> None:
    (user / "spec.toml").write_text("eps = 0.1\n")
    assert run("inspect", *USER) == 2
    assert "has no [components] table" in capsys.readouterr().err
    (user / "spec.toml").write_text('[components]\nssm = "layer.*"\n')
    assert run("inspect", *USER) == 2
    assert "matches no module of the model; closest: layers" in capsys.readouterr().err


def test_bounds_on_a_user_model(user: Path, capsys) -> None:
    """A GRU has no SSM parameters a reader knows: one error line; a state-spaces S4D block
    (tests/test_readers.py) is read and checked."""
    assert run("bounds", *USER[:4], "--out", "b.csv") == 2
    assert "no `ssm` component whose parameters a reader knows" in capsys.readouterr().err
    tests = Path(__file__).resolve().parent
    (user / "s4dmodel.py").write_text(
        f"import sys\nsys.path.insert(0, {str(tests)!r})\n"
        "import torch\nfrom test_readers import LocalS4D\n\n\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.encoder, self.block = torch.nn.Linear(1, 6), LocalS4D(6, 8)\n"
        "        self.head = torch.nn.Linear(6, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.head(self.block(self.encoder(x).transpose(1, 2)).mean(-1))\n\n\n"
        "def build():\n    return M()\n"
    )
    (user / "s4d.toml").write_text('layout = "bdl"\n[components]\nssm = "block"\n')
    argv = ["--model", "s4dmodel.py:build", "--components", "s4d.toml", "--L", "16"]
    assert run("bounds", *argv, "--mu", "0.05", "--out", "b.csv", "--quiet") == 0
    rows = (user / "b.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[1].startswith("block,")  # one row per channel
