"""Captum attributions: IG completeness, saliency by hand, component shares of the adversarial
logit drop (cuts carry all of it; a bypassed component its patched part), plots, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from ssmprobe.attacks import pgd_linf
from ssmprobe.checkpoint import save_checkpoint
from ssmprobe.models import FAMILIES, build_model, model_config
from ssmprobe.probe.attribution import (
    ComponentShare,
    InputAttribution,
    attribute_checkpoint,
    component_shares,
    input_attributions,
    plot_input_attributions,
)

FAMILIES = sorted(FAMILIES)
TINY = {"d_model": 8, "n_layers": 1, "d_state": 4, "d_qk": 8, "d_ffn": 8}
LENGTH = 16


def tiny(family: str, **extra: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(family, **{**TINY, **extra})).eval()


def batch(n: int = 3, length: int = LENGTH, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, length, 1, generator=g), torch.arange(n) % 10


def adversarial(model: nn.Module, x: Tensor, y: Tensor, eps: float = 0.3) -> Tensor:
    g = torch.Generator().manual_seed(1)
    return pgd_linf(model, x, y, eps, eps / 4, 5, generator=g)


def true_logit(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).gather(1, y[:, None])[:, 0]


def assert_untouched(model: nn.Module) -> None:
    """No parameter gradient written, requires_grad restored, model still in eval mode."""
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("family", ["dss", "mamba", "s4"])
def test_ig_completeness(family: str) -> None:
    model = tiny(family)
    x, y = batch()
    x_adv = adversarial(model, x, y)
    attr = input_attributions(model, x, y, x_adv, method="ig", n_steps=64)
    assert isinstance(attr, InputAttribution) and attr.method == "ig"
    assert attr.clean.shape == attr.adversarial.shape == x.shape
    assert torch.equal(attr.x, x) and torch.equal(attr.x_adv, x_adv) and torch.equal(attr.y, y)
    assert attr.delta is not None and attr.delta.shape == (3, 2)
    zero = true_logit(model, torch.zeros_like(x), y)
    for col, (inputs, values) in enumerate(((x, attr.clean), (x_adv, attr.adversarial))):
        expected = true_logit(model, inputs, y) - zero
        total = values.sum((1, 2))
        # captum's delta is exactly this completeness gap, and it is small.
        torch.testing.assert_close(total - expected, attr.delta[:, col], atol=1e-5, rtol=0)
        assert (attr.delta[:, col].abs() <= 1e-2 * expected.abs() + 1e-4).all(), attr.delta
    assert_untouched(model)


@pytest.mark.parametrize("family", ["s4", "mamba"])
def test_saliency_is_abs_input_gradient(family: str) -> None:
    model = tiny(family)
    x, y = batch()
    x_adv = adversarial(model, x, y)
    attr = input_attributions(model, x, y, x_adv, method="saliency")
    assert attr.delta is None and attr.method == "saliency"
    for inputs, values in ((x, attr.clean), (x_adv, attr.adversarial)):
        z = inputs.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(z).gather(1, y[:, None]).sum(), z)
        torch.testing.assert_close(values, grad.abs())
    for p in model.parameters():  # the hand-made gradient above did not touch .grad either
        assert p.grad is None


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("residual", [False, True])
def test_component_shares_every_family(family: str, residual: bool) -> None:
    model = tiny(family, residual=residual)
    x, y = batch()
    x_adv = adversarial(model, x, y)
    drop, shares = component_shares(model, x, y, x_adv, n_steps=32)
    expected = (true_logit(model, x_adv, y) - true_logit(model, x, y)).mean().item()
    assert drop == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert drop < 0  # PGD lowers the true-class logit
    comps = model.components()
    assert [s.name for s in shares] == [c.name for c in comps]
    assert [s.kind for s in shares] == [c.kind for c in comps]
    for s in shares:
        assert isinstance(s, ComponentShare)
        assert s.share == pytest.approx(s.attribution / drop)
    # The block's last norm is its output, a cut of the network for every family: all of the
    # drop flows through it.
    last_norm = shares[-1]
    assert last_norm.kind == "norm"
    assert last_norm.share == pytest.approx(1.0, abs=0.03)
    assert last_norm.delta <= 0.03 * abs(drop)
    assert_untouched(model)


@pytest.mark.parametrize("family", ["dss", "s4", "s5", "mamba"])
def test_plain_chain_components_are_cuts(family: str) -> None:
    """Without the residual every component of a 1-layer S4/DSS/S5/Mamba block is a cut."""
    model = tiny(family)
    x, y = batch()
    drop, shares = component_shares(model, x, y, adversarial(model, x, y), n_steps=32)
    for s in shares:
        assert s.share == pytest.approx(1.0, abs=0.02), s
        assert s.delta <= 0.03 * abs(drop), s


def patched_logit(
    model: nn.Module, site_module: nn.Module, side: str, x: Tensor, x_adv: Tensor, y: Tensor
) -> Tensor:
    """logit_y(x_adv) with the site's tensor replaced by its value on the clean x."""
    seen: list[Tensor] = []
    if side == "input":
        record = site_module.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    else:
        record = site_module.register_forward_hook(lambda m, args, out: seen.append(out))
    true_logit(model, x, y)
    record.remove()
    (clean,) = seen
    if side == "input":
        patch = site_module.register_forward_pre_hook(lambda m, args: (clean, *args[1:]))
    else:
        patch = site_module.register_forward_hook(lambda m, args, out: clean)
    try:
        return true_logit(model, x_adv, y)
    finally:
        patch.remove()


