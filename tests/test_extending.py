"""Extended by adding, not by editing: tests/plugins/toy_extensions.py registers an attack, a
discrepancy metric and an LTI family from outside the package, and every command downstream
knows them (issue 40). Each command runs as a user runs it: a fresh `ssmprobe` process that
loads the plugin named in $SSMPROBE_PLUGINS."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
TINY = ["--d-model", "8", "--n-layers", "1", "--d-state", "4", "--epochs", "1"]
TINY += ["--batch-size", "256", "--quiet"]


def ssmprobe(*args: str, cwd: Path, python: bool = False) -> subprocess.CompletedProcess:
    env = os.environ | {
        "SSMPROBE_PLUGINS": "toy_extensions",
        "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, *([] if python else ["-m", "ssmprobe"]), *args], cwd=cwd, env=env,
        capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_the_attack_is_in_help_eval_and_its_table_title(tmp_path: Path) -> None:
    shown = " ".join(ssmprobe("eval", "--help", cwd=tmp_path).stdout.split())  # unwrapped
    assert "rfgsm (FGSM from a random start" in shown
    ssmprobe("eval", "--ckpt", "dss_pgd", "--attack", "rfgsm,fgsm", "--n", "32", "--out",
             "e.json", cwd=tmp_path)  # fmt: skip
    results = json.loads((tmp_path / "e.json").read_text())["results"]
    assert set(results) == {"clean", "rfgsm", "fgsm"}
    assert results["rfgsm"] < results["clean"]  # it attacks


def test_the_metric_reaches_the_csv_the_verdicts_and_figure_3(tmp_path: Path) -> None:
    ssmprobe("discrepancy", "--ckpt", "dss_pgd", "--n", "8", "--split", "test", "--out", "d.csv",
             cwd=tmp_path)  # fmt: skip
    with (tmp_path / "d.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "cos"]
    assert {r["kind"] for r in rows} == {"ssm", "linear", "norm"}  # DSS's components
    assert all(float(r["before"]) >= 0 and r["norm"] == "none" for r in rows)
    verdict = ssmprobe("-c", "from ssmprobe.probe.discrepancy import load_rows, summarise; "
                       "from ssmprobe.probe.verdicts import verdicts, to_markdown; "
                       "import pandas as pd; rows = load_rows(['d.csv']).to_dict('records'); "
                       "print(to_markdown(verdicts(pd.DataFrame(summarise(rows)))))",
                       cwd=tmp_path, python=True).stdout  # fmt: skip
    assert verdict.splitlines()[0].endswith("| MSE plain | MSE relative | KL plain | KL relative "
                                            "| COS plain | amplification |")  # fmt: skip
    ssmprobe("plot", "discrepancy", "d.csv", "--out", "figs", cwd=tmp_path)
    from PIL import Image

    with Image.open(tmp_path / "figs" / "figure3_discrepancy.png") as image:
        width = image.size[0]  # three metric panels, wider than the two-panel figure
    assert width > 1.3 * 870


def test_the_family_trains_and_its_bounds_are_checked(tmp_path: Path) -> None:
    assert "realdiag" in ssmprobe("train", "--help", cwd=tmp_path).stdout
    ssmprobe("train", "--model", "realdiag", *TINY, "--out", "runs", "--name", "r", cwd=tmp_path)
    ckpt = tmp_path / "runs" / "r" / "last.pt"
    ssmprobe("bounds", "--ckpt", str(ckpt), "--L", "32", "--out", "b.csv", cwd=tmp_path)
    with (tmp_path / "b.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8  # one per channel of the one layer
    assert all(r["kernel_upper_holds"] == "True" for r in rows)


def test_registering_in_python_and_what_a_bad_one_says() -> None:
    from ssmprobe.attacks import ATTACKS, parse_attack, register_attack
    from ssmprobe.models import FAMILIES, register_family

    @register_attack("noop-test", "returns x")
    def noop(model, x, y, config, generator, seed):
        return x

    try:
        config = parse_attack("noop-test", "digits")
        assert (config.eps, config.label) == (0.1, "noop-test")
        assert config.kind.column(None) == "NOOP-TEST"
    finally:
        del ATTACKS["noop-test"]
    with pytest.raises(ValueError, match="lower-case"):
        register_attack("Bad Name", "x")
    with pytest.raises(ValueError, match="lower-case identifier"):
        register_family("Bad-Name")
    assert "realdiag" not in FAMILIES  # the plugin ran in its own processes only


def test_a_plugin_that_fails_is_one_line(tmp_path: Path) -> None:
    env = os.environ | {"SSMPROBE_PLUGINS": "no_such_plugin_module"}
    done = subprocess.run([sys.executable, "-m", "ssmprobe", "eval", "--help"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "ssmprobe: error: cannot import the plugin 'no_such_plugin_module' named in "
        "$SSMPROBE_PLUGINS: ModuleNotFoundError: No module named 'no_such_plugin_module'"
    )
