"""Standard and adversarial training (§3, Appendix C Table 4): ST, PGD-AT (Madry) and TRADES.

One step of each method on a batch (x, y):

    ST:      CE(f(x), y)
    PGD-AT:  CE(f(x'), y),  x' = PGD-k_ε(x, y) maximising CE             (Madry et al.)
    TRADES:  CE(f(x), y) + β KL(f(x) || f(x')),  x' maximising that KL    (Zhang et al.)

AdamW with a cosine schedule over all steps. After every epoch, clean and PGD accuracy and loss
on a fixed train subset and on the test set go to `metrics.jsonl` (robust overfitting shows as
the train/test gap, Figs. 1, 2, 5); `last.pt` is written every epoch, `best.pt` when the epoch
is the best so far by `training.selection.best_epoch` (highest test PGD accuracy among epochs
that have learned). An optional ε warm-up ramps the training attack's budget over the first epochs.
Every epoch reseeds from (seed, epoch) and checkpoints carry the optimizer and scheduler, so
a resumed run ends with the same weights as an uninterrupted one. Under `torchrun` each
process trains on its share of every batch (DDP) and only rank 0 evaluates and writes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ssmprobe.attacks import PRESET_BUDGETS, pgd_linf, score, trades_adversary, trades_loss
from ssmprobe.checkpoint import Checkpoint, load_checkpoint, load_into, save_checkpoint
from ssmprobe.data import SequenceDataset, make_loader
from ssmprobe.io import replacing, write_json, write_text
from ssmprobe.loading import default_device
from ssmprobe.models import ModelConfig, build_model
from ssmprobe.models.base import shared_kernels
from ssmprobe.training.augment import AUGMENTS, crop_flip
from ssmprobe.training.selection import best_epoch
from ssmprobe.vocab import METHODS

MAX_LR = 10.0  # AdamW's steps are about lr in size: beyond this every run diverges at once


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run. The defaults are the `digits` preset without its ε warm-up
    (so any `epochs` is valid); `TRAIN_PRESETS` holds the full presets: digits with the warm-up,
    Table 4's for MNIST and CIFAR-10."""

    method: str = "st"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 2e-4
    eps: float = PRESET_BUDGETS["digits"][0]
    alpha: float = PRESET_BUDGETS["digits"][1]
    steps: int = 10
    beta: float = 1.0
    seed: int = 0
    train_eval_size: int = 360
    test_eval_size: int | None = None
    amp: bool = False
    eps_warmup: int = 0
    augment: str = "none"  # `augment.AUGMENTS`: crop-flip is the reference code's for CIFAR-10

    def budget_at(self, step: int, steps_per_epoch: int) -> tuple[float, float]:
        """(ε, α) of the training attack at optimizer step `step` (0-based).

        With `eps_warmup` = W epochs, ε ramps linearly from ε/(W·steps) to ε over the first W
        epochs and α keeps its ratio to ε; afterwards, and for per-epoch evaluation, ε is full.
        """
        ramp = self.eps_warmup * steps_per_epoch
        scale = 1.0 if step >= ramp else (step + 1) / ramp
        return self.eps * scale, self.alpha * scale

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 0 <= self.eps <= 1:
            raise ValueError(f"eps must be in [0, 1] for inputs in [0, 1], got {self.eps}")
        for name in ("epochs", "batch_size", "steps", "train_eval_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if not 0 <= self.eps_warmup <= self.epochs:
            raise ValueError(f"eps_warmup must be in [0, epochs], got {self.eps_warmup}")
        if self.lr <= 0 or self.alpha <= 0 or self.beta < 0:
            raise ValueError("need lr > 0, alpha > 0 and beta >= 0")
        if not (self.lr <= MAX_LR and math.isfinite(self.beta)):
            raise ValueError(f"need lr <= {MAX_LR} and a finite beta, got {self.lr}, {self.beta}")


def _table4(dataset: str, epochs: int, beta: float) -> dict[str, Any]:
    eps, alpha = PRESET_BUDGETS[dataset]
    return {
        "epochs": epochs,
        "batch_size": 256,
        "lr": 1e-3,
        "weight_decay": 2e-4,
        "eps": eps,
        "alpha": alpha,
        "steps": 10,
        "beta": beta,
        "train_eval_size": 1000,
    }


# Table 4 exactly; `digits` (the defaults) trains a small model in minutes on a CPU. Chosen by
# analysis/calibrate_digits.py (figures/calibration_digits.md): 1437 images need more steps
# (batch 32, lr 1e-2, 30 epochs: 1350 steps), and PGD-AT from a random init at full ε keeps
# S4 at the constant-prediction saddle for all 30 epochs, so ε ramps up over the first 10.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "mnist": _table4("mnist", epochs=100, beta=1.0),
    "cifar10": _table4("cifar10", epochs=180, beta=6.0) | {"augment": "crop-flip"},
    "digits": {"eps_warmup": 10},
    # Table 4's MNIST recipe (ε 0.3, α 0.04, β 1, AdamW lr 1e-3, wd 2e-4) on the shipped 8,000
    # real MNIST images, with only what a 2-core CPU forces changed: 5 epochs instead of 100 at
    # batch 64 instead of 256 (625 optimizer steps: one S4 PGD-AT step costs ~3 s at L = 784,
    # benchmarks/mnist_speed.py), ε ramped over the first 2 epochs (at full ε from a random
    # init PGD-AT can sit at a constant prediction for the whole of such a short run), and the
    # per-epoch curves on 500 train / 500 test images (the final evaluation uses all 2,000).
    # Measured (one thread, two runs side by side): S5 ST 131-225 s of training an epoch, S4 ST
    # 284-469 s; docs/data.md has the figures.
    "mnist10k": _table4("mnist10k", epochs=5, beta=1.0)
    | {"batch_size": 64, "eps_warmup": 2, "train_eval_size": 500, "test_eval_size": 500},
}


