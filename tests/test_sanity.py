"""Evaluation sanity flags: the masking patterns are flagged, honest rows are not."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_fixtures import write_run

from ssmprobe.evaluation.evaluate import format_results
from ssmprobe.evaluation.sanity import AA_GAP, FOOTNOTE, MARK, masking_flags
from ssmprobe.report.runs import collect_runs
from ssmprobe.report.tables import write_tables

# The pattern the issue names from the paper's MNIST PGD-AT rows: PGD-10 99.9% against AA 0.3%.
PAPER_MASKED = {"clean": 0.9912, "pgd10": 0.999, "aa": 0.003}


def test_the_papers_mnist_pgd_at_pattern_is_flagged() -> None:
    flags = masking_flags(PAPER_MASKED)
    assert any(f.startswith("aa 0.30% is 99.60 points below pgd10") for f in flags)
    assert any("pgd10 99.90% above clean 99.12%" in f for f in flags)


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ({"clean": 0.98, "pgd10": 0.90, "aa": 0.89}, []),
        ({"clean": 0.98, "pgd10": 0.90, "aa": 0.90 - AA_GAP}, []),  # exactly at the margin
        ({"clean": 0.98, "pgd10": 0.90, "aa": 0.80}, ["aa 80.00% is 10.00 points below pgd10"]),
        ({"clean": 0.50, "pgd10": 0.60}, ["pgd10 60.00% above clean 50.00%"]),
        ({"clean": 0.50, "pgdl2-10": 0.55}, ["pgdl2-10 55.00% above clean 50.00%"]),
        ({"clean": 0.9, "pgd10": 0.70, "pgd20": 0.72}, ["pgd20 72.00% above pgd10 70.00%"]),
        ({"clean": 0.9, "pgd10": 0.70, "pgd20": 0.70}, []),
        ({"clean": 0.9}, []),
        ({"pgd10": 0.9, "aa": 0.1}, ["aa 10.00% is 80.00 points below pgd10"]),
    ],
)
def test_each_pattern(results: dict[str, float], expected: list[str]) -> None:
    assert masking_flags(results) == expected


accuracy = st.floats(0, 1)


@given(accuracy, accuracy, accuracy, accuracy)
def test_a_monotone_row_is_never_flagged(a: float, b: float, c: float, gap: float) -> None:
    clean, pgd10, pgd20 = sorted((a, b, c), reverse=True)
    aa = max(0.0, pgd10 - gap * AA_GAP)
    assert masking_flags({"clean": clean, "pgd10": pgd10, "pgd20": pgd20, "aa": aa}) == []


def test_eval_output_warns() -> None:
    record = {"checkpoint": "best.pt", "dataset": "mnist", "n": 1000, "results": PAPER_MASKED}
    record["masking"] = masking_flags(PAPER_MASKED)
    text = format_results(record)
    assert text.count("warning: suspected gradient masking") == len(record["masking"])
    honest = {**record, "results": {"clean": 0.9}, "masking": []}
    assert "warning" not in format_results(honest)


def test_tables_mark_the_flagged_row_with_a_footnote(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "masked", method="pgd", best=PAPER_MASKED, last=PAPER_MASKED)
    write_run(runs, "honest", method="trades", best={"clean": 0.9, "pgd10": 0.6, "aa": 0.58})
    frame = collect_runs(runs)
    masked = frame.set_index("method").loc["pgd", "masking"]
    assert masked.startswith("best: ") and "last: " in masked
    assert frame.set_index("method").loc["trades", "masking"] == ""
    paths = write_tables(frame, tmp_path / "out")
    md = paths["md"].read_text()
    assert f"PGD-AT {MARK}" in md and f"TRADES {MARK}" not in md
    assert FOOTNOTE in md and FOOTNOTE in paths["tex"].read_text()
    (runs / "masked" / "eval_best.json").unlink()
    (runs / "masked" / "eval_last.json").unlink()
    clean_md = write_tables(collect_runs(runs), tmp_path / "out2")["md"].read_text()
    assert MARK not in clean_md and FOOTNOTE not in clean_md


def test_autoattacks_own_checks_are_kept_in_the_eval_record(tmp_path: Path, monkeypatch) -> None:
    """AutoAttack's check warnings (once each) go into eval_*.json and the printed line; any
    other warning passes through."""
    import json
    import shutil
    import warnings

    import ssmprobe.evaluation.evaluate
    from ssmprobe.attacks import AutoAttackWarning
    from ssmprobe.checkpoint import bundled_dir

    def attack(*args: object, **kwargs: object) -> dict:
        for _ in range(2):  # one per batch, say
            message = "AutoAttack: Square Attack has decreased ..."
            warnings.warn(message, AutoAttackWarning, stacklevel=2)
        warnings.warn("something else", UserWarning, stacklevel=2)
        return {"acc": 0.5}

    monkeypatch.setattr(ssmprobe.evaluation.evaluate, "evaluate_attack", attack)
    shutil.copy(bundled_dir() / "s4_st.pt", tmp_path / "last.pt")
    with pytest.warns(UserWarning, match="something else"):
        record = ssmprobe.evaluation.evaluate.evaluate(tmp_path / "last.pt", ["aa"], n=8)
    assert record["autoattack_checks"] == ["AutoAttack: Square Attack has decreased ..."]
    saved = json.loads((tmp_path / "eval_last.json").read_text())
    assert saved["autoattack_checks"] == record["autoattack_checks"]
    assert "warning: AutoAttack: Square Attack" in format_results(record)
