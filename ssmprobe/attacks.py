"""Adversarial attacks on sequence classifiers (§3): PGD-10 for training and testing, AutoAttack.

Every attack takes inputs x (B, L, C) in [0, 1] with labels y (B,) and returns a detached
x' of the same shape with ||x' - x|| <= eps (ℓ∞ or ℓ2) and x' in [0, 1]:

- `pgd_linf` (Madry et al.): x' <- Π(x' + α·sign ∇ℓ(f(x'), y)) from a uniform random start in
  the ε-ball; `fgsm` is its single step of size ε from x itself.
- `pgd_l2`: the same with the step α·∇/||∇||₂ and the projection onto the ℓ2 ball.
- `trades_adversary` (Zhang et al., TRADES): maximises KL(p(x) || p(x')) by ℓ∞ PGD, starting
  from x + 0.001·N(0, 1) as their reference code does; `trades_loss` is their training loss
  CE(f(x), y) + β·KL(p(x) || p(x')), KL summed over classes and averaged over the batch.
- `autoattack`: AutoAttack (Croce & Hein) from the `pyautoattack` package, standard version or
  the fast APGD-CE + APGD-T subset.

Π clips to the ε-ball around x and then to [0, 1]; because x lies in [0, 1] the second clip only
moves a coordinate towards x, so the result stays in both sets.

Model mode: by default (`eval_mode=True`) attacks run the model in eval mode, as the PGD-AT and
TRADES reference implementations do when they craft training examples, so dropout and batch
statistics do not make the attack target a different function than the one evaluated. Pass
`eval_mode=False` to attack the model in whatever mode it is in. Either way every module's own
train/eval flag is restored afterwards. Gradients are taken w.r.t. the input only
(`torch.autograd.grad`, parameters out of autograd while the attack runs), so parameter `.grad`
fields are never touched: an attack can run in the middle of a training step.

Randomness (random starts) comes from `generator` when given, else from torch's global RNG.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssmprobe.inputs import as_inputs, as_labels

# ℓ∞ (eps, alpha) for PGD: MNIST and CIFAR-10 as in §3 (after TRADES). The `digits` images are
# 8x8 with 17 grey levels; the closest pair of differently labelled train/test images is 0.4375
# apart in ℓ∞ (7 grey levels), so ε = 0.3 balls of two classes overlap (~9% of the images have a
# differently labelled image within 2ε = 0.6) and no classifier could be robust on them. ε = 0.2
# would stay below half that separation, as ε = 0.3 does on MNIST (separation 0.737, Yang et al.
# 2020), but with 1437 training images PGD-AT at ε = 0.2 collapses to a constant prediction
# (10%) for DSS and Mega; ε = 0.1 (1.6 grey levels) trains, and α = 0.025 lets 10 steps cross
# the ball 2.5 times.
PRESET_BUDGETS: dict[str, tuple[float, float]] = {
    "mnist": (0.3, 0.04),
    "cifar10": (0.031, 0.007),
    "digits": (0.1, 0.025),
    "mnist10k": (0.3, 0.04),  # MNIST's images, MNIST's budget
}
# ℓ2 radius for `pgdl2-N`, the usual MNIST / CIFAR-10 choices; for digits below half of the
# ℓ2 separation (1.22) for the same reason as above. α defaults to 2.5ε/steps (Madry et al.).
PRESET_L2_BUDGETS: dict[str, float] = {
    "mnist": 2.0,
    "cifar10": 0.5,
    "digits": 0.5,
    "mnist10k": 2.0,
}

TRADES_INIT_STD = 0.001
ATTACK_NAMES = ("pgd", "fgsm", "pgdl2", "aa", "aa-fast")


class AutoAttackWarning(UserWarning):
    """A warning of AutoAttack's own checks (randomness, zero gradients, Square success, ...)."""


# ---------------------------------------------------------------------------------- helpers


