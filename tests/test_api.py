"""The Python API a notebook user calls (`ssmprobe.load_model`, `list_models`, `attack`), the
`ssmprobe zoo` table, a bundled model driven by another library (ART), and the command line's
conventions: exit codes 1 / 2 / 130, progress on stderr, `python -m ssmprobe`."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ssmprobe
from ssmprobe.cli import main

BUNDLE = Path(__file__).resolve().parent.parent / "checkpoints"
MANIFEST = json.loads((BUNDLE / "manifest.json").read_text())


def test_list_models_is_the_manifest() -> None:
    zoo = ssmprobe.list_models()
    assert len(zoo) == len(MANIFEST) == 36
    for entry in zoo:
        recorded = MANIFEST[f"{entry.name}.pt"]
        assert (entry.clean, entry.pgd10, entry.aa) == tuple(
            recorded["accuracy"][k] for k in ("clean", "pgd10", "aa")
        )
        assert entry.family == recorded["model"]["model"] and entry.method == recorded["method"]
    assert {e.family for e in zoo} == {"s4", "dss", "s5", "mega", "mamba"}
    assert {e.dataset for e in zoo} == {"digits", "mnist10k"}
    mnist = [e for e in zoo if e.dataset == "mnist10k"]
    # its plain PGD-AT runs collapsed, never bundled; PGD-AT with the ReLU AdS learned
    assert {e.ads for e in mnist if e.method == "pgd"} == {"relu"}
    assert {(e.n_test, e.eps, e.n_by_attack["aa"]) for e in mnist} == {(2000, 0.3, 100)}


def test_the_docs_count_the_zoo_as_the_manifest_does() -> None:
    """README and docs state the zoo's size in several places; each must match the manifest
    (test_readme checks only the README's quickstart comment)."""
    import re
    from collections import Counter

    by_dataset = Counter(entry["dataset"] for entry in MANIFEST.values())
    pages = [BUNDLE.parent / "README.md", *sorted((BUNDLE.parent / "docs").glob("*.md"))]
    claims = 0
    for page in pages:
        text = page.read_text()
        for total in re.findall(r"(\d+) bundled checkpoints", text):
            assert int(total) == len(MANIFEST), f"{page.name}: {total} bundled checkpoints"
            claims += 1
        for digits, mnist10k in re.findall(r"(\d+) on digits, (\d+) on MNIST-10k", text):
            assert (int(digits), int(mnist10k)) == (by_dataset["digits"], by_dataset["mnist10k"])
            claims += 1
    assert claims >= 4, "the pages no longer state the zoo's size where this test looks"


def test_the_zoo_command_prints_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 36
    dss = next(line.split() for line in lines if line.startswith("dss_pgd "))
    assert dss[-5:-2] == ["98.89", "92.22", "91.94"]  # clean, PGD-10, AA in %
    s4 = next(line for line in lines if line.startswith("s4_mnist10k_trades "))
    assert "MNIST-10k" in s4 and s4.endswith("0.3  2000 (aa 100)")


def test_load_model_and_attack_read_like_robustbench_and_torchattacks() -> None:
    model = ssmprobe.load_model("dss_pgd")
    assert not model.training and model.meta["dataset"] == "digits"
    x, y = ssmprobe.load_dataset("digits", "test").head(16)[:]
    x_adv = ssmprobe.attack(model, x, y, "pgd10")  # the checkpoint's training ε: 0.1
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # An attack that returned x (or a random point) would fail here: the budget is used and
    # the true class's loss rises on every sample.
    assert (x_adv - x).abs().max() > 0.09
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy
        clean, adv = loss(model(x), y, reduction="none"), loss(model(x_adv), y, reduction="none")
        assert (adv > clean).all()
        assert (model(x_adv).argmax(-1) == y).sum() <= (model(x).argmax(-1) == y).sum()
    bare = ssmprobe.build_model(model.meta["config"])
    with pytest.raises(ValueError, match="eps is needed"):
        ssmprobe.attack(bare, x, y)


def test_a_bundled_model_works_as_is_with_art() -> None:
    """ART wraps it with the sequence's own shape (L, C) = (64, 1); its PGD stays in budget and
    lowers the accuracy like ours."""
    art = pytest.importorskip("art.estimators.classification")
    from art.attacks.evasion import ProjectedGradientDescent

    model = ssmprobe.load_model("dss_pgd")
    x, y = ssmprobe.load_dataset("digits", "test").head(32)[:]
    classifier = art.PyTorchClassifier(
        model, torch.nn.CrossEntropyLoss(), input_shape=(64, 1), nb_classes=10,
        clip_values=(0.0, 1.0),
    )  # fmt: skip
    pgd = ProjectedGradientDescent(
        classifier, norm=np.inf, eps=0.1, eps_step=0.025, max_iter=10, verbose=False
    )
    x_adv = pgd.generate(x.numpy())
    assert np.abs(x_adv - x.numpy()).max() <= 0.1 + 1e-6
    clean = (classifier.predict(x.numpy()).argmax(1) == y.numpy()).mean()
    robust = (classifier.predict(x_adv).argmax(1) == y.numpy()).mean()
    assert robust < clean


def test_a_bundled_file_whose_hash_differs_is_refused(tmp_path: Path, monkeypatch) -> None:
    from ssmprobe import checkpoint

    shutil.copy(BUNDLE / "manifest.json", tmp_path / "manifest.json")
    shutil.copy(BUNDLE / "s5_pgd.pt", tmp_path / "s5_pgd.pt")
    with (tmp_path / "s5_pgd.pt").open("r+b") as f:
        f.seek(-200, 2)
        byte = f.read(1)
        f.seek(-200, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(checkpoint, "bundled_dir", lambda: tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="SHA-256"):
        ssmprobe.load_model("s5_pgd")


def test_exit_codes_tell_a_failure_from_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--ckpt", str(tmp_path / "missing.pt")]) == 1  # the work failed
    assert main(["eval", "--ckpt", "dss_pgd", "--eps", "1.5"]) == 2  # a value it cannot take
    for argv in (["eval", "--no-such-flag"], ["eval", "--ckpt", "dss_pgd", "--n", "0"]):
        assert main(argv) == 2  # refused by the parser itself
    err = capsys.readouterr().err
    assert "ssmprobe: error: checkpoint not found" in err and "Traceback" not in err


def test_ctrl_c_exits_130_with_one_line_on_how_to_resume(tmp_path: Path) -> None:
    args = ["train", "--model", "s5", "--d-model", "8", "--n-layers", "1", "--epochs", "50"]
    command = [sys.executable, "-m", "ssmprobe", *args, "--out", str(tmp_path), "--name", "r"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a test run started in the background (nohup, `&`) passes SIGINT
        # on ignored, and Python then leaves it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ssmprobe: interrupted;") and "--resume" in last
    assert "epoch 1/50" in err and out == ""  # progress on stderr, nothing on stdout


def test_python_dash_m_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ssmprobe", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == f"ssmprobe {ssmprobe.__version__}"
