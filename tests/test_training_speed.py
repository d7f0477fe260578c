"""Adversarial training builds each kernel once per batch (`models.base.shared_kernels`) and
trains to the same weights as with every speed-up off."""

from __future__ import annotations

import pytest
import torch

from ssmprobe.models import base, build_model, model_config
from ssmprobe.models.base import DIRECT_MAX_LENGTH, ConvSSM, speedups
from ssmprobe.training.fit import train_config, training_loss

LONG = DIRECT_MAX_LENGTH + 16  # the FFT path, where kernels are shared across the batch's passes


def tiny(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(family, d_model=8, n_layers=2, d_state=4))


def train_steps(family: str, method: str, on: bool, steps: int = 3) -> torch.nn.Module:
    model = tiny(family)
    config = train_config("digits", family, method=method, eps=0.1, alpha=0.025, steps=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(1)
    with speedups(on):
        for _ in range(steps):
            x = torch.rand(6, LONG, 1, generator=data)
            y = torch.randint(0, 10, (6,), generator=data)
            torch.manual_seed(2)  # the attacks' random starts, the same in both runs
            loss = training_loss(model, model, x, y, config)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


@pytest.mark.parametrize("family", ["s4", "dss", "mega", "s5"])
@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_training_with_shared_kernels_gives_the_weights_of_plain_training(
    family: str, method: str
) -> None:
    plain = train_steps(family, method, on=False).state_dict()
    fast = train_steps(family, method, on=True).state_dict()
    assert plain.keys() == fast.keys()
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], rtol=1e-4, atol=1e-5, msg=name)
    assert any(not torch.equal(fast[n], tiny(family).state_dict()[n]) for n in fast)  # it trained


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_each_kernel_is_built_once_per_batch(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny("s4")
    layers = [m for m in model.modules() if isinstance(m, ConvSSM)]
    built: list[ConvSSM] = []
    original = ConvSSM.conv_kernel

    def counted(self: ConvSSM, length: int) -> torch.Tensor:
        built.append(self)
        return original(self, length)

    monkeypatch.setattr(ConvSSM, "conv_kernel", counted)
    kernel_grads = []
    original_grad = base._kernel_grad
    monkeypatch.setattr(
        base, "_kernel_grad", lambda u, g: kernel_grads.append(1) or original_grad(u, g)
    )
    config = train_config("digits", "s4", method=method, steps=5)
    x, y = torch.rand(4, LONG, 1), torch.randint(0, 10, (4,))
    loss = training_loss(model, model, x, y, config)  # 5 attack steps + 1 or 2 training passes
    loss.backward()
    assert sorted(map(id, built)) == sorted(map(id, layers))
    # Only the training passes (TRADES has two) differentiate the kernel, never the attack's.
    assert len(kernel_grads) == len(layers) * (2 if method == "trades" else 1)
    for layer in layers:  # the training forward's graph reached every kernel parameter
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