def _check_budget(
    eps: float, norm: str, alpha: float | None = None, steps: int | None = None
) -> None:
    if isinstance(eps, bool) or not isinstance(eps, Real) or not 0 <= eps < math.inf:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if norm == "Linf" and eps > 1:
        raise ValueError(f"an ℓ∞ eps above 1 exceeds the [0, 1] input range, got {eps}")
    if alpha is not None and (not isinstance(alpha, Real) or not 0 < alpha < math.inf):
        raise ValueError(f"alpha (step size) must be a finite number > 0, got {alpha!r}")
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 1
    ):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


@contextmanager
def _attack_mode(model: nn.Module, eval_mode: bool) -> Iterator[None]:
    """Puts the model in eval mode if asked and its parameters out of autograd; restores every
    module's own flag and every parameter's `requires_grad` afterwards.

    An attack needs ∇x only. Built-in backward passes skip parameter gradients nobody asks for,
    but a custom `autograd.Function` (Mamba's scan) computes every gradient its inputs require,
    and the forward pass records the parameters' own graph (S4's kernel) for nothing.
    """
    modes = [(m, m.training) for m in model.modules()]
    trainable = [p for p in model.parameters() if p.requires_grad]
    if eval_mode:
        model.eval()
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for p in trainable:
            p.requires_grad_(True)


def _noise(x: Tensor, generator: torch.Generator | None, gaussian: bool) -> Tensor:
    """Uniform [0, 1) or standard normal noise shaped like x, drawn on the generator's device."""
    device = generator.device if generator is not None else x.device
    draw = torch.randn if gaussian else torch.rand
    return draw(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Carlini-Wagner margin: best wrong logit minus true logit (ascending it fools the model)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return (wrong - true).sum()


_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ce": lambda logits, y: F.cross_entropy(logits, y, reduction="sum"),
    "cw": _margin_loss,
}