@pytest.mark.parametrize(
    ("family", "name"),
    [("dss", "layers.0.ssm"), ("mamba", "layers.0.ssm"), ("mega", "layers.0.ssm")],
)
def test_bypassed_component_gets_its_patched_part(family: str, name: str) -> None:
    """With a skip around it, a component's attribution is logit_y(x_adv) minus the logit with
    its exit patched to the clean value (Mamba's ssm exits at out_proj's input)."""
    model = tiny(family, residual=True)
    x, y = batch()
    x_adv = adversarial(model, x, y)
    _, shares = component_shares(model, x, y, x_adv, n_steps=64)
    (comp,) = [c for c in model.components() if c.name == name]
    (share,) = [s for s in shares if s.name == name]
    through = true_logit(model, x_adv, y) - patched_logit(
        model, comp.exit.module, comp.exit.side, x, x_adv, y
    )
    assert share.attribution == pytest.approx(through.mean().item(), rel=0.02, abs=1e-6)
    assert abs(share.share - 1) > 0.5  # and it is not the whole drop


def test_plot_writes_png_and_pdf(tmp_path: Path) -> None:
    model = tiny("dss")
    x, y = batch(n=2, length=64)
    attr = input_attributions(model, x, y, adversarial(model, x, y, eps=0.1), n_steps=8)
    paths = plot_input_attributions(attr, (8, 8), tmp_path / "fig" / "ig.png")
    assert paths == [tmp_path / "fig" / "ig.png", tmp_path / "fig" / "ig.pdf"]
    assert paths[0].read_bytes().startswith(b"\x89PNG")
    assert paths[1].read_bytes().startswith(b"%PDF")
    # A sequence that is not an image is drawn as a (1, L) strip; a wrong shape is refused.
    saliency = input_attributions(model, x, y, attr.x_adv, method="saliency")
    strip = plot_input_attributions(saliency, None, tmp_path / "strip")
    assert [p.suffix for p in strip] == [".png", ".pdf"] and all(p.is_file() for p in strip)
    only = plot_input_attributions(saliency, None, tmp_path / "only", formats=(".png",))
    assert only == [tmp_path / "only.png"] and not (tmp_path / "only.pdf").exists()
    with pytest.raises(ValueError, match="image_shape"):
        plot_input_attributions(attr, (4, 4), tmp_path / "bad")


def digits_checkpoint(folder: Path) -> tuple[Path, nn.Module]:
    """A tiny DSS for the digits, trained with PGD at eps 0.05 (alpha 0.02), saved in `folder`."""
    config = model_config("dss", preset="digits", **TINY)
    torch.manual_seed(0)
    model = build_model(config)
    meta = {"dataset": "digits", "method": "pgd", "train": {"eps": 0.05, "alpha": 0.02}}
    return save_checkpoint(folder / "tiny.pt", config.to_dict(), model.state_dict(), meta), model


def test_attribute_checkpoint(tmp_path: Path) -> None:
    path, model = digits_checkpoint(tmp_path)
    out = attribute_checkpoint(path, n=2, n_steps=8, device="cpu")
    assert out["meta"]["eps"] == 0.05 and out["meta"]["alpha"] == 0.02  # the run's budget
    assert out["meta"]["attack"] == "pgd10" and out["meta"]["n"] == 2
    assert out["image_shape"] == (8, 8)
    inputs = out["inputs"]
    assert inputs.x.shape == (2, 64, 1) and inputs.method == "ig"
    assert (inputs.x_adv - inputs.x).abs().max() <= 0.05 + 1e-6
    assert len(out["components"]) == len(model.components())
    again = attribute_checkpoint(path, n=2, n_steps=8, device="cpu", eps=0.1, method="saliency")
    assert again["meta"]["eps"] == 0.1 and again["meta"]["alpha"] == 0.025  # preset alpha
    assert again["inputs"].delta is None
    same = attribute_checkpoint(path, n=2, n_steps=8, device="cpu", eps=0.1, method="saliency")
    assert torch.equal(same["inputs"].x_adv, again["inputs"].x_adv)  # seeded random start


def test_attribute_cli_writes_a_pdf_only_with_pdf(tmp_path: Path, capsys) -> None:
    """As every figure-writing command: PNG alone by default, a PDF beside it with --pdf."""
    from ssmprobe.cli import main

    ckpt, _ = digits_checkpoint(tmp_path)
    args = ["attribute", "--ckpt", str(ckpt), "--n", "1", "--ig-steps", "4", "--quiet"]
    for flags, suffixes in (([], {".png", ".json"}), (["--pdf"], {".png", ".pdf", ".json"})):
        out = tmp_path / ("pdf" if flags else "png")
        assert main([*args, "--out", str(out), *flags]) == 0
        assert {p.suffix for p in out.iterdir() if p.name.startswith("attributions_")} == suffixes
    assert "attributions_tiny_ig.pdf" in capsys.readouterr().out  # listed among the written


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 0}, {"method": "lrp"}, {"eps": 0.0}, {"eps": 1.5}, {"eps": -0.1}, {"n_steps": 0}],
)
def test_attribute_checkpoint_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        attribute_checkpoint("dss_pgd.pt", **kwargs)


def test_bad_inputs_raise() -> None:
    model = tiny("s5")
    x, y = batch()
    with pytest.raises(ValueError, match="method"):
        input_attributions(model, x, y, x, method="gradcam")
    with pytest.raises(ValueError, match="n_steps"):
        input_attributions(model, x, y, x, n_steps=0)
    with pytest.raises(ValueError, match="at least one"):
        input_attributions(model, x[:0], y[:0], x[:0])
    with pytest.raises(ValueError, match="x_adv"):
        component_shares(model, x, y, x[:, :-1])
    with pytest.raises(ValueError, match="y must"):
        component_shares(model, x, y[:2], x)
    with pytest.raises(ValueError, match="x must"):
        input_attributions(model, x[0], y, x[0])
