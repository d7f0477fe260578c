"""The command line end to end on tiny configurations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssmprobe import download
from ssmprobe.attacks import score
from ssmprobe.checkpoint import load_checkpoint, load_into
from ssmprobe.cli import main
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.loading import load_model
from ssmprobe.models import build_model


def test_train_writes_a_checkpoint_that_rebuilds_the_model(tmp_path: Path, capsys) -> None:
    args = (
        "train --model dss --ads tanh --epochs 2 --d-model 16 --n-layers 1 --d-state 4 "
        f"--batch-size 128 --steps 1 --train-eval-size 32 --quiet --out {tmp_path}"
    ).split()
    assert main(args) == 0
    assert "clean accuracy" in capsys.readouterr().out
    run = tmp_path / "dss_st_ads-tanh_digits"
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.config["model"] == "dss" and ckpt.config["ads"] == "tanh"
    assert ckpt.meta["dataset"] == "digits" and ckpt.meta["epoch"] == 2
    model = load_into(build_model(ckpt.config), ckpt)
    acc = score(model, make_loader(load_dataset("digits", "test"), 256))["acc"]
    assert acc == pytest.approx(ckpt.meta["metrics"]["test_clean_acc"])
    # The same run again without --resume would overwrite it: refused.
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume of a run that does not exist (a mistyped name) would start afresh: refused.
    assert main([*args, "--resume", "--name", "dss_sst_ads-tanh_digits"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "dss_sst_ads-tanh_digits").exists()


def test_bad_input_gives_one_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    def offline(url: str, dest: Path, timeout: float) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(download, "fetch_url", offline)
    code = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("ssmprobe: error:")  # the work failed: exit 1
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path) in err
    assert main(["train", "--model", "transformer"]) == 2  # a usage error


def test_console_script_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ssmprobe", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--ads" in result.stdout and "--preset" in result.stdout


@pytest.mark.slow
def test_train_eval_table_report_end_to_end(tmp_path: Path, capsys) -> None:
    """train -> eval (best, last) -> table -> report, as a user runs them."""
    runs = tmp_path / "runs"
    common = "--d-model 16 --n-layers 1 --d-state 4 --batch-size 128 --steps 2 --quiet"
    for method in ("st", "trades"):
        assert (
            main(
                f"train --model s5 --method {method} --epochs 2 --train-eval-size 32 "
                f"--test-eval-size 64 {common} --out {runs}".split()
            )
            == 0
        )
    run = runs / "s5_trades_digits"
    for ckpt in ("best", "last"):
        assert (
            main(
                [
                    "eval",
                    "--ckpt",
                    str(run / f"{ckpt}.pt"),
                    "--attack",
                    "pgd10,aa-fast",
                    "--n",
                    "24",
                    "--quiet",
                ]
            )
            == 0
        )
    out = capsys.readouterr().out
    assert "best.pt (digits, n=24): clean" in out and "aa-fast" in out
    record = json.loads((run / "eval_best.json").read_text())
    assert record["n"] == 24 and record["eps"] == 0.1
    assert set(record["results"]) == {"clean", "pgd10", "aa-fast"}
    assert record["results"]["aa-fast"] <= record["results"]["clean"]

    assert main(["table", str(runs)]) == 0
    table = capsys.readouterr().out
    assert "TRADES" in table and "S5" in table
    report = f"report --runs {runs} --out {tmp_path / 'fig'} --attack pgd10,aa-fast --n 24"
    assert main([*report.split(), "--n-probe", "16", "--quiet"]) == 0
    for method in ("st", "trades"):
        assert (tmp_path / "fig" / f"curves_digits_{method}.png").stat().st_size > 10_000
    assert {p.name for p in (tmp_path / "fig").iterdir()} >= {"table.md", "table.csv", "table.tex"}
    assert main(["eval", "--ckpt", str(tmp_path / "missing.pt")]) == 1
    assert "missing.pt" in capsys.readouterr().err


def test_train_ads_form_jac(tmp_path: Path, capsys) -> None:
    args = "train --model dss --ads tanh --ads-form jac --epochs 1 --d-model 8 --n-layers 1"
    args += f" --d-state 4 --train-eval-size 16 --test-eval-size 16 --quiet --out {tmp_path}"
    assert main(args.split()) == 0
    model = load_model(tmp_path / "dss_st_ads-tanh_digits" / "last.pt")
    meta = model.meta
    assert meta["config"]["ads_form"] == "jac"
    names = {name for name, _ in model.named_parameters()}
    assert {"layers.0.ads.scale.bias", "layers.0.ads.bias.weight"} <= names
    # 0.2.0's name for the form is refused before any work (its checkpoints still load)
    assert main(args.replace("jac", "reference").split()) == 2
    assert "invalid choice: 'reference'" in capsys.readouterr().err


def test_eval_out_keeps_the_record_away_from_the_checkpoint(tmp_path: Path, capsys) -> None:
    from ssmprobe.checkpoint import bundled_dir

    out = tmp_path / "records" / "s5_st.json"
    args = ["eval", "--ckpt", str(bundled_dir() / "s5_st.pt"), "--attack", "fgsm", "--n", "8"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    assert f"written: {out}" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["checkpoint"] == "s5_st.pt" and set(record["results"]) == {"clean", "fgsm"}
    assert not (bundled_dir() / "eval_s5_st.json").exists()
