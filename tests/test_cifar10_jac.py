"""analysis/cifar10_jac.py end to end on tiny stand-ins: two random S4s of the reference
architecture in the reference code's layout (what `ssmprobe import` reads) and a generated
folder of CIFAR-10-shaped images; then run again, resuming from its own files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from analysis_scripts import load_analysis
from PIL import Image

from ssmprobe.imagefolder import CIFAR10_CLASSES
from ssmprobe.interop.reference import export_reference
from ssmprobe.models import build_model, model_config
from ssmprobe.models.registry import ARCHS
from ssmprobe.report.studies import read_study


def load_script():
    return load_analysis("cifar10_jac")


@pytest.mark.slow
def test_the_script_writes_every_result_and_resumes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in CIFAR10_CLASSES:
        (tmp_path / "img" / "test" / cls).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / "test" / cls / f"{i}.png")
    sizes = {"d_model": 8, "n_layers": 1, "d_state": 4}
    for seed, name in ((0, "nat"), (1, "gp")):
        torch.manual_seed(seed)
        config = model_config("s4", "cifar10", **ARCHS["reference"], **sizes)
        model = build_model(config)
        torch.save(
            export_reference(config.to_dict(), model.state_dict(), 1024), tmp_path / f"{name}.pt"
        )
    out, docs = tmp_path / "out", tmp_path / "page.md"
    argv = ["--images", str(tmp_path / "img"), "--nat", str(tmp_path / "nat.pt"),
            "--gp", str(tmp_path / "gp.pt"), "--out", str(out), "--work", str(tmp_path / "w"),
            "--n-clean", "20", "--n-pgd", "4", "--n-aa", "2", "--n-probe", "4",
            "--docs", str(docs)]  # fmt: skip
    script = load_script()
    assert script.main(argv) == 0
    rows = json.loads((out / "accuracy.json").read_text())
    assert [r["model"] for r in rows] == ["nat", "gp"]
    assert all(r["n_clean"] == 20 and r["n_pgd10"] == 4 and r["n_aa"] == 2 for r in rows)
    assert all(r["data"] == f"image folder {tmp_path / 'img' / 'test'}" for r in rows)
    for name in ("nat", "gp"):
        probe = json.loads((out / f"discrepancy_{name}.json").read_text())["results"][0]
        assert probe["meta"]["method"] == name and probe["meta"]["dataset"] == "cifar10"
        assert (out / f"bounds_{name}.json").is_file()
    assert (out / "figure3_discrepancy.png").is_file()
    spectrum = (out / "spectrum.csv").read_text().splitlines()
    assert len(spectrum) == 3 and spectrum[0].startswith("model,layer,max_abs_eig")
    page = docs.read_text()
    assert "JPEG copy" in page and "- S4 Nat: clean" in page and "| S4 Nat | 1" in page
    assert "Beside the paper (Table 1" in page and "eigenvalue-form upper bound (eq. 16)" in page
    assert "Along the 1,024 steps (test images)" in page
    assert "on AutoAttack's 2 images PGD-10" in page
    study = read_study(out)  # what `ssmprobe report --study` shows
    assert [t for t, _, _ in study.tables] == [
        "Accuracy", "Feature discrepancy under PGD-10 (Figs. 3-4), test images",
        "Spectrum of each SSM layer", "Theorem 4.1.1 per layer",
    ]  # fmt: skip
    shown = {path.name for path, _ in study.figures}
    assert {"figure3_discrepancy.png", "bounds_nat.png", "bounds_gp.png"} <= shown
    assert any(name.startswith("steps_") for name in shown)
    assert json.loads((out / "bounds_gp.json").read_text())["meta"]["law"]["mu"] == 0.0155
    before = (out / "accuracy.json").stat().st_mtime_ns
    assert script.main(argv) == 0  # resumes: nothing recomputed, the same files
    assert (out / "accuracy.json").stat().st_mtime_ns == before