def _input_grad(objective: Callable[[Tensor], Tensor], x_adv: Tensor) -> Tensor:
    """∇ of `objective` w.r.t. x_adv only; parameter gradients are neither kept nor stored."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(objective(x_adv), x_adv)
    return grad


def _project_linf(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def _l2_norms(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _project_l2(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    delta = x_adv - x
    delta = delta * (eps / _l2_norms(delta).clamp_min(1e-12)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------- attacks


def _ascend(
    x_adv: Tensor,
    objective: Callable[[Tensor], Tensor],
    step: Callable[[Tensor], Tensor],
    project: Callable[[Tensor], Tensor],
    steps: int,
) -> Tensor:
    """`steps` projected gradient-ascent steps x' <- project(x' + step(∇ objective(x')))."""
    for _ in range(steps):
        x_adv = project(x_adv + step(_input_grad(objective, x_adv)))
    return x_adv.detach()


def _loss_fn(loss: str) -> Callable[[Tensor, Tensor], Tensor]:
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
    return _LOSSES[loss]


def pgd_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    loss: str = "ce",
    eval_mode: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ℓ∞ PGD: `steps` signed-gradient ascent steps of size `alpha` on `loss` ("ce" or "cw"),
    each projected onto the `eps` ℓ∞ ball around x and onto [0, 1]; the random start is
    uniform in the ball."""
    _check_budget(eps, "Linf", alpha, steps)
    objective = _loss_fn(loss)
    x = as_inputs(x)
    x_adv = x
    if random_start:
        x_adv = _project_linf(x + eps * (2 * _noise(x, generator, gaussian=False) - 1), x, eps)
    with _attack_mode(model, eval_mode):
        return _ascend(
            x_adv,
            lambda z: objective(model(z), y),
            lambda grad: alpha * grad.sign(),
            lambda z: _project_linf(z, x, eps),
            steps,
        )


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    loss: str = "ce",
    eval_mode: bool = True,
) -> Tensor:
    """Fast gradient sign method: x + eps·sign ∇ℓ(f(x), y), clipped to [0, 1]."""
    _check_budget(eps, "Linf")
    objective = _loss_fn(loss)
    x = as_inputs(x)
    with _attack_mode(model, eval_mode):
        grad = _input_grad(lambda z: objective(model(z), y), x)
    return _project_linf(x + eps * grad.sign(), x, eps).detach()


def pgd_l2(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    loss: str = "ce",
    eval_mode: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ℓ2 PGD: steps of length `alpha` along ∇/||∇||₂ (per sample), projected onto the ℓ2 ball
    of radius `eps` and onto [0, 1]; the random start is uniform in the ball."""
    _check_budget(eps, "L2", alpha, steps)
    objective = _loss_fn(loss)
    x = as_inputs(x)
    x_adv = x
    if random_start and x.numel():
        direction = _noise(x, generator, gaussian=True)
        direction = direction / _l2_norms(direction).clamp_min(1e-12)
        # radius eps·U^(1/d) makes the start uniform in the d-dimensional ball
        radius = eps * _noise(x[:, :1, :1], generator, gaussian=False) ** (1.0 / x[0].numel())
        x_adv = _project_l2(x + radius * direction, x, eps)
    with _attack_mode(model, eval_mode):
        return _ascend(
            x_adv,
            lambda z: objective(model(z), y),
            lambda grad: alpha * grad / _l2_norms(grad).clamp_min(1e-12),
            lambda z: _project_l2(z, x, eps),
            steps,
        )


def _kl_clean_adv(clean_logits: Tensor, adv_logits: Tensor, reduction: str) -> Tensor:
    """KL(p(x) || p(x')) as `F.kl_div` takes it: log-probabilities of x', probabilities of x."""
    return F.kl_div(
        F.log_softmax(adv_logits, dim=1), F.softmax(clean_logits, dim=1), reduction=reduction
    )


def trades_adversary(
    model: nn.Module,
    x: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    eval_mode: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """TRADES inner maximisation: ℓ∞ PGD on KL(p(x) || p(x')) from x + 0.001·N(0, 1)."""
    _check_budget(eps, "Linf", alpha, steps)
    x = as_inputs(x)
    x_start = x + TRADES_INIT_STD * _noise(x, generator, gaussian=True)
    with _attack_mode(model, eval_mode):
        with torch.no_grad():
            clean_logits = model(x)
        return _ascend(
            x_start,
            lambda z: _kl_clean_adv(clean_logits, model(z), "sum"),
            lambda grad: alpha * grad.sign(),
            lambda z: _project_linf(z, x, eps),
            steps,
        )


def trades_loss(model: nn.Module, x: Tensor, y: Tensor, beta: float, adv: Tensor) -> Tensor:
    """CE(f(x), y) + β·KL(p(x) || p(adv)), KL summed over classes and averaged over the batch.

    Gradients flow through both f(x) and f(adv), as in TRADES; the model's mode is left alone.
    """
    clean_logits = model(x)
    robust = _kl_clean_adv(clean_logits, model(adv), "batchmean")
    return F.cross_entropy(clean_logits, y) + beta * robust


# ------------------------------------------------------------------------------ AutoAttack


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
) -> AutoAttackResult:
    """AutoAttack on the first `n` samples (all if None), in eval mode.

    `version="standard"` is AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square);
    `"fast"` runs only APGD-CE and APGD-T with the standard version's settings (one restart,
    nine target classes). AutoAttack's check warnings (randomised or dynamic defence, zero
    gradients, Square beating the gradient attacks, too few classes) come out as
    `AutoAttackWarning`s; its progress lines are in the result's `log` and on this module's
    logger at DEBUG level. `seed` makes the run deterministic; torch's global RNG (which the
    package reseeds) is restored afterwards. `image_size` (H, W) is how the sequence is shown to
    AutoAttack (Square's patches); by default a square image when L is a perfect square.
    """
    from pyautoattack import AutoAttack

    if version not in ("standard", "fast"):
        raise ValueError(f"version must be 'standard' or 'fast', got {version!r}")
    if norm not in ("Linf", "L2"):
        raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
    _check_budget(eps, norm)
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
        _attack_mode(model, True),
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
                attacks=["apgd-ce", "apgd-t"],
            )
            adversary.apgd.n_restarts = 1
            adversary.apgd_targeted.n_target_classes = 9
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


# --------------------------------------------------------------------- configs, evaluation


@dataclass(frozen=True)
class AttackConfig:
    """One attack and its budget: `name` in pgd (ℓ∞), fgsm, pgdl2, aa, aa-fast.

    `alpha` and `steps` are None for fgsm and AutoAttack, which set their own step sizes.
    """

    name: str
    eps: float
    alpha: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.name not in ATTACK_NAMES:
            raise ValueError(f"unknown attack {self.name!r}; choose one of {ATTACK_NAMES}")
        iterative = self.name in ("pgd", "pgdl2")
        if iterative and (self.alpha is None or self.steps is None):
            raise ValueError(f"{self.name} needs alpha and steps")
        if not iterative and (self.alpha is not None or self.steps is not None):
            raise ValueError(f"{self.name} sets its own steps: leave alpha and steps None")
        _check_budget(self.eps, self.norm, self.alpha, self.steps)

    @property
    def norm(self) -> str:
        return "L2" if self.name == "pgdl2" else "Linf"

    @property
    def label(self) -> str:
        """The short name `parse_attack` reads back, e.g. pgd10, pgdl2-10, aa."""
        return {"pgd": f"pgd{self.steps}", "pgdl2": f"pgdl2-{self.steps}"}.get(self.name, self.name)


MAX_STEPS = 10_000  # PGD-100 with restarts is the strongest in use; 10^4 steps is hours already


def _steps(text: str, spec: str) -> int:
    steps = int(text)
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"attack {spec!r}: steps must be in 1..{MAX_STEPS}, got {steps}")
    return steps