# A family's departures from its training preset, chosen by the same sweep. Mega at lr 1e-2 for
# 30 epochs underfits (ST 86.7% clean) and misses the adversarial targets (PGD-AT 80.8 / 68.1);
# at lr 3e-3 for 60 epochs, the ε warm-up over the same first third, it trains to the numbers
# in figures/calibration_digits.md (`lr3e-3_e60`).
FAMILY_TRAIN_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("digits", "mega"): {"lr": 3e-3, "epochs": 60, "eps_warmup": 20},
}


def train_config(
    preset: str | None = None, model: str | None = None, **overrides: Any
) -> TrainConfig:
    """A TrainConfig from a preset, the `model` family's departures from it
    (`FAMILY_TRAIN_PRESETS`), and `overrides` (None values are ignored) on top.

    Overriding `epochs` alone keeps the preset's warm-up as the same share of the run (the
    digits preset ramps ε over the first third), so `--epochs 9` warms up over 3 epochs.
    """
    if preset is not None and preset not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(TRAIN_PRESETS)}")
    family = FAMILY_TRAIN_PRESETS.get((preset, model), {}) if preset else {}
    base = TrainConfig(**TRAIN_PRESETS[preset] | family) if preset else TrainConfig()
    values = asdict(base) | {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("eps_warmup") is None:
        values["eps_warmup"] = round(base.eps_warmup * values["epochs"] / base.epochs)
    return TrainConfig(**values)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is left intact."""


def _autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when asked (no loss scaling needed); a no-op elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def evaluate_pgd(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], config: TrainConfig
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy under the run's ℓ∞ PGD (eps, alpha, steps)."""
    scored = score(
        model, batches, lambda x, y: pgd_linf(model, x, y, config.eps, config.alpha, config.steps)
    )
    return scored["loss"], scored["acc"]


def training_loss(
    model: nn.Module, attack_model: nn.Module, x: Tensor, y: Tensor, config: TrainConfig
) -> Tensor:
    """The method's objective on one batch; adversaries are found on `attack_model` (unwrapped)."""
    if config.method == "st":
        return F.cross_entropy(model(x), y)
    # The weights stay fixed until the optimizer's step: each kernel is built once for the batch.
    with shared_kernels(attack_model, x.shape[1]):
        if config.method == "pgd":
            x_adv = pgd_linf(attack_model, x, y, config.eps, config.alpha, config.steps)
            return F.cross_entropy(model(x_adv), y)
        x_adv = trades_adversary(attack_model, x, config.eps, config.alpha, config.steps)
        return trades_loss(model, x, y, config.beta, x_adv)


def _epoch_batches(
    n: int, batch_size: int, generator: torch.Generator, rank: int, world: int
) -> list[Tensor]:
    """This rank's share of each shuffled global batch (the whole batch when world == 1)."""
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size][rank::world] for i in range(0, n, batch_size)]


