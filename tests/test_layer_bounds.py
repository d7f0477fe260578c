"""Theorem 4.1.1 on model layers: modal forms, per-channel rows, `ssmprobe bounds`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssmprobe.bounds.lti import (
    _state_errors,
    modal_form,
    model_rows,
    perturbation_law,
    state_kernel,
    state_rows,
    summarise_rows,
)
from ssmprobe.checkpoint import bundled_dir
from ssmprobe.cli import main
from ssmprobe.io import WRITTEN
from ssmprobe.loading import load_model
from ssmprobe.models import build_model, model_config

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
    layer = load_model("s4_pgd.pt").ssm_layers()["layers.1.ssm"]
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
    rows = [r for r in model_rows(tiny(family), 16, law, layers=[0]) if r["view"] != "state"]
    eps = law.sampler(16 * 6, seed=1)(3000).reshape(3000, 6, 16).transpose(1, 2)  # (n, L, H)
    with torch.no_grad():
        out = layer(eps.float()).double() - layer.discrete().D.double() * eps
    sq = out.square().sum(dim=1)  # (n, H)
    mean, se = sq.mean(dim=0), sq.std(dim=0) / 3000**0.5
    for r in rows:
        assert abs(r["exact"] - mean[r["channel"]].item()) < 5 * se[r["channel"]].item() + 1e-6
        assert r["kernel_lower_holds"] and r["kernel_upper_holds"] and r["spectral_upper_holds"]


def test_s5_states_sum_back_to_the_mimo_layer() -> None:
    """Each state as its own system: the states' kernels add up to the layer's kernel, and their
    outputs (a plain per-state recurrence) add up to the layer's forward without D."""
    layer = tiny("s5").ssm_layers()["layers.0.ssm"]
    with torch.no_grad():
        ssm = layer.discrete()
        states = ssm.eigvals.shape[0]
        total = sum(state_kernel(ssm, n, 20) for n in range(states))
        torch.testing.assert_close(total, layer.impulse_response(20).double(), atol=1e-6, rtol=1e-5)
        u = torch.randn(3, 20, 6, dtype=torch.float64)
        lam, b, c = (t.to(torch.complex128) for t in (ssm.eigvals, ssm.B_bar, ssm.C_bar))
        x = torch.zeros(3, states, dtype=torch.complex128)
        per_state = []
        for k in range(20):
            x = lam * x + u[:, k].to(torch.complex128) @ b.T
            per_state.append(ssm.scale * (c * x[:, None, :]).real)  # (3, out, states)
        per_state = torch.stack(per_state, dim=1)  # (3, L, out, states)
        expected = layer(u.float()).double() - ssm.D.double() * u
        torch.testing.assert_close(per_state.sum(-1), expected, atol=1e-4, rtol=1e-4)
        # The measured per-state error of `measure_adversarial` is Σ ||state n's output||².
        torch.testing.assert_close(
            _state_errors(ssm, u), per_state.square().sum(dim=(0, 1, 2)), rtol=1e-9, atol=1e-9
        )


def test_s5_state_rows_exact_error_and_bounds() -> None:
    layer = tiny("s5").ssm_layers()["layers.0.ssm"]
    law = perturbation_law("uniform", 0.1, mu=0.05)
    rows = state_rows(layer, 16, law)
    with torch.no_grad():
        ssm = layer.discrete()
    assert [r["channel"] for r in rows] == list(range(ssm.eigvals.shape[0]))
    eps = law.sampler(16 * 6, seed=3)(4000).reshape(4000, 16, 6)
    sq = torch.stack([_state_errors(ssm, e[None]) for e in eps])  # (n, states)
    mean, se = sq.mean(dim=0), sq.std(dim=0) / 4000**0.5
    for r in rows:
        assert r["view"] == "state" and r["lam_max_abs"] == r["lam_min_abs"] < 1
        assert abs(r["exact"] - mean[r["channel"]].item()) < 5 * se[r["channel"]].item() + 1e-9
        assert r["kernel_lower_holds"] and r["kernel_upper_holds"]
    summary = summarise_rows([{"layer": "s5", **r} for r in rows])
    assert summary[0]["view"] == "state" and "spectral_upper_holds" not in summary[0]
    with pytest.raises(ValueError, match="SISO"):
        state_rows(tiny("dss").ssm_layers()["layers.0.ssm"], 16, law)


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