def parse_attack(
    spec: str, dataset: str = "digits", eps: float | None = None, alpha: float | None = None
) -> AttackConfig:
    """Reads pgd<N>, pgdl2-<N>, fgsm, aa or aa-fast; eps / alpha default to the dataset's preset
    (`PRESET_BUDGETS`, `PRESET_L2_BUDGETS` for ℓ2, whose α defaults to 2.5·eps/N). A dataset
    without a preset (a user's model) needs eps; its PGD α defaults to 2.5·eps/N as well."""
    if dataset not in PRESET_BUDGETS and eps is None:
        raise ValueError(
            f"no attack budget for dataset {dataset!r} (known: {sorted(PRESET_BUDGETS)}): give eps"
        )
    text = spec.strip().lower()
    linf_eps, linf_alpha = PRESET_BUDGETS.get(dataset, (eps, None))
    if match := re.fullmatch(r"pgd(\d+)", text):
        steps = _steps(match[1], spec)
        linf_eps = linf_eps if eps is None else eps
        if alpha is None:  # the preset's α, or Madry et al.'s 2.5·ε/steps without a preset
            alpha = linf_alpha if linf_alpha is not None else 2.5 * linf_eps / steps
        return AttackConfig("pgd", linf_eps, alpha, steps)
    if match := re.fullmatch(r"pgdl2-(\d+)", text):
        steps = _steps(match[1], spec)
        radius = PRESET_L2_BUDGETS[dataset] if eps is None else eps  # eps given: any dataset
        step = 2.5 * radius / max(steps, 1) if alpha is None else alpha
        return AttackConfig("pgdl2", radius, step, steps)
    if text in ("fgsm", "aa", "aa-fast"):
        return AttackConfig(text, linf_eps if eps is None else eps)
    raise ValueError(f"unknown attack {spec!r}; use pgd<N>, pgdl2-<N>, fgsm, aa or aa-fast")


def run_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: AttackConfig,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> Tensor:
    """Adversarial examples for (x, y) under `attack` (AutoAttack uses `seed`, the others
    `generator`)."""
    if attack.name == "pgd":
        return pgd_linf(model, x, y, attack.eps, attack.alpha, attack.steps, generator=generator)
    if attack.name == "pgdl2":
        return pgd_l2(model, x, y, attack.eps, attack.alpha, attack.steps, generator=generator)
    if attack.name == "fgsm":
        return fgsm(model, x, y, attack.eps)
    version = "fast" if attack.name == "aa-fast" else "standard"
    return autoattack(model, x, y, attack.eps, version=version, seed=seed).x_adv


