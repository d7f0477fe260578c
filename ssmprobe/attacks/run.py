"""Running an attack: on one batch (`run_attack`, `attack`), and scored over a loader
(`score`, which clean evaluation shares with no attack). Long work over batches shows its size
and the time it has left once its first batch is done (`Estimate`); its bars have totals."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssmprobe.attacks.gradient import attack_mode
from ssmprobe.attacks.spec import AttackConfig, attack_config
from ssmprobe.inputs import as_inputs, as_labels

Batch = TypeVar("Batch", bound=tuple)
LONG_SECONDS = 10.0  # work with at least this much left after its first batch gets an estimate


class Estimate:
    """One line on stderr, once, after the first batch of long work: its size and the time
    left at that batch's rate, e.g. `aa: 1000 samples; the first 256 took 41.9 s: about
    2 min left`. `total` counts the samples of every pass `track` will see; `size` says
    what they are (default "N samples"); without a total, or not `enabled`, it is silent.
    Work shared by `processes` running side by side (`evaluation.shards`) has each do about
    total / processes of it, so the wall time left is that share's (`aa: 1000 samples over
    4 processes; ...`)."""

    def __init__(
        self,
        what: str,
        total: int | None,
        size: str | None = None,
        enabled: bool = True,
        processes: int = 1,
    ) -> None:
        self.what, self.enabled = what, enabled and bool(total)
        self.size = (size or f"{total} samples") + (
            f" over {processes} processes" if processes > 1 else ""
        )
        self.share = math.ceil(total / processes) if total else 0  # what one process does

    def track(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """`batches`, the first timed until the next is asked for (its work done)."""
        if not self.enabled:
            yield from batches
            return
        self.enabled = False  # once, on the first pass
        start = time.perf_counter()
        it = iter(batches)
        first = next(it, None)
        if first is None:
            return
        yield first
        self._say(len(first[-1]), time.perf_counter() - start)
        yield from it

    def first_done(self, samples: int, seconds: float) -> None:
        """For work timed elsewhere (a worker process): its first `samples` took `seconds`;
        the line, once."""
        if self.enabled:
            self.enabled = False
            self._say(samples, seconds)

    def _say(self, samples: int, seconds: float) -> None:
        done = min(samples, self.share)
        left = seconds / done * (self.share - done) if done else 0.0
        if left >= LONG_SECONDS:
            tqdm.write(
                f"{self.what}: {self.size}; the first {done} took {seconds:.1f} s: about "
                f"{duration(left)} left",
                file=sys.stderr,
            )


def duration(seconds: float) -> str:
    """`seconds` as a person reads a time estimate: 42 s, 1.7 min, 25 min, 2.3 h."""
    minutes = seconds / 60
    if seconds < 100:
        return f"{seconds:.0f} s"
    if minutes < 100:
        return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def sample_count(batches: Iterable, max_samples: int | None = None) -> int | None:
    """How many samples `score` will see of `batches`: a DataLoader's (its sampler's length,
    through a BatchSampler too, unless it drops its last batch), at most `max_samples`; else
    `max_samples` (None: unknown)."""
    sampler = getattr(batches, "sampler", None)
    inner = getattr(sampler, "sampler", sampler)  # a BatchSampler's own sampler
    count = None
    if inner is not None and not (
        getattr(batches, "drop_last", False) or getattr(sampler, "drop_last", False)
    ):
        try:
            count = len(inner)
        except TypeError:  # an iterable sampler
            count = None
    if count is None:
        return max_samples
    return count if max_samples is None else min(count, max_samples)


def run_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: AttackConfig,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> Tensor:
    """Adversarial examples for (x, y) under `attack`, by its registered kind (random starts
    draw from `generator`; attacks that seed themselves, AutoAttack, use `seed`)."""
    return attack.kind.run(model, x, y, attack, generator, seed)


def score(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    perturb: Callable[[Tensor, Tensor], Tensor] | None = None,
    max_samples: int | None = None,
    progress: str | None = None,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of `model` in eval mode on `batches`, each first
    replaced by `perturb(x, y)` when given; streamed (only running sums are kept), stopping
    after `max_samples`, with a bar titled `progress` when given (its total the samples it will
    see, where `sample_count` knows them, and an `Estimate` after the first batch of long
    work). Returns {"acc", "loss", "n", "top_class", "top_share"}: the class predicted most
    often and the share of samples it was predicted for (1.0: a constant prediction)."""
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    device = next(model.parameters()).device
    loss_sum, correct, count = 0.0, 0, 0
    predicted: Tensor | None = None  # how often each class was predicted
    total = sample_count(batches, max_samples)
    bar = tqdm(total=total, desc=progress, unit="sample", leave=False,
               disable=progress is None)  # fmt: skip
    estimate = Estimate(progress or "", total, enabled=progress is not None)
    with attack_mode(model, True), bar:  # eval mode; every module's own flag restored after
        for x, y in estimate.track(batches):
            if max_samples is not None:
                x, y = x[: max_samples - count], y[: max_samples - count]
            x, y = x.to(device), y.to(device)
            if perturb is not None:
                x = perturb(x, y)
            with torch.no_grad():
                logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            counts = torch.bincount(logits.argmax(-1).cpu(), minlength=logits.shape[-1])
            predicted = counts if predicted is None else predicted + counts
            count += len(y)
            bar.update(len(y))
            bar.set_postfix(acc=f"{correct / max(count, 1):.3f}")
            if max_samples is not None and count >= max_samples:
                break
    if count == 0 or predicted is None:
        raise ValueError("the loader gave no samples")
    top = int(predicted.argmax())
    return {
        "acc": correct / count,
        "loss": loss_sum / count,
        "n": count,
        "top_class": top,
        "top_share": int(predicted[top]) / count,
    }


def evaluate_attack(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    attack: AttackConfig,
    max_samples: int | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """`score` on `attack`'s adversarial examples, deterministic for a given `seed`."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    return score(
        model,
        loader,
        lambda x, y: run_attack(model, x, y, attack, generator=generator, seed=seed),
        max_samples,
        attack.label if progress else None,
    )


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
    config = attack_config(spec, meta or {"dataset": "digits"}, eps)
    from ssmprobe.data import DATASETS

    trained_on = (meta or {}).get("dataset") if (meta or {}).get("config") else None  # ours
    length = DATASETS[trained_on].seq_len if trained_on in DATASETS else None
    weight = next(model.parameters())
    x = as_inputs(x, length=length, what=f"the model, trained on {trained_on},", dtype=weight.dtype)
    y = as_labels(y, len(x))
    device = weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    return run_attack(model, x.to(device), y.to(device), config, generator=generator, seed=seed)
