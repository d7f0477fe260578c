"""Crop-flip: stays in [0, 1], reproducible with the seed, and every output is one of the
81 x 2 shifted (zero-filled) and flipped copies of its input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssmprobe.training.augment import crop_flip
from ssmprobe.training.fit import train_config


def candidates(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """All crops of the zero-padded (H, W, C) image, plain and flipped, by plain slicing."""
    side = image.shape[0]
    padded = F.pad(image, (0, 0, pad, pad, pad, pad))
    crops = [
        padded[dy : dy + side, dx : dx + side]
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
    ]
    return crops + [c.flip(1) for c in crops]


@pytest.mark.parametrize(("side", "channels"), [(8, 1), (6, 3)])
def test_each_output_is_a_crop_or_its_mirror(side: int, channels: int) -> None:
    x = torch.rand(16, side * side, channels)
    out = crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    for before, after in zip(x, out, strict=True):
        image = before.view(side, side, channels)
        assert any(torch.equal(after.view(side, side, channels), c) for c in candidates(image, 4))


def test_reproducible_with_the_seed_and_varied_across_samples() -> None:
    x = torch.rand(64, 64, 1)
    first = crop_flip(x, torch.Generator().manual_seed(3))
    assert torch.equal(first, crop_flip(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, crop_flip(x, torch.Generator().manual_seed(4)))
    assert not torch.equal(first, x)


def test_non_square_and_presets() -> None:
    with pytest.raises(ValueError, match="square"):
        crop_flip(torch.rand(2, 10, 1), torch.Generator())
    assert train_config("cifar10").augment == "crop-flip"
    assert train_config("mnist").augment == train_config("digits").augment == "none"
    with pytest.raises(ValueError, match="augment"):
        train_config("digits", augment="mixup")
