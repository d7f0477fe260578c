"""The checkpoints shipped in checkpoints/ load safely and still score what the manifest says."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from ssmprobe.attacks import score
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.loading import load_model

BUNDLE = Path(__file__).resolve().parent.parent / "checkpoints"
MANIFEST = json.loads((BUNDLE / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_bundled_checkpoint_matches_its_manifest(name: str) -> None:
    entry = MANIFEST[name]
    path = BUNDLE / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    model = load_model(path)
    meta = model.meta
    assert meta["dataset"] == entry["dataset"] and meta["method"] == entry["method"]
    # On the fewest images the manifest records a clean accuracy for: MNIST-10k's first 100
    # (AutoAttack's) rather than all 2,000, which take a minute at L = 784.
    n, clean = entry["n_test"], entry["accuracy"]["clean"]
    if entry.get("subsets"):
        n = min(int(k) for k in entry["subsets"])
        clean = entry["subsets"][str(n)]["clean"]
    test = load_dataset(entry["dataset"], "test").subset(torch.arange(n))
    acc = score(model, make_loader(test, 256))["acc"]
    assert acc == pytest.approx(clean, abs=1e-9)


def test_a_damaged_bundled_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    from ssmprobe import checkpoint

    name = "dss_pgd.pt"  # a digits entry
    shutil.copy(BUNDLE / "manifest.json", tmp_path / "manifest.json")
    shutil.copy(BUNDLE / name, tmp_path / name)
    monkeypatch.setattr(checkpoint, "bundled_dir", lambda: tmp_path)
    assert checkpoint.load_checkpoint(tmp_path / name).meta["dataset"] == "digits"
    with (tmp_path / name).open("r+b") as f:  # one byte changed deep in the weights
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(checkpoint.CheckpointError, match="differs from the manifest"):
        load_model(tmp_path / name)
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(tmp_path / name, copy / name)  # outside the bundle: the zip's own CRCs catch it
    with pytest.raises(checkpoint.CheckpointError, match="corrupt checkpoint"):
        checkpoint.load_checkpoint(copy / name)


def test_bundling_replaces_an_entry_of_the_bundle(tmp_path: Path, monkeypatch) -> None:
    """Re-bundling a retrained run over a bundled file updates file, manifest and cache together."""
    import sys

    from ssmprobe import checkpoint
    from ssmprobe.cli import main

    sys.path.insert(0, str(BUNDLE.parent / "analysis"))
    from bundle_checkpoints import bundle

    name = "dss_pgd.pt"  # a digits entry
    shutil.copy(BUNDLE / "manifest.json", tmp_path / "manifest.json")
    shutil.copy(BUNDLE / name, tmp_path / name)
    monkeypatch.setattr(checkpoint, "bundled_dir", lambda: tmp_path)
    tiny = "--d-model 8 --n-layers 1 --d-state 4 --epochs 1 --steps 1 --quiet --batch-size 256"
    runs = tmp_path / "runs"
    assert main(f"train --model s4 {tiny} --out {runs} --name r".split()) == 0
    record = {"checkpoint": "last.pt", "dataset": "digits", "n": 8, "eps": 0.1, "results": {}}
    record["autoattack_checks"] = ["AutoAttack: Square Attack has decreased the robust accuracy"]
    (runs / "r" / "eval_last.json").write_text(json.dumps(record))
    old_cache = tmp_path / "cache" / Path(name).stem
    old_cache.mkdir(parents=True)
    (old_cache / "bounds.csv").write_text("the old run's check\n")
    for other in ("dss_st", "s4_pgd"):  # the report draws S4's bounds from s4_pgd only
        (tmp_path / "cache" / other).mkdir()
        (tmp_path / "cache" / other / "bounds.csv").write_text("a check\n")
    bundle(runs, [f"r:{Path(name).stem}:last"], tmp_path)
    # Entries not named keep their bounds, drawn or not (the zoo's Mamba TRADES check, which
    # docs/theorem.md quotes); the new S4 ST entry's are not drawn (S4's are s4_pgd's).
    assert (tmp_path / "cache" / "dss_st" / "bounds.csv").is_file()
    assert (tmp_path / "cache" / "s4_pgd" / "bounds.csv").is_file()
    assert sorted(p.name for p in old_cache.iterdir()) == ["metrics.jsonl"]  # the new run's
    entry = json.loads((tmp_path / "manifest.json").read_text())[name]
    assert entry["autoattack_checks"] == record["autoattack_checks"]
    assert entry["sha256"] == hashlib.sha256((runs / "r" / "last.pt").read_bytes()).hexdigest()
    checkpoint.load_checkpoint(tmp_path / name)  # verifies against the new entry
    # The same weights bundled again (re-evaluated) keep what the report computed on the copy:
    # what the run lacks, and what the run holds older; a newer one of the run's replaces it.
    (old_cache / "discrepancy.csv").write_text("computed on the bundled copy\n")
    (runs / "r" / "discrepancy.json").write_text("computed in the run folder\n")
    for cache, age in (("discrepancy.json", 100), ("metrics.jsonl", -100)):
        (old_cache / cache).write_text("computed on the bundled copy\n")
        stamp = (runs / "r" / cache).stat().st_mtime + age
        os.utime(old_cache / cache, (stamp, stamp))
    bundle(runs, [f"r:{Path(name).stem}:last"], tmp_path)
    kept = {p.name: p.read_text() for p in old_cache.iterdir()}
    assert kept == {
        "discrepancy.csv": "computed on the bundled copy\n",
        "discrepancy.json": "computed on the bundled copy\n",
        "metrics.jsonl": (runs / "r" / "metrics.jsonl").read_text(),
    }
    # A run not yet evaluated is refused before anything of the bundle changes, even the
    # file of a good pair named before it.
    assert main(f"train --model s4 {tiny} --out {runs} --name new --seed 1".split()) == 0
    (runs / "r" / "eval_last.json").rename(runs / "new" / "eval_last.json")
    before = (tmp_path / "manifest.json").read_bytes(), (tmp_path / name).read_bytes()
    with pytest.raises(ValueError, match=r"r: no eval_last\.json: run `ssmprobe eval`"):
        bundle(runs, [f"new:{Path(name).stem}:last", "r:other:last"], tmp_path)
    assert ((tmp_path / "manifest.json").read_bytes(), (tmp_path / name).read_bytes()) == before


def test_each_attacks_n_travels_through_the_bundle_to_the_zoos_eval_file(
    tmp_path: Path, monkeypatch
) -> None:
    """AutoAttack on 100 beside PGD-10 on 2,000 (`eval --add`) stays so in the manifest and in
    the eval file `report --zoo` reads; its masking flags compare the same images."""
    import sys

    from ssmprobe import checkpoint
    from ssmprobe.cli import main
    from ssmprobe.report.runs import read_eval_record
    from ssmprobe.report.zoo_runs import zoo_runs

    sys.path.insert(0, str(BUNDLE.parent / "analysis"))
    from bundle_checkpoints import bundle

    monkeypatch.setattr(checkpoint, "bundled_dir", lambda: tmp_path)
    tiny = "--d-model 8 --n-layers 1 --d-state 4 --epochs 1 --steps 1 --quiet --batch-size 256"
    runs = tmp_path / "runs"
    assert main(f"train --model s4 {tiny} --out {runs} --name r".split()) == 0
    record = {"checkpoint": "last.pt", "dataset": "digits", "n": 300, "eps": 0.1}
    record |= {"results": {"clean": 0.9, "pgd10": 0.7, "aa": 0.2}, "autoattack_checks": []}
    record |= {
        "n_by_attack": {"aa": 100},
        "subsets": {"100": {"clean": 0.9, "pgd10": 0.22, "aa": 0.2}},
    }
    (runs / "r" / "eval_last.json").write_text(json.dumps(record))
    bundle(runs, ["r:s4_mine:last"], tmp_path)
    entry = json.loads((tmp_path / "manifest.json").read_text())["s4_mine.pt"]
    assert entry["n_test"] == 300 and entry["n_by_attack"] == {"aa": 100}
    assert entry["subsets"] == record["subsets"]
    (made,) = zoo_runs(tmp_path / "zoo")
    loaded = read_eval_record(made / "eval_last.json")
    assert loaded.n_of("aa") == 100 and loaded.n_of("pgd10") == 300
    assert loaded.masking() == [] == json.loads((made / "eval_last.json").read_text())["masking"]
