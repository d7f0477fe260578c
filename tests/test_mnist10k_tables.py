"""analysis/mnist10k_tables.py on a hand-built folder of MNIST-10k runs: ours beside the
paper's numbers, n per attack, "unfinished" and "not run" rows, safe writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from analysis_scripts import load_analysis
from run_fixtures import write_run


def load_script():
    return load_analysis("mnist10k_tables")


def _runs(root: Path) -> Path:
    runs = root / "runs"
    collapsed = {"clean": 0.1135, "pgd10": 0.1135}
    write_run(runs, "s5_pgd", model="s5", dataset="mnist10k", best=collapsed, last=collapsed)
    st = write_run(runs, "s4_st", model="s4", dataset="mnist10k", method="st",
                   best={"clean": 0.5}, last={"clean": 0.6})  # fmt: skip
    for which, results, n in (("best", {"clean": 0.595, "pgd10": 0.012, "aa": 0.0}, 2000),
                              ("last", {"clean": 0.6055, "pgd10": 0.014}, 2000)):  # fmt: skip
        payload = {"checkpoint": f"{which}.pt", "n": n, "eps": 0.3, "results": results}
        (st / f"eval_{which}.json").write_text(json.dumps(payload))
    write_run(runs, "s4_pgd_ads-relu", model="s4", dataset="mnist10k", ads="relu",
              best={"clean": 0.7, "pgd10": 0.4}, last={"clean": 0.65, "pgd10": 0.35})  # fmt: skip
    write_run(runs, "s4_pgd", model="s4", dataset="mnist10k", epochs=None)  # config only
    write_run(runs, "dss_trades", model="dss", dataset="mnist10k", method="trades")  # no eval
    write_run(runs, "digits_s4", model="s4", best={"clean": 0.9}, last={"clean": 0.9})
    return runs


def test_tables_put_ours_beside_the_paper(tmp_path: Path) -> None:
    script = load_script()
    paths = script.write(_runs(tmp_path), tmp_path / "out")
    table1 = paths["table1"].read_text()
    assert "MNIST-10k" in table1 and "Clean Best (ours)" in table1
    rows = [line for line in table1.splitlines() if line.startswith("| ") and "Model" not in line]
    lines = {line.split("|")[3].strip(): line for line in rows}
    s5 = [c.strip() for c in lines["s5_pgd"].split("|")[1:-1]]
    # Model, Method, Run, then ours / paper for clean best ..., n clean, n PGD-10, n AA
    assert s5[:7] == ["S5", "PGD-AT", "s5_pgd", "11.35", "96.95", "11.35", "20.20"]
    assert s5[9:13] == ["11.35", "99.92", "11.35", "99.86"]
    assert s5[-3:] == ["1000", "1000", "–"]
    s4_st = [c.strip() for c in lines["s4_st"].split("|")[1:-1]]
    assert s4_st[3:9] == ["59.50", "99.16", "60.55", "99.15", "-1.05", "0.01"]
    assert s4_st[-3:] == ["2000", "2000", "2000 / –"]  # AA only on best
    assert "unfinished (s4_pgd)" in lines and "unfinished (dss_trades)" in lines
    assert "| Mamba | PGD-AT | not run" in table1
    assert "digits_s4" not in table1
    table2 = paths["table2"].read_text()
    relu = next(line for line in table2.splitlines() if "s4_pgd_ads-relu" in line)
    assert [c.strip() for c in relu.split("|")[1:8]] == [
        "S4", "PGD-AT", "ReLU", "s4_pgd_ads-relu", "70.00", "70.57", "65.00"
    ]  # fmt: skip
    assert table2.count(" | not run ") == 11  # the paper's other 11 MNIST AdS settings
    frame = pd.read_csv(paths["csv"])
    assert len(frame) == 14 + 12
    row = frame[frame["run"] == "s5_pgd"].iloc[0]
    assert (row["ours_pgd10_last"], row["paper_pgd10_last"], row["n_pgd10_best"]) == (
        11.35, 99.86, 1000
    )  # fmt: skip


def test_writes_are_safe_and_repeatable(tmp_path: Path) -> None:
    script = load_script()
    runs, out = _runs(tmp_path), tmp_path / "out"
    script.main(["--runs", str(runs), "--out", str(out)])
    script.main(["--runs", str(runs), "--out", str(out)])  # its own files: replaced
    (out / "table1_mnist10k.md").write_text("a user's notes\n")
    with pytest.raises(SystemExit):
        script.main(["--runs", str(runs), "--out", str(out)])
    assert (out / "table1_mnist10k.md").read_text() == "a user's notes\n"
    script.main(["--runs", str(runs), "--out", str(out), "--force"])
    assert "S5" in (out / "table1_mnist10k.md").read_text()
