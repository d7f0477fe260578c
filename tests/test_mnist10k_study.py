"""analysis/mnist10k_study.py on hand-built runs: the study the report shows, its findings from
the tables, the diagnosis, the per-position caches and the bounds; a user's file is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analysis_scripts import load_analysis
from test_mnist10k_tables import _runs
from test_mnist10k_tables import load_script as load_tables

from ssmprobe.report.studies import read_study


def load_script():
    return load_analysis("mnist10k_study")


def argv(runs: Path, out: Path, docs: Path) -> list[str]:
    return ["--runs", str(runs), "--out", str(out), "--docs", str(docs)]


def _caches(run: Path, length: int = 784) -> None:
    """The report's caches of one run: two layers' curves over 20 positions and a bounds check
    at sequence length `length`."""
    flat, late = [1.0] * 20, [1.0] * 18 + [4.0, 4.0]  # late / early = 4 after the second SSM
    steps = [{"split": "test", "component": c, "kind": c.rsplit(".", 1)[1], "before": b,
              "after": a} for c, b, a in (("layers.0.ssm", flat, flat),
                                           ("layers.0.norm", flat, flat),
                                           ("layers.1.ssm", flat, late))]  # fmt: skip
    result = {"meta": {"checkpoint": str(run / "best.pt")}, "rows": [], "steps": steps}
    (run / "discrepancy.json").write_text(json.dumps({"results": [result]}))
    summary = {"layer": "layers.0.ssm", "channels": 128, "kernel_upper_holds": 128,
               "eigen_violated": 3, "eigen_max_ratio": 17.5}  # fmt: skip
    payload = {"meta": {"L": length}, "summary": [summary], "rows": []}
    (run / "bounds.json").write_text(json.dumps(payload))


def test_the_study_gathers_tables_diagnosis_positions_and_bounds(tmp_path: Path) -> None:
    runs, out = _runs(tmp_path), tmp_path / "out"
    load_tables().write(runs, out)
    _caches(runs / "s5_pgd")
    verdict = {"finding": "PGD-10 15.0% is not above clean 15.0%; collapse"}
    (out / "diagnosis.json").write_text(json.dumps({"s5_pgd/best": {"verdict": verdict}}))
    (out / "diagnosis.md").write_text("| a |\n|---|\n| 1 |\n")
    (out / "report" / "discrepancy").mkdir(parents=True)
    (out / "report" / "discrepancy" / "steps_s5_pgd_best.png").write_bytes(b"png")
    assert load_script().main(argv(runs, out, tmp_path / "page.md")) == 0
    study = read_study(out)
    assert [t for t, _, _ in study.tables] == [
        "Table 1, MNIST rows", "Table 2, MNIST rows", "Why PGD-10 can sit above clean",
        "Along the 784 steps", "Theorem 4.1.1 at L = 784",
    ]  # fmt: skip
    assert any(f.startswith("S5 PGD-AT (s5_pgd): clean 11.35 / 11.35") for f in study.findings)
    assert "s5_pgd/best: PGD-10 15.0% is not above clean 15.0%; collapse" in study.findings
    assert "| s5_pgd | best.pt | 1.00 | 4.00 | 1.00-4.00 |" in (out / "positions.md").read_text()
    bounds = (out / "bounds.md").read_text()
    assert "| s5_pgd | layers.0.ssm | channel | 128 | 128 | 3 | 17.5 |" in bounds
    assert any(f.startswith("Along the 784 steps") and "1.00-4.00" in f for f in study.findings)
    page = (tmp_path / "page.md").read_text()
    assert page.startswith(f"# {study.title}") and "## Along the 784 steps" in page
    [(figure, caption)] = study.figures
    assert figure.name == "steps_s5_pgd_best.png" and "along the sequence" in caption


def test_bounds_checked_at_another_length_are_refused(tmp_path: Path) -> None:
    """A cache from before the report checked each run at its dataset's length (digits' 64)
    is never shown as 'Theorem 4.1.1 at L = 784'."""
    runs, out = _runs(tmp_path), tmp_path / "out"
    load_tables().write(runs, out)
    _caches(runs / "s5_pgd", length=64)
    with pytest.raises(SystemExit, match="s5_pgd: bounds checked at another L than 784"):
        load_script().main(argv(runs, out, tmp_path / "page.md"))
    assert not (out / "bounds.md").exists()


def test_it_needs_the_tables_and_keeps_a_users_file(tmp_path: Path) -> None:
    runs, out = _runs(tmp_path), tmp_path / "out"
    with pytest.raises(SystemExit):  # no tables yet
        load_script().main(argv(runs, out, tmp_path / "page.md"))
    load_tables().write(runs, out)
    (out / "findings.md").write_text("my notes\n")
    with pytest.raises(SystemExit):
        load_script().main(argv(runs, out, tmp_path / "page.md"))
    assert (out / "findings.md").read_text() == "my notes\n"
    assert load_script().main([*argv(runs, out, tmp_path / "page.md"), "--force"]) == 0


def test_a_finding_names_the_ads_and_shows_autoattack_on_the_one_checkpoint_it_ran_on() -> None:
    import pandas as pd

    row = {"model": "s4", "method": "pgd", "ads": "relu", "run": "s4_pgd_ads-relu"}
    row |= {
        f"ours_{m}_{k}": v for m, v in (("clean", 88.15), ("pgd10", 70.0)) for k in ("best", "last")
    }
    row |= {f"paper_{m}_{k}": 1.0 for m in ("clean", "pgd10", "aa") for k in ("best", "last")}
    row |= {"ours_aa_best": 48.0, "ours_aa_last": float("nan"), "n_aa_best": 100}
    row |= {"n_aa_last": float("nan"), "n_pgd10_last": 2000}
    [finding] = load_script().table_findings(pd.DataFrame([row]))
    assert finding.startswith("S4 PGD-AT + ReLU AdS (s4_pgd_ads-relu): clean 88.15 / 88.15")
    assert finding.endswith("AA 48.00 / – (n = 100; the paper's 1.00 / 1.00).")