def evaluate_attack(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    attack: AttackConfig,
    max_samples: int | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of `model` on `attack`'s adversarial examples.

    Streams over `loader` batch by batch (only running sums are kept, so memory does not grow
    with the number of samples), stopping after `max_samples`. Deterministic for a given
    `seed`. Returns {"acc", "loss", "n"}.
    """
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    loss_sum, correct, count = 0.0, 0, 0
    total = None if max_samples is None else max_samples
    with (
        _attack_mode(model, True),
        tqdm(
            total=total, desc=attack.label, unit="sample", disable=not progress, leave=False
        ) as bar,
    ):
        for x, y in loader:
            if max_samples is not None:
                x, y = x[: max_samples - count], y[: max_samples - count]
            x, y = x.to(device), y.to(device)
            x_adv = run_attack(model, x, y, attack, generator=generator, seed=seed)
            with torch.no_grad():
                logits = model(x_adv)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += len(y)
            bar.update(len(y))
            bar.set_postfix(acc=f"{correct / count:.3f}")
            if max_samples is not None and count >= max_samples:
                break
    if count == 0:
        raise ValueError("the loader gave no samples")
    return {"acc": correct / count, "loss": loss_sum / count, "n": count}


def checkpoint_attack(spec: str, meta: dict[str, Any], eps: float | None = None) -> AttackConfig:
    """The attack `spec` (pgd10, aa, ...) against a checkpoint: ℓ∞ attacks use `eps` (in
    (0, 1]), else the run's training eps and α, else the dataset's preset budget; ℓ2 attacks use
    `eps` (> 0) or the dataset's preset radius."""
    dataset, train = meta["dataset"], meta.get("train", {})
    # Without a preset (a user's model) the spec is read at the budget given or declared.
    config = parse_attack(
        spec, dataset, eps=None if dataset in PRESET_BUDGETS else eps or train.get("eps")
    )
    if eps is not None:
        top = 1.0 if config.norm == "Linf" else math.inf
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps <= top:
            bound = "(0, 1]" if config.norm == "Linf" else "(0, inf)"
            raise ValueError(f"eps of an {config.norm} attack must be in {bound}, got {eps!r}")
    if config.norm != "Linf":  # the run's ε is an ℓ∞ budget: an ℓ2 attack keeps its own
        return config if eps is None else parse_attack(spec, dataset, eps=eps)
    linf_eps = eps if eps is not None else train.get("eps")
    if linf_eps is not None:
        alpha = train.get("alpha") if eps is None else None
        config = parse_attack(spec, dataset, eps=linf_eps, alpha=alpha)
    return config


def attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    spec: str = "pgd10",
    eps: float | None = None,
    seed: int = 0,
) -> Tensor:
    """Adversarial examples for (x, y) under `spec` (pgd10, fgsm, aa, ...), like torchattacks'
    `atk(x, y)`: at `eps`, else at the training budget in `model.meta` (a model from
    `ssmprobe.load_model`), else an error. Random starts are seeded with `seed`."""
    meta = getattr(model, "meta", None)
    if meta is None and eps is None:
        raise ValueError("eps is needed for a model without checkpoint metadata (model.meta)")
    config = checkpoint_attack(spec, meta or {"dataset": "digits"}, eps)
    from ssmprobe.data import DATASETS

    trained_on = (meta or {}).get("dataset") if (meta or {}).get("config") else None  # ours
    length = DATASETS[trained_on].seq_len if trained_on in DATASETS else None
    weight = next(model.parameters())
    x = as_inputs(x, length=length, what=f"the model, trained on {trained_on},", dtype=weight.dtype)
    y = as_labels(y, len(x))
    device = weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    return run_attack(model, x.to(device), y.to(device), config, generator=generator, seed=seed)
