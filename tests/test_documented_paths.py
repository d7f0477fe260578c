"""Documented command-line paths no other test drove: `poison --second`, `import` / `export
--force`, `discrepancy --form relative`, `eval --jobs`, `report --pdf --jobs`, and S5's
per-state bounds under `--perturb adversarial`."""

from __future__ import annotations

import json
from pathlib import Path

from ssmprobe.cli import main

TINY = "--d-model 8 --n-layers 1 --d-state 4 --epochs 1 --steps 1 --quiet --batch-size 256"
TINY += " --train-eval-size 16 --test-eval-size 16"


def test_poison_second_runs_the_papers_second_configuration(tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    argv = ["poison", "--second", "--seeds", "1", "--jobs", "1", "--max-steps", "20"]
    assert main([*argv, "--quiet", "--out", str(out)]) == 0
    config = json.loads(out.with_suffix(".json").read_text())["config"]
    assert (config["length"], config["student_dim"]) == (10, 20)
    assert (config["sd_a"], config["base_lr"], config["baseline_nonzero"]) == (0.01, 1e-3, 7)


def test_export_and_import_replace_a_checkpoint_only_with_force(tmp_path: Path, capsys) -> None:
    command = f"train --model s4 {TINY} --arch reference --method st --out {tmp_path} --name m"
    assert main(command.split()) == 0
    ckpt, exported, imported = tmp_path / "m" / "last.pt", tmp_path / "e.pt", tmp_path / "i.pt"
    export = ["export", "--ckpt", str(ckpt), "--out", str(exported)]
    assert main(export) == 0
    before = exported.read_bytes()
    assert main(export) == 2 and "pass --force" in capsys.readouterr().err
    assert main([*export, "--force"]) == 0 and exported.read_bytes() == before
    imp = ["import", str(exported), "--model", "s4", "--dataset", "digits", "--out", str(imported)]
    assert main(imp) == 0
    assert main(imp) == 2 and "pass --force" in capsys.readouterr().err
    assert main([*imp, "--force"]) == 0


def test_form_relative_prints_the_relative_form(tmp_path: Path, capsys) -> None:
    argv = ["discrepancy", "--ckpt", "dss_pgd", "--n", "8", "--split", "test", "--quiet"]
    tables = {}
    for form in ("plain", "relative"):
        assert main([*argv, "--form", form, "--out", str(tmp_path / f"{form}.csv")]) == 0
        tables[form] = capsys.readouterr().out
    assert "relative" in tables["relative"] and tables["relative"] != tables["plain"]


def test_eval_jobs_gives_the_single_process_result(tmp_path: Path) -> None:
    argv = ["eval", "--ckpt", "dss_pgd", "--attack", "aa-fast", "--n", "8", "--batch-size", "4"]
    results = []
    for jobs in ("1", "2"):
        out = tmp_path / f"e{jobs}.json"
        assert main([*argv, "--jobs", jobs, "--quiet", "--out", str(out)]) == 0
        results.append(json.loads(out.read_text())["results"])
    assert results[0] == results[1]


def test_report_pdf_with_several_jobs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert main(f"train --model s5 {TINY} --method pgd --out {runs} --name a".split()) == 0
    argv = ["report", "--runs", str(runs), "--attack", "fgsm", "--n", "8", "--n-probe", "8"]
    assert main([*argv, "--pdf", "--jobs", "2", "--quiet"]) == 0
    out = runs / "report"
    pdfs = {p.stem for p in out.rglob("*.pdf")}
    pngs = {p.stem for p in out.rglob("*.png")}
    assert pdfs and pdfs == pngs


def test_s5_per_state_bounds_under_pgd(tmp_path: Path) -> None:
    out = tmp_path / "b.csv"
    argv = ["bounds", "--model", "s5", "--perturb", "adversarial", "--n", "8"]
    assert main([*argv, "--channels", "0-1", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    views = {row["view"] for row in rows}
    assert views == {"output", "state"}, views  # per output channel and per state
    assert "PGD-10" in json.loads(out.with_suffix(".json").read_text())["meta"]["perturbation"]
