"""Data augmentation of the paper's reference code: random crop and horizontal flip.

CIFAR-10 images are padded with 4 zero pixels on every side, cropped back to 32 x 32 at a random
offset and flipped left-right with probability 1/2, before they become sequences. Here they
already are sequences, (B, H·W, C) in pixel order (`data`), of square images, so the batch is
viewed as images, augmented, and read back in the same order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTS = ("none", "crop-flip")


def crop_flip(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Each sequence of `x` (B, L, C), read as a square image, randomly cropped from its
    `pad`-zero-padded copy and flipped left-right with probability 1/2 (offsets and flips drawn
    from `generator`, on the CPU). Values stay in the input's range (zeros come in)."""
    batch, length, channels = x.shape
    side = math.isqrt(length)
    if side * side != length:
        raise ValueError(f"crop-flip needs square images; a sequence of {length} is not one")
    images = F.pad(x.view(batch, side, side, channels), (0, 0, pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator).to(x.device)
    flip = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
    span = torch.arange(side, device=x.device)
    rows = (dy[:, None] + span)[:, :, None]  # (B, side, 1)
    cols = dx[:, None] + torch.where(flip[:, None], span.flip(0), span)  # (B, side)
    crops = images[torch.arange(batch, device=x.device)[:, None, None], rows, cols[:, None, :]]
    return crops.reshape(batch, length, channels)