def test_bounds_cli_takes_the_family_from_the_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b.csv"
    ckpt = str(bundled_dir() / "dss_pgd.pt")
    assert main(["bounds", "--ckpt", ckpt, "--channels", "0-1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"dss from {ckpt}")
    assert len(pd.read_csv(out)) == 2 * 2
    for args in (["--init"], []):
        assert main(["bounds", *args, "--out", str(out)]) == 2
        assert "name the model family (--model)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--L", "0"], "argument --L: must be in [1, inf), got 0"),
        (["--eps", "-0.1"], "argument --eps: must be in (0, inf), got -0.1"),
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
    assert main([*args, "--out", str(out), "--figures", str(tmp_path / "figs"), "--pdf"]) == 0
    names = {p.name for p in (tmp_path / "figs").iterdir()} - {WRITTEN}
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


def test_a_saved_lti_check_draws_the_same_figures(tmp_path: Path) -> None:
    """The law is saved with the rows: `load_check` redraws the three figures (the sweep over L
    and the eigenvalues from the checkpoint) exactly as the fresh check does."""
    from ssmprobe.bounds.check import check_model, load_check

    ckpt = bundled_dir() / "dss_pgd.pt"
    check = check_model("dss", ckpt, channels=[0, 1, 2], mu=0.05)
    check.save(tmp_path / "bounds.csv")
    loaded = load_check(tmp_path / "bounds.csv", ckpt)
    assert loaded is not None and loaded.law == check.law
    fresh, again = check.figures(tmp_path / "fresh"), loaded.figures(tmp_path / "again")
    assert len(fresh) == 6 and [p.name for p in fresh] == [p.name for p in again]
    for a, b in zip(fresh, again, strict=True):
        if a.suffix == ".png":
            assert a.read_bytes() == b.read_bytes(), a.name
    # The bounds against L, computed once and kept with the check, draw the same figure.
    from ssmprobe.bounds.figures import length_medians

    assert loaded.needs_lengths
    loaded.lengths = length_medians(loaded.model, loaded.law)
    assert not loaded.needs_lengths
    loaded.save(tmp_path / "bounds.csv")
    kept = load_check(tmp_path / "bounds.csv", ckpt)
    assert kept is not None and kept.lengths == loaded.lengths
    assert set(kept.lengths) == {"layers.0.ssm", "layers.1.ssm"}
    redrawn = {p.name: p for p in kept.figures(tmp_path / "kept")}
    assert (
        redrawn["bounds_vs_L_dss.png"].read_bytes()
        == (tmp_path / "fresh" / "bounds_vs_L_dss.png").read_bytes()
    )
    payload = json.loads((tmp_path / "bounds.json").read_text())
    payload["meta"].pop("law")  # a cache from before the law was saved
    (tmp_path / "bounds.json").write_text(json.dumps(payload))
    assert load_check(tmp_path / "bounds.csv", ckpt) is None


def test_the_zoos_checks_ship_their_bounds_against_L() -> None:
    """The report draws the zoo's bounds-against-L figures from the shipped caches; they hold
    what `length_medians` computes from the checkpoint (S4 here; S5's take 30 s)."""
    from ssmprobe.bounds.check import load_check
    from ssmprobe.bounds.figures import length_medians

    for name in ("s4_pgd", "dss_pgd", "s5_pgd", "mega_pgd"):
        check = load_check(
            bundled_dir() / "cache" / name / "bounds.csv", bundled_dir() / f"{name}.pt"
        )
        assert check is not None and check.lengths is not None, name
    check = load_check(
        bundled_dir() / "cache" / "s4_pgd" / "bounds.csv", bundled_dir() / "s4_pgd.pt"
    )
    fresh = length_medians(check.model, check.law)  # one thread here: equal to round-off
    assert fresh.keys() == check.lengths.keys()
    for layer, series in fresh.items():
        for key, values in series.items():
            assert values == pytest.approx(check.lengths[layer][key], rel=1e-9, abs=1e-300)


def test_the_bounds_benchmark_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bounds.py"
    args = [sys.executable, str(script), "--model", "dss", "--preset", "digits", "--L", "16"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert "dss (digits preset, fresh): 2 layers" in out and "stopping per channel" in out
