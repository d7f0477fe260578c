"""Frozen weights treated as frozen, and AutoAttack sharded sample for sample."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ssmprobe.attacks import attack_mode
from ssmprobe.checkpoint import save_checkpoint
from ssmprobe.evaluation.shards import (
    attack_shard,
    load_shard,
    merge,
    save_shard,
    shard_batches,
    sharded_attack,
)
from ssmprobe.models import build_model, model_config
from ssmprobe.models.base import (
    _CPU_FFT_CHUNK,
    DIRECT_MAX_LENGTH,
    LTISSM,
    NO_SPEEDUPS,
    fft_causal_conv,
    kernel_conv,
    kernel_spectrum,
    speedups,
    time_conv,
    toeplitz,
)

KERNEL_FAMILIES = ("s4", "dss", "s5", "mega")


def tiny(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(family, d_model=8, n_layers=1, d_state=4)).eval()


def ssm_layers(model: torch.nn.Module) -> list[LTISSM]:
    return [m for m in model.modules() if isinstance(m, LTISSM)]


def kept(layer: LTISSM) -> dict:
    return layer.__dict__.get("_frozen_memo", {})


@pytest.mark.parametrize("family", KERNEL_FAMILIES)
def test_a_kept_kernel_gives_what_a_fresh_one_gives(family: str) -> None:
    model = tiny(family)
    x = torch.rand(3, 16, 1)
    with torch.no_grad():
        fresh = model(x)
        first, again = model(x), model(x)  # the first pass keeps the spectrum, the next reuses it
    assert all(kept(layer) for layer in ssm_layers(model))
    torch.testing.assert_close(first, fresh, rtol=0, atol=0)
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)
    with attack_mode(model, True):  # frozen weights, a gradient to the input
        x_in = x.clone().requires_grad_(True)
        model(x_in).sum().backward()
    x_ref = x.clone().requires_grad_(True)
    model(x_ref).sum().backward()  # weights trainable: computed afresh
    torch.testing.assert_close(x_in.grad, x_ref.grad)


def fresh_output(family: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a new model (nothing kept) with `model`'s weights computes."""
    copy = tiny(family)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        return copy(x)


@pytest.mark.parametrize("family", KERNEL_FAMILIES)
def test_a_kept_kernel_never_survives_a_change_of_the_weights(family: str) -> None:
    model = tiny(family)
    x = torch.rand(2, 16, 1)
    with torch.no_grad():
        before = model(x)  # keeps the spectrum
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).square().sum().backward()
    optimizer.step()  # an in-place update
    with torch.no_grad():
        stepped = model(x)
    assert not torch.allclose(stepped, before)
    torch.testing.assert_close(stepped, fresh_output(family, model, x), rtol=0, atol=0)
    other = tiny(family)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    model.load_state_dict(other.state_dict())  # an in-place copy
    with torch.no_grad():
        torch.testing.assert_close(model(x), other(x), rtol=0, atol=0)
        next(ssm_layers(model)[0].parameters()).mul_(1.5)  # any in-place change
        changed = model(x)
    torch.testing.assert_close(changed, fresh_output(family, model, x), rtol=0, atol=0)


@pytest.mark.parametrize("family", KERNEL_FAMILIES)
def test_training_never_uses_a_kept_kernel(family: str) -> None:
    model = tiny(family).train()
    x = torch.rand(2, 16, 1)
    with torch.no_grad():
        model(x)  # keeps a spectrum (no graph)
    model(x).sum().backward()  # trainable weights: must get gradients through a fresh kernel
    for layer in ssm_layers(model):
        for name, p in layer.named_parameters():  # every one: a kept kernel would leave only D
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("family", KERNEL_FAMILIES)
@pytest.mark.parametrize("length", [16, DIRECT_MAX_LENGTH + 8])
def test_the_fast_paths_compute_what_the_plain_ones_do(family: str, length: int) -> None:
    """Toeplitz products (short L), FFTs along time with a kept spectrum (long L), S5's direct
    form: the same outputs and input gradients as the per-pass FFT / scan, to float32 rounding."""
    model = tiny(family)
    x = torch.rand(3, length, 1)
    outputs, grads = [], []
    for on in (False, True):
        with speedups(on), attack_mode(model, True):
            x_in = x.clone().requires_grad_(True)
            out = model(x_in)
            out.square().sum().backward()
        outputs.append(out.detach())
        grads.append(x_in.grad)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


def test_toeplitz_is_the_causal_convolution() -> None:
    kernel, u = torch.randn(3, 7, dtype=torch.float64), torch.randn(2, 7, 3, dtype=torch.float64)
    loop = torch.zeros_like(u)
    for k in range(7):
        for j in range(k + 1):
            loop[:, k] += kernel[:, k - j] * u[:, j]
    by_product = torch.einsum("bjh,hjk->bkh", u, toeplitz(kernel))
    torch.testing.assert_close(by_product, loop)
    torch.testing.assert_close(fft_causal_conv(u.transpose(1, 2), kernel).transpose(1, 2), loop)


