"""The feature-discrepancy probe: recorder, metrics, streaming sums, CLI and figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import rel_entr
from torch import nn

from ssmprobe.attacks import AttackConfig
from ssmprobe.checkpoint import bundled_dir, resolve_checkpoint
from ssmprobe.cli import main
from ssmprobe.models import FAMILIES, build_model, model_config
from ssmprobe.models.backbone import MambaBlock, MegaBlock
from ssmprobe.models.base import module_component
from ssmprobe.probe import DiscrepancyStats, record, summarise
from ssmprobe.probe.discrepancy import collect, component_rows, measures
from ssmprobe.probe.metrics import kl, mse, per_step_sq_error, rate, relative

ROOT = Path(__file__).resolve().parent.parent
TINY = {"d_model": 8, "n_layers": 2, "d_state": 4, "d_qk": 8, "d_ffn": 16}


def tiny(model: str, ads: str | None = None, residual: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(model, ads=ads, residual=residual, **TINY)).eval()


def manual_features(model: nn.Module, u: torch.Tensor) -> dict[str, tuple]:
    """Every component's input and output, computed by calling the blocks' parts by hand."""
    x = model.encoder_norm(model.encoder(u))
    out: dict[str, tuple] = {}
    for i, block in enumerate(model.layers):
        p = f"layers.{i}"
        y = block.mixer.mix(x) if isinstance(block, MambaBlock) else block.ssm(x)
        out[f"{p}.ssm"] = (x, y)
        if block.ads is not None:
            a = block.ads(y)
            out[f"{p}.ads"] = (y, a)
            y = a
        if isinstance(block, MegaBlock):
            a = block.attention(y, x)
            h = block.norm(a)
            lin = block.linear(h)
            x_next = block.ffn_norm(h + lin)
            out |= {
                f"{p}.attention": (y, a),
                f"{p}.norm": (a, h),
                f"{p}.linear": (h, lin),
                f"{p}.ffn_norm": (h + lin, x_next),
            }
        else:
            if isinstance(block, MambaBlock):
                lin_in, lin_out = y, block.mixer.out_proj(y)
                y = lin_out
            elif block.linear is not None:
                lin_in = F.gelu(y)
                lin_out = block.linear(lin_in)
                y = F.gelu(lin_out)
            if isinstance(block, MambaBlock) or block.linear is not None:
                out[f"{p}.linear"] = (lin_in, lin_out)
            norm_in = x + y if block.residual else y
            x_next = block.norm(norm_in)
            out[f"{p}.norm"] = (norm_in, x_next)
        x = x_next
    return out


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("ads", [None, "relu"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_recorder_captures_what_a_manual_forward_computes(family: str, ads: str | None) -> None:
    model = tiny(family, ads, residual=family == "dss")
    u = torch.rand(3, 16, 1)
    with torch.no_grad():
        expected = manual_features(model, u)
        with record(model) as rec:
            model(u)  # a forward outside `capture` (like an attack's) is not recorded
            got = rec.capture(u)
    assert list(got) == [c.name for c in model.components()]
    assert set(got) == set(expected)
    for name, (entry, exit_) in expected.items():
        torch.testing.assert_close(got[name].entry, entry, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got[name].exit, exit_, rtol=1e-6, atol=1e-6)
    assert hook_count(model) == 0


def test_hooks_are_removed_after_an_error_inside_the_forward() -> None:
    model = tiny("s4")

    def explode(_module: nn.Module, _args: tuple) -> None:
        raise RuntimeError("boom")

    extra = model.layers[1].register_forward_pre_hook(explode)
    with pytest.raises(RuntimeError, match="boom"), record(model) as rec:
        rec.capture(torch.rand(2, 16, 1))
    extra.remove()
    assert hook_count(model) == 0
    with pytest.raises(ValueError, match="outside"), record(model):
        raise ValueError("outside")
    assert hook_count(model) == 0


def test_mse_and_kl_by_hand() -> None:
    f = torch.zeros(1, 2, 1)
    f_adv = torch.tensor([[[1.0], [3.0]]])
    assert mse(f, f_adv).item() == pytest.approx(5.0)  # (1 + 9) / T, T = 2
    assert per_step_sq_error(f, f_adv).tolist() == [[1.0, 9.0]]
    # S(f) = (1/2, 1/2); S(f') over the sequence of (0, ln 3) = (1/4, 3/4).
    f_adv = torch.tensor([[[0.0], [math.log(3.0)]]])
    assert kl(f, f_adv).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert relative(torch.tensor([6.0]), torch.full((1, 4, 1), 1.5)).item() == pytest.approx(2.0)
    assert rate(2.0, 3.0) == pytest.approx(50.0) and math.isnan(rate(0.0, 1.0))


def test_kl_against_scipy() -> None:
    torch.manual_seed(1)
    f, f_adv = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)
    p, q = (F.softmax(t, dim=1).numpy() for t in (f, f_adv))
    expected = rel_entr(p, q).sum(axis=1).mean(axis=1)
    np.testing.assert_allclose(kl(f, f_adv).numpy(), expected, rtol=1e-12)


features = st.integers(0, 2**31 - 1).map(
    lambda seed: torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(seed)).double()
)


@settings(max_examples=30, deadline=None)
@given(f=features, g=features, shift=st.floats(-50, 50))
def test_kl_ignores_constants_over_time(f: torch.Tensor, g: torch.Tensor, shift: float) -> None:
    torch.testing.assert_close(kl(f, f), torch.zeros(2, dtype=torch.float64))
    per_channel = shift * torch.arange(1, 4, dtype=torch.float64)  # constant over positions
    torch.testing.assert_close(kl(f + per_channel, g + per_channel), kl(f, g))
    torch.testing.assert_close(kl(f + per_channel, g), kl(f, g))
    assert (kl(f, g) >= 0).all()


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


class IdentityThenHalf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.same, self.halve = nn.Identity(), Scale(0.5)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.halve(self.same(u)).mean(dim=1)

    def components(self) -> list:
        return [
            module_component("layers.0.same", "linear", self.same),
            module_component("layers.0.halve", "linear", self.halve),
        ]


def test_identity_rate_is_zero_and_halving_rate_is_minus_75_percent() -> None:
    model = IdentityThenHalf()
    stats = DiscrepancyStats()
    x = torch.rand(4, 10, 3)
    with record(model) as rec:
        stats.add(rec.capture(x), rec.capture(x + 0.1 * torch.randn_like(x)))
    rows = {
        (r["component"], r["metric"], r["norm"]): r for r in component_rows(model, stats, "test")
    }
    for metric in ("mse", "kl"):
        assert rows["layers.0.same", metric, "none"]["rate"] == pytest.approx(0.0, abs=1e-9)
    assert rows["layers.0.halve", "mse", "none"]["rate"] == pytest.approx(-75.0)
    assert rows["layers.0.halve", "mse", "relative"]["rate"] == pytest.approx(-50.0)  # ||f||/2


def digits_batches(n: int, batch: int, length: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(n, length, 1, generator=g), torch.randint(0, 10, (n,), generator=g)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def test_batches_of_seven_give_the_numbers_of_one_batch() -> None:
    model = tiny("mega")
    attack = AttackConfig("fgsm", 0.1)
    split = collect(model, digits_batches(21, 7), attack, progress=False)
    whole = collect(model, digits_batches(21, 21), attack, progress=False)
    assert split.count == whole.count == 21
    for a, b in zip(
        component_rows(model, split, "test"), component_rows(model, whole, "test"), strict=True
    ):
        assert a["before"] == pytest.approx(b["before"], rel=1e-5)
        assert a["after"] == pytest.approx(b["after"], rel=1e-5)
    for key, value in whole.steps.items():
        torch.testing.assert_close(split.steps[key], value, rtol=1e-5, atol=1e-9)


def test_memory_grows_only_by_the_per_sample_values_of_the_spread() -> None:
    model = tiny("dss")
    attack = AttackConfig("fgsm", 0.1)
    peaks, sizes, kept = [], [], []
    # A first run keeps the kernel (the layer's frozen operator), which the measured runs reuse.
    collect(model, iter(digits_batches(7, 7)), attack, progress=False)
    for n in (14, 140):
        batches = digits_batches(n, 7)
        tracemalloc.start()
        stats = collect(model, iter(batches), attack, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        sizes.append((len(stats.sums), {k: v.shape for k, v in stats.steps.items()}))
        kept.append({k: v.numel() for k, v in stats.samples().items()})
    assert sizes[0] == sizes[1]  # the sums and per-position curves: the same for 14 and 140
    assert kept[0].keys() == kept[1].keys()
    assert set(kept[0].values()) == {14} and set(kept[1].values()) == {140}  # one float each
    # Besides those floats (tensor storage, not traced here), one tensor object per batch and
    # key, and the interpreter's free lists (a few kB whatever N is).
    per_batch = 300 * len(kept[0])
    assert abs(peaks[1] - peaks[0]) < max(0.1 * peaks[0], 8192) + per_batch * (140 - 14) // 7


def test_summary_averages_layer_rates() -> None:
    rows = [
        {"checkpoint": "c", "model": "s4", "method": "pgd", "ads": None, "dataset": "digits",
         "kind": "ssm", "split": "test", "metric": "mse", "norm": "none",
         "before": b, "after": a, "rate": rate(b, a)}
        for b, a in ((1.0, 2.0), (4.0, 2.0))
    ]  # fmt: skip
    (summary,) = summarise(rows)
    assert summary["layers"] == 2 and summary["rate"] == pytest.approx((100.0 - 50.0) / 2)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    args = (
        "train --model mega --method pgd --epochs 1 --d-model 8 --n-layers 1 --d-state 4 "
        f"--batch-size 256 --steps 1 --train-eval-size 16 --test-eval-size 16 --quiet --out {out}"
    )
    assert main(args.split()) == 0
    return out / "mega_pgd_digits" / "last.pt"


def test_discrepancy_cli_end_to_end(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "d.csv"
    args = ["discrepancy", "--ckpt", str(tiny_checkpoint), "--n", "20", "--batch-size", "7"]
    assert main([*args, "--out", str(csv), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mega pgd on digits, pgd10 at eps 0.1" in out and "attention" in out
    frame = pd.read_csv(csv)
    components = 5  # ssm, attention, norm, linear, ffn_norm
    # x (MSE, KL plain and relative, NSR) x splits
    assert len(frame) == components * 5 * 2
    assert set(zip(frame["metric"], frame["norm"], strict=True)) == set(measures())
    assert set(frame["split"]) == {"train", "test"} and set(frame["kind"]) >= {"attention"}
    assert (frame["model"] == "mega").all() and (frame["eps"] == 0.1).all()
    saved = json.loads(csv.with_suffix(".json").read_text())["results"][0]
    assert saved["meta"]["n"] == {"train": 20, "test": 20}
    assert len(saved["steps"]) == components * 2 and len(saved["steps"][0]["after"]) == 64
    # Same samples, same attack seed: the same numbers again.
    again = tmp_path / "again.csv"
    assert main([*args, "--out", str(again), "--quiet"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again), frame)

    figs = tmp_path / "figs"
    assert main(["plot", "discrepancy", str(csv), "--out", str(figs), "--pdf"]) == 0
    names = {p.name for p in figs.iterdir()}
    assert {"figure3_discrepancy.png", "figure3_discrepancy.pdf"} <= names
    # Rows of a model with AdS go to Figure 4.
    ads = tmp_path / "ads.csv"
    frame.assign(ads="relu", checkpoint="ads.pt").to_csv(ads, index=False)
    assert main(["plot", "discrepancy", str(csv), str(ads), "--out", str(figs)]) == 0
    assert (figs / "figure4_discrepancy_ads.png").is_file()
    for path in figs.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for path in figs.glob("*.pdf"):
        assert path.read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attack", "cw"], "unknown attack"),
        (["--n", "0"], "argument --n: must be in [1, inf), got 0"),
        (["--eps", "1.5"], "must be in (0, 1]"),
        (["--eps", "0"], "argument --eps: must be in (0, inf), got 0"),
        (["--split", "val"], "unknown split val"),
        (["--device", "cuda:0"], "CUDA is not available"),
    ],
)
def test_discrepancy_bad_input(
    tiny_checkpoint: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "d.csv"
    code = main(["discrepancy", "--ckpt", str(tiny_checkpoint), *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ssmprobe: error:") and message in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_discrepancy_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    out = tmp_path / "d.csv"
    assert (
        main(["discrepancy", "--ckpt", "s4_pgd.pt", "--ckpt", str(bogus), "--out", str(out)]) == 1
    )
    assert "notes.pt" in capsys.readouterr().err and not out.exists()


def test_train_out_naming_a_file_is_one_clear_error(tmp_path: Path, capsys) -> None:
    file = tmp_path / "runs"
    file.write_text("")
    assert main(["train", "--epochs", "1", "--out", str(file)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_bare_names_resolve_to_bundled_checkpoints() -> None:
    assert resolve_checkpoint("s4_pgd.pt") == bundled_dir() / "s4_pgd.pt"
    assert resolve_checkpoint("s4_pgd") == bundled_dir() / "s4_pgd.pt"
    assert resolve_checkpoint("no_such.pt") == Path("no_such.pt")
    assert resolve_checkpoint("sub/s4_pgd.pt") == Path("sub/s4_pgd.pt")  # a path stays a path


@pytest.mark.slow
def test_bundled_names_resolve_after_a_plain_install(tmp_path: Path) -> None:
    """`pip install .` (not editable) puts the checkpoints in the package: names still resolve."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    code = (
        "import ssmprobe, sys; from ssmprobe.checkpoint import resolve_checkpoint;"
        "from ssmprobe.loading import load_model;"
        "p = resolve_checkpoint('dss_pgd.pt'); load_model('dss_pgd.pt');"
        "print(ssmprobe.__file__); print(p)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
    )
    package, resolved = result.stdout.split()
    assert package.startswith(str(target)) and resolved.startswith(str(target))


def test_attribute_cli_writes_its_figure_and_shares(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    args = ["attribute", "--ckpt", str(tiny_checkpoint), "--n", "2", "--ig-steps", "16"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "IG completeness" in out and "layers.0.attention" in out
    assert (tmp_path / "attributions_last_ig.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "attributions_last_ig.json").read_text())
    assert [c["name"] for c in saved["components"]][:2] == ["layers.0.ssm", "layers.0.attention"]
    assert main([*args, "--method", "lime"]) == 2  # renamed: --attribution
    assert "--method is now --attribution" in capsys.readouterr().err
    assert main([*args, "--n", "0", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "argument --n: must be in [1, inf)" in err and not (tmp_path / "none").exists()
