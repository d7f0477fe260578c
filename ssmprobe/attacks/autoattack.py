"""AutoAttack (Croce & Hein) from the `pyautoattack` package, and the kinds aa (standard
version) and aa-fast (APGD-CE + APGD-T) it registers. The package is imported when it runs."""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ssmprobe.attacks.gradient import attack_mode
from ssmprobe.attacks.spec import AttackConfig, AttackRun, check_budget, register_attack
from ssmprobe.inputs import as_inputs


class AutoAttackWarning(UserWarning):
    """A warning of AutoAttack's own checks (randomness, zero gradients, Square success, ...)."""


@dataclass
class AutoAttackResult:
    """Adversarial examples (n, L, C), the model's labels on them, and the accuracies.

    `log` holds AutoAttack's own progress lines (per-attack robust accuracy, timings).
    """

    x_adv: Tensor
    y_adv: Tensor
    clean_acc: float
    robust_acc: float
    log: list[str] = field(default_factory=list)


class _SequenceAsImage(nn.Module):
    """Shows a sequence classifier to AutoAttack as an image classifier on (B, C, H, W).

    pyautoattack assumes 4-d inputs (it unsqueezes 3-d batches to a batch of one) and Square
    samples square patches in (H, W). Sequences are images read row by row, so (H, W) is their
    image shape: pixel k of the sequence is row k // W, column k % W. Norms do not depend on
    the layout, so the threat model is unchanged.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype  # pyautoattack casts inputs to float32; run the model in its own

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images.flatten(2).transpose(1, 2).to(self.dtype))


def _image_size(length: int, image_size: tuple[int, int] | None) -> tuple[int, int]:
    if image_size is None:
        side = math.isqrt(length)
        return (side, side) if side * side == length else (length, 1)
    if image_size[0] * image_size[1] != length:
        raise ValueError(f"image_size {image_size} does not have {length} pixels")
    return image_size


class _ForwardLog(logging.Handler):
    """Collects AutoAttack's log lines; re-raises its check warnings as Python warnings."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.lines.append(message)
        if record.levelno >= logging.WARNING:
            warnings.warn(f"AutoAttack: {message}", AutoAttackWarning, stacklevel=2)
        else:
            _log.log(record.levelno, "AutoAttack: %s", message)


_log = logging.getLogger(__name__)


@contextmanager
def _captured_autoattack_log() -> Iterator[_ForwardLog]:
    logger = logging.getLogger("auto-attack")
    handler = _ForwardLog()
    saved = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # what it says reaches users through us, once
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# The custom versions: the standard version's attacks they run, with its settings.
_CUSTOM: dict[str, list[str]] = {"fast": ["apgd-ce", "apgd-t"], "square": ["square"]}


def autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    version: str = "standard",
    n: int | None = None,
    norm: str = "Linf",
    seed: int = 0,
    batch_size: int = 250,
    image_size: tuple[int, int] | None = None,
    square_queries: int | None = None,
) -> AutoAttackResult:
    """AutoAttack on the first `n` samples (all if None), in eval mode.

    `version="standard"` is AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square);
    `"fast"` runs only APGD-CE and APGD-T with the standard version's settings (one restart,
    nine target classes); `"square"` only Square, which needs no gradients (a test for gradient
    masking), with `square_queries` queries per sample (None: the standard version's 5000).
    AutoAttack's check warnings (randomised or dynamic defence, zero
    gradients, Square beating the gradient attacks, too few classes) come out as
    `AutoAttackWarning`s; its progress lines are in the result's `log` and on this module's
    logger at DEBUG level. `seed` makes the run deterministic; torch's global RNG (which the
    package reseeds) is restored afterwards. `image_size` (H, W) is how the sequence is shown to
    AutoAttack (Square's patches); by default a square image when L is a perfect square.
    """
    from pyautoattack import AutoAttack

    if version not in ("standard", *_CUSTOM):
        raise ValueError(f"version must be one of {('standard', *_CUSTOM)}, got {version!r}")
    if square_queries is not None and (type(square_queries) is not int or square_queries < 1):
        raise ValueError(f"square_queries must be a positive integer, got {square_queries!r}")
    if norm not in ("Linf", "L2"):
        raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
    check_budget(eps, norm)
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        x, y = x[:n], y[:n]
    x = as_inputs(x)
    batch, length, channels = x.shape
    height, width = _image_size(length, image_size)
    # Contiguous: a strided view here (C > 1) is cloned with its strides by pyautoattack, whose
    # APGD-T then `.view`s a gradient of the same layout and fails.
    images = x.transpose(1, 2).reshape(batch, channels, height, width).contiguous()
    dtype = next(model.parameters()).dtype
    wrapped = _SequenceAsImage(model, dtype)

    rng_devices = [x.device] if x.device.type == "cuda" else []
    tracer = sys.gettrace()  # AutoAttack's dynamic-defence check clears sys.settrace
    with (
        attack_mode(model, True),
        torch.random.fork_rng(rng_devices),
        _captured_autoattack_log() as handler,
    ):
        if version == "standard":
            adversary = AutoAttack(wrapped, norm=norm, eps=eps, seed=seed, device=x.device)
        else:
            adversary = AutoAttack(
                wrapped,
                norm=norm,
                eps=eps,
                seed=seed,
                device=x.device,
                version="custom",
                attacks=_CUSTOM[version],
            )
            adversary.apgd.n_restarts = 1
            adversary.apgd_targeted.n_target_classes = 9
        if square_queries is not None:
            adversary.square.n_queries = square_queries
        try:
            adv_images, _ = adversary.run_standard_evaluation(images, y, batch_size=batch_size)
        finally:
            sys.settrace(tracer)
        x_adv = adv_images.reshape(batch, channels, length).transpose(1, 2).to(x.dtype)
        with torch.no_grad():
            clean_pred = model(x).argmax(-1)
            y_adv = model(x_adv).argmax(-1)
    return AutoAttackResult(
        x_adv=x_adv.detach(),
        y_adv=y_adv,
        clean_acc=(clean_pred == y).float().mean().item(),
        robust_acc=(y_adv == y).float().mean().item(),
        log=handler.lines,
    )


def _version(version: str) -> AttackRun:
    """AutoAttack's `version` as a registered kind's run (seeded by `seed`, not the generator)."""

    def run(model: nn.Module, x: Tensor, y: Tensor, c: AttackConfig, _: Any, seed: int) -> Tensor:
        return autoattack(model, x, y, c.eps, version=version, seed=seed).x_adv

    return run


register_attack("aa", "standard AutoAttack", shardable=True)(_version("standard"))
register_attack("aa-fast", "APGD-CE + APGD-T", shardable=True, title="AA-fast")(_version("fast"))
