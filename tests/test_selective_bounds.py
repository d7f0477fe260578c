"""Theorem 4.1.1 on Mamba's time-varying SSM: the generalised H, its bounds, the Δ analysis."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssmprobe.bounds.lti import perturbation_law, summarise_rows
from ssmprobe.bounds.selective import naive_zoh_error, selective_rows, transfer_matrix
from ssmprobe.bounds.theorem import (
    causal_conv,
    eigen_bounds,
    eigen_bounds_time_varying,
    exact_error,
    exact_error_matrix,
    spectral_bound,
    spectral_bound_matrix,
)
from ssmprobe.checkpoint import save_checkpoint
from ssmprobe.cli import main
from ssmprobe.data import load_dataset, make_loader
from ssmprobe.models import build_model, model_config
from ssmprobe.models.mamba import Mamba

TINY = {"d_model": 4, "n_layers": 2, "d_state": 3}


def block() -> Mamba:
    torch.manual_seed(0)
    return Mamba(d_model=4, d_state=3).double()


def recurrence(ssm, x: torch.Tensor) -> torch.Tensor:
    """The plain eq. 10 recurrence with the per-step parameters of `ssm` held fixed, on the
    SSM input x (batch, L, D), without D and the gate."""
    h = torch.zeros(*ssm.A_bar[:, 0].shape, dtype=torch.float64)
    ys = []
    for k in range(x.shape[1]):
        h = ssm.A_bar[:, k] * h + ssm.B_bar_euler[:, k] * x[:, k, :, None]
        ys.append((h * ssm.C[:, k, None, :]).sum(-1))
    return torch.stack(ys, dim=1)


def test_generalised_h_is_the_linearised_pass() -> None:
    """H ε equals the change of the output for a pass with Δ, B, C fixed at the clean input's,
    and H x (plus D x, gated) is the block's own output."""
    mixer = block()
    hidden = torch.randn(2, 12, 4, dtype=torch.float64)
    with torch.no_grad():
        ssm = mixer.discrete(hidden)
    H = transfer_matrix(ssm)  # (2, D, L, L)
    assert H.shape == (2, 8, 12, 12) and (H.triu(1) == 0).all()
    eps = 0.1 * torch.randn_like(ssm.x)
    expected = recurrence(ssm, ssm.x + eps) - recurrence(ssm, ssm.x)
    got = (H @ eps.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    y = (H @ ssm.x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    gated = (y + ssm.D * ssm.x) * torch.nn.functional.silu(ssm.z)
    torch.testing.assert_close(gated, mixer.mix(hidden).detach(), rtol=1e-10, atol=1e-12)


def test_time_varying_forms_reduce_to_the_lti_ones() -> None:
    """Constant parameters: the eigen form is eq. 16, and the dense exact error and spectral
    bound of a Toeplitz H are those of its kernel."""
    length = 20
    lam = torch.tensor([0.9, 0.5], dtype=torch.float64)
    lo, hi = lam.min().expand(length), lam.max().expand(length)
    cb = torch.full((length,), 0.7, dtype=torch.float64)
    torch.testing.assert_close(
        torch.stack(eigen_bounds_time_varying(lo, hi, cb, 0.3, 2.0)),
        torch.stack(eigen_bounds(lam.min(), lam.max(), cb[0], length, 0.3, 2.0)),
    )
    h = torch.randn(3, length, dtype=torch.float64)
    dense = causal_conv(h[:, None, :], torch.eye(length, dtype=torch.float64)).transpose(1, 2)
    torch.testing.assert_close(exact_error_matrix(dense, 0.2, 0.5), exact_error(h, 0.2, 0.5))
    torch.testing.assert_close(spectral_bound_matrix(dense, 1.5), spectral_bound(h, 1.5))


def test_exact_error_matrix_matches_monte_carlo() -> None:
    torch.manual_seed(1)
    H = torch.randn(8, 8, dtype=torch.float64).tril()
    law = perturbation_law("uniform", 0.2, mu=0.1)
    eps = law.sampler(8)(20000)
    errors = (eps @ H.T).square().sum(-1)
    se = errors.std() / math.sqrt(len(errors))
    assert abs(errors.mean() - exact_error_matrix(H, law.mu, law.sigma2)) < 5 * se


def test_naive_zoh_loses_everything_below_machine_epsilon() -> None:
    """(e^z - 1)/z as written: fine at |z| ~ 1, relative error ~ eps/|z| below, and B̄ = 0
    (error 1) once e^z rounds to 1; 0/0 at z = 0 counts as infinite."""
    z = torch.tensor([-1.0, -1e-4, -1e-9, -1e-18, 0.0], dtype=torch.float64)
    f32, f64 = naive_zoh_error(z, torch.float32), naive_zoh_error(z, torch.float64)
    assert f32[0] < 1e-6 and 1e-6 < f32[1] < 1e-2 and f32[2] == 1.0 and f32[3] == 1.0
    assert f64[0] < 1e-15 and f64[1] < 1e-11 and 1e-9 < f64[2] < 1e-6 and f64[3] == 1.0
    assert math.isinf(f32[4]) and math.isinf(f64[4])


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config("mamba", "digits", **TINY))


def test_selective_rows_for_a_law() -> None:
    data = load_dataset("digits", "test")
    loader = make_loader(data.subset(torch.arange(6)), 4)
    law = perturbation_law("uniform", 0.1, mu=0.05)
    rows, deltas = selective_rows(tiny_model(), loader, law, channels=[0, 3, 7])
    assert [r["channel"] for r in rows] == [0, 3, 7] * 2 and rows[0]["L"] == 64
    for r in rows:
        assert r["spectral_upper_holds"]  # valid for any H
        assert r["spectral_upper_fail_rate"] == 0 and 0 <= r["kernel_upper_fail_rate"] <= 1
        assert 0 < r["lam_min_abs"] <= r["lam_max_abs"] < 1 and r["exact"] > 0
    assert set(deltas) == {"layers.0.ssm", "layers.1.ssm"}
    summary = deltas["layers.0.ssm"].summary()
    assert summary["clean"]["points"] == 6 * 64 * 8 and "adversarial" not in summary
    assert 0.5 < summary["clean"]["b_norm_vs_dt_slope"] < 1.5  # B̄ = Δφ₁(ΔA)B shrinks with Δ
    assert len(summarise_rows(rows)) == 2
    with pytest.raises(ValueError, match="channels"):
        selective_rows(tiny_model(), loader, law, channels=[8])


@pytest.fixture(scope="module")
def mamba_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = model_config("mamba", "digits", **TINY)
    meta = {"dataset": "digits", "method": "pgd", "train": {"eps": 0.1, "alpha": 0.025}}
    out = tmp_path_factory.mktemp("mamba") / "tiny.pt"
    return save_checkpoint(out, config.to_dict(), tiny_model().state_dict(), meta)


def test_mamba_adversarial_error_is_measured_with_moving_parameters(
    mamba_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "m.csv"
    args = ["bounds", "--model", "mamba", "--ckpt", str(mamba_checkpoint), "--n", "5"]
    figures = ["--figures", str(tmp_path), "--pdf"]
    assert main([*args, "--perturb", "adversarial", "--out", str(out), *figures]) == 0
    printed = capsys.readouterr().out
    assert "PGD-10 (eps 0.1) on H of 5 digits test samples" in printed and "naive ZOH" in printed
    rows = pd.read_csv(out)
    assert len(rows) == 2 * 8 and (rows["exact"] > 0).all() and (rows["linearised"] > 0).all()
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["delta"]["layers.1.ssm"]["adversarial"]["points"] == 5 * 64 * 8
    names = {p.name for p in tmp_path.iterdir()}
    assert {"bounds_mamba.png", "delta_mamba.png", "delta_mamba.pdf"} <= names


def test_mamba_adversarial_error_equals_the_recurrence(mamba_checkpoint: Path) -> None:
    """Independently of H: the adversarial rows' exact error is E||y'(x', Δ', B', C') - y||² of
    the plain recurrence on the recorded SSM inputs."""
    from ssmprobe.attacks import attack_config
    from ssmprobe.loading import load_model
    from ssmprobe.probe.recorder import adversarial_features

    model = load_model(mamba_checkpoint, "cpu")
    meta = model.meta
    model.double()
    data = load_dataset("digits", "test")
    batches = [(x.double(), y) for x, y in make_loader(data.subset(torch.arange(4)), 4)]
    attack = attack_config("pgd10", meta, None)
    rows, _ = selective_rows(model, batches, attack, layers=[1])
    comps = [c for c in model.components() if c.name == "layers.1.ssm"]
    mixer = model.ssm_layers()["layers.1.ssm"]
    ((clean, adv, _),) = list(adversarial_features(model, batches, attack, comps))
    with torch.no_grad():
        s, s_adv = (
            mixer.discrete(clean["layers.1.ssm"].entry),
            mixer.discrete(adv["layers.1.ssm"].entry),
        )
        change = recurrence(s_adv, s_adv.x) - recurrence(s, s.x)
    expected = change.square().sum(dim=1).mean(dim=0)
    got = torch.tensor([r["exact"] for r in rows], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-12)


def test_mamba_law_cli_and_bad_input(mamba_checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.csv"
    base = ["bounds", "--model", "mamba", "--ckpt", str(mamba_checkpoint), "--out", str(out)]
    assert main([*base, "--n", "3", "--channels", "0-1", "--mu", "0.05"]) == 0
    assert "uniform perturbation at the SSM input" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 4
    out.unlink()
    assert main([*base, "--channels", "9"]) == 2
    assert "outside the layer" in capsys.readouterr().err and not out.exists()
    assert (
        main(["bounds", "--model", "s4", "--ckpt", str(mamba_checkpoint), "--out", str(out)]) == 2
    )
    assert "holds a mamba, not a s4" in capsys.readouterr().err


def test_a_saved_mamba_check_draws_the_same_figures(mamba_checkpoint: Path, tmp_path: Path) -> None:
    """`load_check` brings back the rows and the Δ points from the cache: the report draws a
    cached check's figures without redoing it, and they are the fresh ones byte for byte."""
    from ssmprobe.bounds.check import check_model, load_check

    check = check_model("mamba", mamba_checkpoint, n=4)
    written = check.save(tmp_path / "bounds.csv")
    assert tmp_path / "bounds_delta.npz" in written
    loaded = load_check(tmp_path / "bounds.csv", mamba_checkpoint)
    assert loaded is not None and loaded.rows == json.loads(json.dumps(check.rows))
    fresh, again = check.figures(tmp_path / "fresh"), loaded.figures(tmp_path / "again")
    assert [p.name for p in fresh] == [p.name for p in again]
    for a, b in zip(fresh, again, strict=True):
        if a.suffix == ".png":
            assert a.read_bytes() == b.read_bytes(), a.name
    (tmp_path / "bounds_delta.npz").unlink()  # a cache from before the Δ points were saved
    assert load_check(tmp_path / "bounds.csv", mamba_checkpoint) is None
