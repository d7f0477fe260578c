"""Theorem 4.1.1 on model layers: modal forms, per-channel rows, `ssmprobe bounds`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssmprobe.cli import main
from ssmprobe.layer_bounds import modal_form, model_rows, perturbation_law, summarise_rows
from ssmprobe.models import build_model, model_config
from ssmprobe.train import load_model

TINY = {"d_model": 6, "n_layers": 2, "d_state": 4}


def tiny(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(family, **TINY))


@pytest.mark.parametrize("family", ["s4", "dss", "mega"])
def test_modal_form_reproduces_the_impulse_response(family: str) -> None:
    """S4's eigenvalues come from its dense Ā: the modes must give back the layer's kernel."""
    layer = tiny(family).ssm_layers()["layers.0.ssm"]
    with torch.no_grad():
        ssm = layer.discrete()
        lam, residues = modal_form(ssm)
        k = torch.arange(24, dtype=torch.float64)
        h = ssm.scale * torch.einsum("hn,hnl->hl", residues, lam[..., None] ** k).real
        torch.testing.assert_close(h, layer.impulse_response(24).double(), rtol=1e-4, atol=1e-5)


def test_bundled_s4_modes_reproduce_its_kernel() -> None:
    layer = load_model("s4_pgd.pt")[0].ssm_layers()["layers.1.ssm"]
    with torch.no_grad():
        ssm = layer.discrete()
        lam, residues = modal_form(ssm)
        k = torch.arange(64, dtype=torch.float64)
        h = torch.einsum("hn,hnl->hl", residues, lam[..., None] ** k).real
        torch.testing.assert_close(h, layer.impulse_response(64).double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["uniform", "sign", "gaussian"])
def test_rows_hold_the_kernel_bounds_and_match_monte_carlo(kind: str) -> None:
    law = perturbation_law(kind, 0.1, mu=0.05)
    rows = model_rows(tiny("dss"), 32, law, samples=4000)
    assert len(rows) == 2 * 6 and {r["layer"] for r in rows} == {"layers.0.ssm", "layers.1.ssm"}
    for r in rows:
        assert r["kernel_lower_holds"] and r["kernel_upper_holds"] and r["spectral_upper_holds"]
        assert abs(r["monte_carlo"] - r["exact"]) < 5 * r["monte_carlo_se"] + 1e-12
        assert r["M"] == pytest.approx(r["mu"] ** 2 + r["sigma2"])
    (first, _) = summarise_rows(rows)
    assert first["channels"] == 6 and first["kernel_upper_holds"] == 6


@pytest.mark.parametrize("family", ["s4", "dss", "s5", "mega"])
def test_exact_error_matches_the_layers_own_forward(family: str) -> None:
    """Independent of the kernels: E||y(ε) - Dε||² from the layer's forward on sampled ε (the
    layer is linear, so y(u + ε) - y(u) = y(ε)), per channel, against the exact error."""
    layer = tiny(family).ssm_layers()["layers.0.ssm"]
    law = perturbation_law("sign", 0.1, mu=0.05)
    rows = model_rows(tiny(family), 16, law, layers=[0])
    eps = law.sampler(16 * 6, seed=1)(3000).reshape(3000, 6, 16).transpose(1, 2)  # (n, L, H)
    with torch.no_grad():
        out = layer(eps.float()).double() - layer.discrete().D.double() * eps
    sq = out.square().sum(dim=1)  # (n, H)
    mean, se = sq.mean(dim=0), sq.std(dim=0) / 3000**0.5
    for r in rows:
        assert abs(r["exact"] - mean[r["channel"]].item()) < 5 * se[r["channel"]].item() + 1e-6
        assert r["kernel_lower_holds"] and r["kernel_upper_holds"] and r["spectral_upper_holds"]


def test_layers_without_lti_bounds_are_refused() -> None:
    law = perturbation_law("uniform", 0.1)
    with pytest.raises(ValueError, match="time-invariant"):
        model_rows(tiny("mamba"), 16, law)
    with pytest.raises(ValueError, match="layers"):
        model_rows(tiny("dss"), 16, law, layers=[5])


def test_bounds_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b.csv"
    assert main(["bounds", "--model", "s4", "--L", "32", "--mu", "0.05", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "checkpoints/s4_pgd.pt" in printed and "layers.1.ssm" in printed
    rows = pd.read_csv(out)
    assert len(rows) == 2 * 64 and rows["kernel_upper_holds"].all()
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["meta"]["L"] == 32 and len(saved["summary"]) == 2
    assert (
        main(["bounds", "--model", "mega", "--init", "--channels", "0-3", "--out", str(out)]) == 0
    )
    assert "fresh initialisation" in capsys.readouterr().out and len(pd.read_csv(out)) == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--L", "0"], "--L must be a positive"),
        (["--eps", "-0.1"], "eps must be positive"),
        (["--channels", "64"], "outside the layer"),
        (["--channels", "a-b"], "cannot read"),
        (["--ckpt", "s4_pgd.pt"], "holds a s4, not a dss"),
    ],
)
def test_bounds_bad_input(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    out = tmp_path / "b.csv"
    assert main(["bounds", "--model", "dss", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_bounds_figures(tmp_path: Path) -> None:
    out = tmp_path / "b.csv"
    args = ["bounds", "--model", "dss", "--channels", "0-3", "--mu", "0.05"]
    assert main([*args, "--out", str(out), "--figures", str(tmp_path / "figs")]) == 0
    names = {p.name for p in (tmp_path / "figs").iterdir()}
    stems = ("bounds_dss", "bounds_vs_L_dss", "eigenvalues_dss")
    assert names == {f"{s}{suffix}" for s in stems for suffix in (".png", ".pdf")}
    for stem in stems:
        assert (tmp_path / "figs" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"


def test_adversarial_perturbation_measured_at_each_ssm(tmp_path: Path, capsys) -> None:
    out = tmp_path / "adv.csv"
    args = ["bounds", "--model", "dss", "--perturb", "adversarial", "--n", "20"]
    assert main([*args, "--out", str(out)]) == 0
    assert "PGD-10 (eps 0.1) on 20 digits test samples" in capsys.readouterr().out
    rows = pd.read_csv(out)
    assert len(rows) == 2 * 64 and rows["kernel_upper_holds"].all()
    # The measured output error of a linear layer is tr(H S Hᵀ) of the measured second moment.
    assert ((rows["exact_from_second_moment"] / rows["exact"] - 1).abs() < 1e-4).all()
    assert main([*args, "--init", "--out", str(out)]) == 2
    assert "drop --init" in capsys.readouterr().err
