"""`ssmprobe eval --add`: attacks on their own n join one eval file (AutoAttack on the first 100
beside PGD-10 on 2,000), and the masking flags compare only accuracies on the same images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_fixtures import write_run

from ssmprobe.checkpoint import bundled_dir
from ssmprobe.cli import main
from ssmprobe.evaluation.evaluate import evaluate, format_results, merge_records
from ssmprobe.evaluation.sanity import grouped_masking_flags
from ssmprobe.grid import evaluated
from ssmprobe.report.runs import RunDirError, collect_runs, read_eval_record

OLD = {
    "checkpoint": "best.pt",
    "file": {"path": "best.pt", "sha256": "ab"},
    "dataset": "mnist10k",
    "data_source": "official",
    "n": 2000,
    "eps": 0.3,
    "results": {"clean": 0.9, "pgd10": 0.7},
    "masking": [],
    "autoattack_checks": [],
}


def _new(n: int, results: dict[str, float], **changes: object) -> dict:
    return {**OLD, "n": n, "results": results, "autoattack_checks": ["Square ..."], **changes}


def test_an_attack_on_fewer_samples_is_listed_with_its_n_and_its_own_baseline() -> None:
    new = _new(100, {"clean": 0.92, "pgd10": 0.5, "aa": 0.47})
    merged = merge_records(OLD, new, ["aa"])
    assert merged["results"] == {"clean": 0.9, "pgd10": 0.7, "aa": 0.47}  # 2000's kept
    assert merged["n"] == 2000 and merged["n_by_attack"] == {"aa": 100}
    assert merged["subsets"] == {"100": {"clean": 0.92, "pgd10": 0.5, "aa": 0.47}}
    # 0.7 vs 0.47 across different images is no flag (23 points); 0.5 vs 0.47 on the same 100: 3
    assert merged["masking"] == []
    assert merged["autoattack_checks"] == ["Square ..."]


def test_the_same_n_replaces_and_drops_the_older_n() -> None:
    once = merge_records(OLD, _new(100, {"clean": 0.92, "pgd10": 0.5, "aa": 0.47}), ["aa"])
    again = merge_records(once, _new(2000, {"clean": 0.9, "aa": 0.41}), ["aa"])
    assert again["results"]["aa"] == 0.41 and "n_by_attack" not in again
    assert again["subsets"]["100"]["aa"] == 0.47  # what was measured stays on record


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eps": 0.1}, "eps 0.3"),
        ({"dataset": "mnist"}, "dataset"),
        ({"data_source": "/data/x"}, "data_source"),
        ({"file": {"path": "best.pt", "sha256": "cd"}}, "another checkpoint file"),
    ],
)
def test_figures_of_other_data_or_another_checkpoint_never_join(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merge_records(OLD, _new(100, {"clean": 0.9, "aa": 0.4}, **change), ["aa"])


def test_flags_compare_the_same_images_and_name_the_subset() -> None:
    results = {"clean": 0.9, "pgd10": 0.7, "aa": 0.2}
    assert grouped_masking_flags(results, 2000, {"aa": 100}, {}) == []
    subset = {100: {"clean": 0.9, "pgd10": 0.6, "aa": 0.2}}
    flags = grouped_masking_flags(results, 2000, {"aa": 100}, subset)
    assert flags == ["aa 20.00% is 40.00 points below pgd10 (first 100 samples)"]
    assert grouped_masking_flags(results, 2000, {}, {}) == ["aa 20.00% is 50.00 points below pgd10"]


def test_eval_add_end_to_end_equals_a_fresh_evaluation(tmp_path: Path, capsys) -> None:
    shutil.copy(bundled_dir() / "s4_st.pt", tmp_path / "best.pt")
    ckpt, record = tmp_path / "best.pt", tmp_path / "eval_best.json"
    assert main(["eval", "--ckpt", str(ckpt), "--attack", "pgd10", "--n", "40", "--quiet"]) == 0
    first = json.loads(record.read_text())
    assert (
        main(["eval", "--ckpt", str(ckpt), "--attack", "fgsm", "--n", "16", "--add", "--quiet"])
        == 0
    )
    assert "fgsm" in capsys.readouterr().out.splitlines()[-1]
    merged = json.loads(record.read_text())
    assert merged["results"]["pgd10"] == first["results"]["pgd10"]
    assert merged["n"] == 40 and merged["n_by_attack"] == {"fgsm": 16}
    fresh = evaluate(ckpt, ["pgd10", "fgsm"], n=16, out=tmp_path / "fresh.json", progress=False)
    assert merged["subsets"]["16"] == fresh["results"]
    assert merged["results"]["fgsm"] == fresh["results"]["fgsm"]
    assert "fgsm" in format_results(merged) and "(n=16)" in format_results(merged)
    loaded = read_eval_record(record)
    assert loaded.n_of("fgsm") == 16 and loaded.n_of("pgd10") == 40
    assert loaded.n_text() == "40 (fgsm 16)"
    # the grid's "already evaluated on n" asks every attack's n
    assert evaluated(tmp_path, 40, "pgd10", "best")
    assert evaluated(tmp_path, 16, "pgd10,fgsm", "best")
    assert not evaluated(tmp_path, 40, "pgd10,fgsm", "best")


def test_add_needs_an_eval_file_and_leaves_a_foreign_one_alone(tmp_path: Path, capsys) -> None:
    shutil.copy(bundled_dir() / "s4_st.pt", tmp_path / "best.pt")
    ckpt = str(tmp_path / "best.pt")
    assert main(["eval", "--ckpt", ckpt, "--attack", "fgsm", "--n", "8", "--add", "--quiet"]) != 0
    assert "no eval file to add to" in capsys.readouterr().err
    assert not (tmp_path / "eval_best.json").exists()
    other = tmp_path / "other.json"
    other.write_text("{}")
    args = [
        "eval",
        "--ckpt",
        ckpt,
        "--attack",
        "fgsm",
        "--n",
        "8",
        "--add",
        "--quiet",
        "--out",
        str(other),
    ]
    assert main([*args, "--force"]) != 0
    assert "not an eval file" in capsys.readouterr().err and other.read_text() == "{}"


def test_the_report_reads_each_attacks_n(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "r", method="pgd", best={"clean": 0.9, "pgd10": 0.7, "aa": 0.2})
    path = runs / "r" / "eval_best.json"
    payload = json.loads(path.read_text())
    payload |= {"n": 2000, "n_by_attack": {"aa": 100}}
    path.write_text(json.dumps(payload))
    row = collect_runs(runs).iloc[0]
    assert "n 2000 (aa 100)" in row["recipe"]
    assert row["masking"] == ""  # PGD-10 on 2000 against AA on 100: not the same images
    payload["subsets"] = {"100": {"clean": 0.9, "pgd10": 0.6, "aa": 0.2}}
    path.write_text(json.dumps(payload))
    assert "(first 100 samples)" in collect_runs(runs).iloc[0]["masking"]
    payload["n_by_attack"] = {"aa": "many"}
    path.write_text(json.dumps(payload))
    with pytest.raises(RunDirError, match="n_by_attack"):
        read_eval_record(path)


def test_a_record_older_than_data_source_was_on_the_official_files() -> None:
    older = {k: v for k, v in OLD.items() if k != "data_source"}
    merged = merge_records(older, _new(100, {"clean": 0.9, "aa": 0.4}), ["aa"])
    assert merged["results"]["aa"] == 0.4
    with pytest.raises(ValueError, match="data_source 'official'"):
        merge_records(older, _new(100, {"clean": 0.9, "aa": 0.4}, data_source="/x"), ["aa"])


def test_a_mismatch_is_refused_before_any_attack_runs(tmp_path: Path, monkeypatch) -> None:
    import ssmprobe.evaluation.evaluate as module

    shutil.copy(bundled_dir() / "s4_st.pt", tmp_path / "best.pt")
    record = tmp_path / "eval_best.json"
    evaluate(tmp_path / "best.pt", ["fgsm"], n=8, progress=False)
    before = record.read_text()

    def no_attack(*args: object, **kwargs: object) -> None:
        raise AssertionError("an attack ran before the mismatch was found")

    monkeypatch.setattr(module, "evaluate_attack", no_attack)
    with pytest.raises(ValueError, match=r"eps 0\.1"):
        evaluate(tmp_path / "best.pt", ["fgsm"], n=4, eps=0.2, add=True, progress=False)
    assert record.read_text() == before
