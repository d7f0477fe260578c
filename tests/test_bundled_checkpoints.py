"""The checkpoints shipped in checkpoints/ load safely and still score what the manifest says."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from ssmprobe.data import load_dataset, make_loader
from ssmprobe.train import evaluate, load_model

BUNDLE = Path(__file__).resolve().parent.parent / "checkpoints"
MANIFEST = json.loads((BUNDLE / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_bundled_checkpoint_matches_its_manifest(name: str) -> None:
    entry = MANIFEST[name]
    path = BUNDLE / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    model, meta = load_model(path)
    assert meta["dataset"] == entry["dataset"] and meta["method"] == entry["method"]
    test = load_dataset(entry["dataset"], "test")
    test = test.subset(torch.arange(entry["n_test"]))
    _, acc = evaluate(model, make_loader(test, 256))
    assert acc == pytest.approx(entry["accuracy"]["clean"], abs=1e-9)


def test_a_damaged_bundled_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    from ssmprobe import checkpoint

    name = sorted(MANIFEST)[0]
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
    shutil.copy(tmp_path / name, copy / name)  # outside the bundle: no manifest to check
    checkpoint.read_payload(copy / name)