def _eval_subsets(
    train_set: SequenceDataset, test_set: SequenceDataset, config: TrainConfig
) -> tuple[SequenceDataset, SequenceDataset]:
    """The fixed train subset and the test (subset) evaluated after every epoch."""
    pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed))
    return train_set.subset(pick[: config.train_eval_size]), test_set.head(config.test_eval_size)


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drops rows after `last_epoch` (written before a crash that lost their checkpoint)."""
    kept = [r for r in _read_history(path) if r["epoch"] <= last_epoch]
    write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


# The run folder's files are the run's own: one a kill left unrecorded (between its rename and
# the sidecar) or half-appended (metrics.jsonl) is replaced when the run resumes.
@replacing()
def fit(
    model_config: ModelConfig,
    train_set: SequenceDataset,
    test_set: SequenceDataset,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    dataset: str = "custom",
    resume: bool = False,
    device: torch.device | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Trains a model of `model_config` into `run_dir`; returns the metrics of every epoch."""
    run_dir = Path(run_dir)
    proc = _setup_process(device, config.batch_size)
    state = _build_state(model_config, config, len(train_set), proc.device)
    metrics_path = run_dir / "metrics.jsonl"
    start = 1
    if resume and (run_dir / "last.pt").exists():
        start = _resume_from_last(run_dir, model_config, config, state, proc)
    elif proc.rank == 0:
        _start_run_folder(run_dir, model_config, config, dataset)
    trained = _wrap_ddp(state.model, proc.world)
    train_eval, test_eval = _eval_subsets(train_set, test_set, config)
    history = _read_history(metrics_path) if proc.rank == 0 else []
    for epoch in range(start, config.epochs + 1):
        train_loss, seconds = _train_epoch(
            trained, state, train_set, config, epoch, proc, run_dir, progress and proc.rank == 0
        )
        if proc.rank == 0:
            row = _epoch_row(epoch, seconds, train_loss, state, train_eval, test_eval, config)
            _append_metrics(metrics_path, row)
            history.append(row)
            best = best_epoch(history, model_config.n_classes)
            meta = _checkpoint_meta(row, best.rule, model_config, config, dataset)
            _save_checkpoints(run_dir, model_config, state, meta, best=best.epoch == epoch)
            if progress:
                print(summary_line(row, config.epochs), file=sys.stderr, flush=True)
        if proc.world > 1:
            dist.barrier()
    return history


@dataclass(frozen=True)
class _Process:
    """This process's place in the run: its rank among `world` processes and its device."""

    rank: int
    world: int
    device: torch.device


@dataclass(frozen=True)
class _State:
    """What training updates and last.pt keeps: the (unwrapped) model, optimizer and LR schedule."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def _setup_process(device: torch.device | None, batch_size: int) -> _Process:
    """Joins torchrun's process group, if any, and picks the device; ranks split batches evenly."""
    rank, world = _distributed()
    if device is None:
        device = default_device()
        if world > 1 and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
    return _Process(rank, world, device)


def _build_state(
    model_config: ModelConfig, config: TrainConfig, n_train: int, device: torch.device
) -> _State:
    """The model from the run's seed, AdamW, and a cosine schedule over all the run's steps."""
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, config.epochs * steps_per_epoch
    )
    return _State(model, optimizer, scheduler)


def _resume_from_last(
    run_dir: Path, model_config: ModelConfig, config: TrainConfig, state: _State, proc: _Process
) -> int:
    """Loads last.pt into `state`, drops later metrics rows; returns the first epoch to train."""
    ckpt = load_checkpoint(run_dir / "last.pt", map_location=proc.device)
    _check_same_run(ckpt, run_dir, model_config, config)
    load_into(state.model, ckpt)
    state.optimizer.load_state_dict(ckpt.extra["optimizer"])
    state.scheduler.load_state_dict(ckpt.extra["scheduler"])
    if proc.rank == 0:
        _truncate_metrics(run_dir / "metrics.jsonl", ckpt.meta["epoch"])
    return ckpt.meta["epoch"] + 1


def _check_same_run(
    ckpt: Checkpoint, run_dir: Path, model_config: ModelConfig, config: TrainConfig
) -> None:
    """Refuses to resume with another configuration: the finished epochs would not be this run's."""
    saved = ckpt.meta.get("train", {})
    changed = sorted(k for k, v in asdict(config).items() if saved.get(k, v) != v)
    saved_model = ModelConfig.from_dict(ckpt.config)  # fields added since: defaults
    if changed or saved_model != model_config:
        what = ", ".join(f"{k}: {saved[k]} -> {getattr(config, k)}" for k in changed)
        raise ValueError(
            f"cannot resume {run_dir} with a different configuration "
            f"({what or 'model config'}); start a new run instead"
        )


def _start_run_folder(
    run_dir: Path, model_config: ModelConfig, config: TrainConfig, dataset: str
) -> None:
    """Creates the run folder, drops an earlier run's metrics.jsonl and writes config.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    write_json(
        run_dir / "config.json",
        {
            "model": model_config.to_dict(),
            "train": asdict(config),
            "dataset": dataset,
            "method": config.method,
            "ads": model_config.ads,
            "seed": config.seed,
        },
    )


def _wrap_ddp(model: nn.Module, world: int) -> nn.Module:
    """The module to train through: under torchrun, DDP's wrapper, which averages gradients."""
    return nn.parallel.DistributedDataParallel(model) if world > 1 else model


