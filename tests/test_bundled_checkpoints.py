"""The checkpoints shipped in checkpoints/ load safely and still score what the manifest says."""

from __future__ import annotations

import hashlib
import json
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
