"""What an attack spec means: the registry of attack kinds, a spec's budget, its config.

An attack kind is one function registered with `register_attack`; everything downstream reads
the registry (`ATTACKS`): the specs `parse_attack` accepts and their help text, the run
(`run.run_attack`), the table column titles, which kinds `eval --processes` shards. A kind is
spelled `<name>` (fgsm, aa) or, when `iterative`, `<name><separator><steps>` (pgd10,
pgdl2-10). Its budget: ε from the caller, else the dataset's preset (`PRESET_BUDGETS`,
`PRESET_L2_BUDGETS` for ℓ2); an iterative kind's step size α likewise, else 2.5·ε/steps
(Madry et al.).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor, nn

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

MAX_STEPS = 10_000  # PGD-100 with restarts is the strongest in use; 10^4 steps is hours already
NORMS = ("Linf", "L2")

# (model, x, y, config, generator, seed) -> x_adv: random starts draw from `generator`;
# `seed` is for attacks that seed themselves (AutoAttack).
AttackRun = Callable[
    [nn.Module, Tensor, Tensor, "AttackConfig", torch.Generator | None, int], Tensor
]


@dataclass(frozen=True)
class AttackKind:
    """One registered attack: its function and how it is spelled, budgeted and shown."""

    name: str
    run: AttackRun
    summary: str  # one line for --help and the docs
    norm: str = "Linf"
    iterative: bool = False  # takes steps (in the spec) and a step size α
    separator: str = ""  # between the name and the steps: pgd10, pgdl2-10
    shardable: bool = False  # `eval --processes` spreads its batches over processes
    title: str = ""  # the table column: "PGD" gives PGD-10; default the name in capitals

    @property
    def example(self) -> str:
        return f"{self.name}{self.separator}<N>" if self.iterative else self.name

    def spec(self, steps: int | None) -> str:
        """The short name `parse_attack` reads back: pgd10, pgdl2-10, fgsm."""
        return f"{self.name}{self.separator}{steps}" if self.iterative else self.name

    def column(self, steps: int | None) -> str:
        """The title of its table column: PGD-10, AA."""
        title = self.title or self.name.upper()
        return f"{title}-{steps}" if self.iterative else title


ATTACKS: dict[str, AttackKind] = {}  # in registration order: the help lists them so


def register_attack(
    name: str,
    summary: str,
    norm: str = "Linf",
    iterative: bool = False,
    separator: str = "",
    shardable: bool = False,
    title: str = "",
) -> Callable[[AttackRun], AttackRun]:
    """Registers the decorated `run(model, x, y, config, generator, seed) -> x_adv` as the
    attack `name` (a user's too: then `--attack name` and `ssmprobe.evaluate` know it)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*(-[a-z][a-z0-9_]*)*", name):
        raise ValueError(f"attack name {name!r}: lower-case letters, digits, _ and - only")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")

    def register(run: AttackRun) -> AttackRun:
        ATTACKS[name] = AttackKind(name, run, summary, norm, iterative, separator, shardable, title)
        return run

    return register


def attack_help() -> str:
    """What --attack accepts, from the registry."""
    kinds = ", ".join(f"{k.example} ({k.summary})" for k in ATTACKS.values())
    return f"{kinds}; comma-separated where a command runs several"


def check_budget(
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


@dataclass(frozen=True)
class AttackConfig:
    """One attack and its budget: `name` a registered kind (`ATTACKS`). `alpha` and `steps`
    are set for iterative kinds only; the others set their own step sizes."""

    name: str
    eps: float
    alpha: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.name not in ATTACKS:
            raise ValueError(f"unknown attack {self.name!r}; choose one of {tuple(ATTACKS)}")
        if self.kind.iterative and (self.alpha is None or self.steps is None):
            raise ValueError(f"{self.name} needs alpha and steps")
        if not self.kind.iterative and (self.alpha is not None or self.steps is not None):
            raise ValueError(f"{self.name} sets its own steps: leave alpha and steps None")
        check_budget(self.eps, self.norm, self.alpha, self.steps)

    @property
    def kind(self) -> AttackKind:
        return ATTACKS[self.name]

    @property
    def norm(self) -> str:
        return self.kind.norm

    @property
    def label(self) -> str:
        """The short name `parse_attack` reads back, e.g. pgd10, pgdl2-10, aa."""
        return self.kind.spec(self.steps)


def _steps(text: str, spec: str) -> int:
    steps = int(text)
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"attack {spec!r}: steps must be in 1..{MAX_STEPS}, got {steps}")
    return steps


def parse_attack(
    spec: str, dataset: str = "digits", eps: float | None = None, alpha: float | None = None
) -> AttackConfig:
    """The config of a registered spec (pgd10, pgdl2-10, fgsm, aa, ...); eps / alpha default
    to the dataset's preset (module docstring). A dataset without a preset (a user's model)
    needs eps; its α defaults to 2.5·eps/N as well."""
    if dataset not in PRESET_BUDGETS and eps is None:
        raise ValueError(
            f"no attack budget for dataset {dataset!r} (known: {sorted(PRESET_BUDGETS)}): give eps"
        )
    kind, steps = _match(spec)
    if kind.norm == "L2":  # eps given: any dataset
        budget, step = PRESET_L2_BUDGETS[dataset] if eps is None else eps, None
    else:
        budget, step = PRESET_BUDGETS.get(dataset, (eps, None))
        budget = budget if eps is None else eps
        step = step if kind.name == "pgd" else None  # the presets are PGD's
    if not kind.iterative:
        return AttackConfig(kind.name, budget)
    step = alpha if alpha is not None else step
    return AttackConfig(
        kind.name, budget, 2.5 * budget / steps if step is None else step, steps
    )


def _match(spec: str) -> tuple[AttackKind, int | None]:
    """The registered kind `spec` names, and its steps (None for a kind without)."""
    text = spec.strip().lower()
    for kind in ATTACKS.values():
        if not kind.iterative and text == kind.name:
            return kind, None
        prefix = re.escape(kind.name + kind.separator)
        if kind.iterative and (match := re.fullmatch(prefix + r"(\d+)", text)):
            return kind, _steps(match[1], spec)
    known = ", ".join(k.example for k in ATTACKS.values())
    raise ValueError(f"unknown attack {spec!r}; use {known}")


def attack_title(spec: str) -> str:
    """The table column of a spec: pgd10 -> PGD-10, aa -> AA; "clean" -> Clean."""
    if spec == "clean":
        return "Clean"
    kind, steps = _match(spec)
    return kind.column(steps)


def attack_config(spec: str, meta: dict[str, Any], eps: float | None = None) -> AttackConfig:
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