def test_the_chunked_convolutions_have_the_right_values_and_gradients() -> None:
    """Batches of 6 run in FFT chunks of 4 (one full, one partial): the values are the plain
    sums, and the custom backwards give autograd's numerical gradients (to u for a constant
    spectrum; to u and to the kernel for `kernel_conv`, whose kernel gradient is a correlation
    summed over the batch)."""
    assert _CPU_FFT_CHUNK == 4
    kernel = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    u = torch.randn(6, 9, 3, dtype=torch.float64, requires_grad=True)
    loop = torch.zeros_like(u)
    for k in range(9):
        for j in range(k + 1):
            loop[:, k] += kernel[:, k - j] * u[:, j]
    spectrum = kernel_spectrum(kernel.detach())
    torch.testing.assert_close(time_conv(u, spectrum), loop)
    torch.testing.assert_close(kernel_conv(u, kernel, spectrum), loop)
    assert torch.autograd.gradcheck(lambda t: time_conv(t, spectrum), (u,))
    assert torch.autograd.gradcheck(
        lambda t, k: kernel_conv(t, k, kernel_spectrum(k.detach())), (u, kernel)
    )


def test_speedups_off_keeps_nothing() -> None:
    model = tiny("dss")
    with speedups(False), torch.no_grad():
        model(torch.rand(1, 16, 1))
    assert not kept(ssm_layers(model)[0])


def test_the_environment_switches_speedups_off_for_a_new_process() -> None:
    import subprocess
    import sys

    code = "from ssmprobe.models.base import speedups_enabled as on; print(on())"
    env = {**os.environ, NO_SPEEDUPS: "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "False"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny("dss")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    config = model_config("dss", d_model=8, n_layers=1, d_state=4).to_dict()
    meta = {"dataset": "digits", "method": "pgd", "train": {"eps": 0.1}, "epoch": 1}
    save_checkpoint(path, config, model.state_dict(), meta)
    return path


def test_sharded_autoattack_equals_unsharded_sample_for_sample(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    whole = sharded_attack(tiny_checkpoint, "aa-fast", n=12, batch_size=4, workers=1)
    assert len(whole.correct) == 12 and sorted(whole.batches) == [0, 1, 2]
    # Two shards in two processes, and the same shards on "other machines" through files.
    two = sharded_attack(tiny_checkpoint, "aa-fast", n=12, batch_size=4, workers=2)
    assert two.correct == whole.correct
    files = []
    for i in range(3):
        part = attack_shard(tiny_checkpoint, "aa-fast", 12, 4, shard_batches(12, 4, 3, i))
        files.append(tmp_path / f"shard{i}.json")
        save_shard(files[-1], part, {"checkpoint": "tiny.pt"})
    merged = merge([load_shard(f)[0] for f in files])
    assert merged.correct == whole.correct
    with pytest.raises(ValueError, match=r"batches \[1\] are missing"):
        _ = merge([load_shard(files[0])[0], load_shard(files[2])[0]]).correct
    with pytest.raises(ValueError, match=r"batches \[2\] are missing"):  # the last one too
        _ = merge([load_shard(files[0])[0], load_shard(files[1])[0]]).correct
    with pytest.raises(ValueError, match="come from two shards"):
        merge([load_shard(files[0])[0], load_shard(files[0])[0]])


def test_only_autoattack_is_sharded(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="only aa, aa-fast are sharded"):
        attack_shard(tiny_checkpoint, "pgd10", 4, 4, [0])


def test_eval_workers_and_shards_give_the_unsharded_record(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from ssmprobe.cli import main
    from ssmprobe.evaluation.evaluate import evaluate

    args = {"n": 12, "batch_size": 4, "progress": False}
    plain = evaluate(tiny_checkpoint, ["aa-fast"], out=tmp_path / "a.json", **args)
    two = evaluate(
        tiny_checkpoint, ["aa-fast"], out=tmp_path / "b.json", workers=2, **args
    )
    assert two["results"] == plain["results"] and len(two["per_sample"]["aa-fast"]) == 12
    out = tmp_path / "c.json"
    cli = ["eval", "--ckpt", str(tiny_checkpoint), "--attack", "aa-fast", "--n", "12"]
    cli += ["--batch-size", "4", "--shards", "3", "--out", str(out), "--quiet"]
    assert main(cli) == 0
    record = json.loads(out.read_text())
    assert record["results"] == plain["results"]
    assert record["per_sample"] == two["per_sample"]