def _train_epoch(
    trained: nn.Module,
    state: _State,
    train_set: SequenceDataset,
    config: TrainConfig,
    epoch: int,
    proc: _Process,
    run_dir: Path,
    show: bool,
) -> tuple[float, float]:
    """One epoch of the method's steps on this rank's shares; returns (mean loss, seconds)."""
    torch.manual_seed(config.seed * 100_003 + epoch)  # attack starts; same on resume
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    batches = _epoch_batches(len(train_set), config.batch_size, generator, proc.rank, proc.world)
    started = time.perf_counter()
    trained.train()
    loss_sum = 0.0
    bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", leave=False, disable=not show)
    for step, index in enumerate(bar, 1):
        x, y = train_set[index]
        if config.augment == "crop-flip":  # drawn after the batches: the same on resume
            x = crop_flip(x, generator)
        x, y = x.to(proc.device), y.to(proc.device)
        eps, alpha = config.budget_at((epoch - 1) * len(batches) + step - 1, len(batches))
        with _autocast(proc.device, config.amp):
            loss = training_loss(trained, state.model, x, y, replace(config, eps=eps, alpha=alpha))
        _check_finite(loss, config.method, epoch, step, run_dir)
        _optimizer_step(state, loss)
        loss_sum += loss.item()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - started  # training only, not the evaluation after it
    return loss_sum / len(batches), seconds


def _check_finite(loss: Tensor, method: str, epoch: int, step: int, run_dir: Path) -> None:
    """Stops on a NaN or infinite loss before its step would spread it into every weight."""
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"{method} loss became {loss.item()} at epoch {epoch}, step {step}; "
            f"the last good checkpoint is {run_dir / 'last.pt'}"
        )


def _optimizer_step(state: _State, loss: Tensor) -> None:
    """Backpropagates `loss`, steps AdamW and advances the LR schedule by one step."""
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()


def _epoch_row(
    epoch: int,
    seconds: float,
    train_loss: float,
    state: _State,
    train_eval: SequenceDataset,
    test_eval: SequenceDataset,
    config: TrainConfig,
) -> dict[str, Any]:
    """The epoch's metrics.jsonl row: LR, time and training loss, then the evaluation's metrics."""
    return {
        "epoch": epoch,
        "lr": state.scheduler.get_last_lr()[0],
        "seconds": seconds,
        "train_loss": train_loss,
        **_epoch_metrics(state.model, train_eval, test_eval, config),
    }


def _checkpoint_meta(
    row: dict[str, Any],
    best_rule: str,
    model_config: ModelConfig,
    config: TrainConfig,
    dataset: str,
) -> dict[str, Any]:
    """What the epoch's checkpoints record about the run, the epoch and how best.pt is chosen."""
    return {
        "dataset": dataset,
        "method": config.method,
        "ads": model_config.ads,
        "epoch": row["epoch"],
        "metrics": row,
        "seed": config.seed,
        "train": asdict(config),
        "best_rule": best_rule,
    }


def _save_checkpoints(
    run_dir: Path, model_config: ModelConfig, state: _State, meta: dict[str, Any], *, best: bool
) -> None:
    """Writes best.pt if the epoch is the best so far, then last.pt with what resuming needs."""
    if best:
        save_checkpoint(run_dir / "best.pt", model_config.to_dict(), state.model.state_dict(), meta)
    extra = {"optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict()}
    save_checkpoint(
        run_dir / "last.pt", model_config.to_dict(), state.model.state_dict(), meta, extra
    )


def _epoch_metrics(
    model: nn.Module, train_eval: SequenceDataset, test_eval: SequenceDataset, config: TrainConfig
) -> dict[str, float]:
    row: dict[str, float] = {}
    for split, data in (("train", train_eval), ("test", test_eval)):
        loader = make_loader(data, 256)
        clean = score(model, loader)
        row[f"{split}_clean_loss"], row[f"{split}_clean_acc"] = clean["loss"], clean["acc"]
        row[f"{split}_pgd_loss"], row[f"{split}_pgd_acc"] = evaluate_pgd(model, loader, config)
    return row


def summary_line(row: dict[str, Any], epochs: int) -> str:
    """One line per epoch: objective, then clean and PGD accuracy on train and test."""
    acc = {k: 100 * v for k, v in row.items() if k.endswith("_acc")}
    return (
        f"epoch {row['epoch']:3d}/{epochs} | loss {row['train_loss']:.4f} | "
        f"train clean {acc['train_clean_acc']:5.1f}% pgd {acc['train_pgd_acc']:5.1f}% | "
        f"test clean {acc['test_clean_acc']:5.1f}% pgd {acc['test_pgd_acc']:5.1f}% | "
        f"{row['seconds']:.1f} s"
    )


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
