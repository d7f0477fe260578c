"""The command line end to end on tiny configurations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ssmprobe import data
from ssmprobe.checkpoint import load_checkpoint, load_into
from ssmprobe.cli import main
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.models import build_model
from ssmprobe.train import evaluate


def test_train_writes_a_checkpoint_that_rebuilds_the_model(tmp_path: Path, capsys) -> None:
    args = (
        "train --model dss --ads tanh --epochs 2 --d-model 16 --n-layers 1 --d-state 4 "
        f"--batch-size 128 --steps 1 --train-eval-size 32 --quiet --out {tmp_path}"
    ).split()
    assert main(args) == 0
    assert "clean accuracy" in capsys.readouterr().out
    run = tmp_path / "dss_tanh_digits_st"
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.config["model"] == "dss" and ckpt.config["ads"] == "tanh"
    assert ckpt.meta["dataset"] == "digits" and ckpt.meta["epoch"] == 2
    model = load_into(build_model(ckpt.config), ckpt)
    _, acc = evaluate(model, make_loader(load_dataset("digits", "test"), 256))
    assert acc == pytest.approx(ckpt.meta["metrics"]["test_clean_acc"])
    # The same run again without --resume would overwrite it: refused.
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_bad_input_gives_one_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    def offline(url: str, dest: Path, timeout: float) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(data, "fetch_url", offline)
    code = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ssmprobe: error:")
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path) in err
    with pytest.raises(SystemExit):
        main(["train", "--model", "transformer"])


def test_console_script_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ssmprobe.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--ads" in result.stdout and "--preset" in result.stdout
