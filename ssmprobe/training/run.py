"""One training run as a user names it: where it goes, whether it resumes, what it trains.

`train("s4", "digits", "pgd", ads="relu")` builds the model and training configs from the
dataset's preset (Table 4 for MNIST and CIFAR-10) with the given options on top, and trains
into OUT/NAME (default name the zoo's and the grid's, then the dataset:
MODEL_METHOD[_ads-ADS]_DATASET[_seedN], `run_name`). A run directory that already holds a
run is continued only with `resume=True`, and `resume=True` needs one: a mistyped name never
starts a fresh run silently, nor does a second run overwrite a first. While it trains, the run
folder is locked (`io.folder_lock`): a second `train` of the same run is refused with the pid
that holds it. `ssmprobe train` and the grid both call this.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ssmprobe.data import load_dataset
from ssmprobe.io import folder_lock, written_here
from ssmprobe.loading import resolve_device
from ssmprobe.models import model_config
from ssmprobe.models.registry import ARCH_DEFAULTS, ARCHS, check_fits, training_bytes
from ssmprobe.training.fit import TrainConfig, fit, train_config

ARCH_OPTIONS = ("d_model", "n_layers", "d_state", "ads_form", "residual", "b_norm")
TRAIN_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name != "method")


@dataclass(frozen=True)
class TrainedRun:
    """Where a run went, the metrics of every epoch, and its configs."""

    path: Path
    history: list[dict[str, Any]]
    config: TrainConfig

    def summary(self) -> str:
        """The last epoch's test accuracies in one line (empty before any epoch)."""
        if not self.history:
            return f"{self.path}: no epoch trained"
        last = self.history[-1]
        return (
            f"{self.path}: clean accuracy {100 * last['test_clean_acc']:.2f}%, "
            f"PGD-{self.config.steps} accuracy {100 * last['test_pgd_acc']:.2f}% (last epoch)"
        )


def run_name(
    model: str,
    dataset: str,
    method: str,
    ads: str | None = None,
    seed: int | None = 0,
    out: str | Path | None = None,
) -> str:
    """The default run folder name: the zoo's and the grid's name of the setting, then the
    dataset and, for a seed other than 0, the grid's _seed<n>: dss_trades_ads-relu_digits,
    s4_pgd_mnist_seed1. Given the runs folder `out`, a run there under 0.2's name
    (MODEL[_ADS]_DATASET_METHOD, no seed) and none under this one keeps its folder, with a
    warning: `--resume` and `--force` of a run begun with 0.2 act on that run."""
    setting = f"{model}_{method}" + (f"_ads-{ads}" if ads else "")
    name = f"{setting}_{dataset}" + (f"_seed{seed}" if seed else "")
    old = "_".join([model, *([ads] if ads else []), dataset, method])
    found = Path(out or ".") / old
    if (
        out is not None
        and not run_files(Path(out) / name)
        and run_files(found)
        and _seed_of(found) == (seed or 0)
    ):
        warnings.warn(
            f"{found} is this run under its 0.2 name ({name} now): using it", stacklevel=3
        )
        return old
    return name


def _seed_of(run_dir: Path) -> int | None:
    """The training seed in a run's config.json; None where it cannot be read."""
    try:
        return int(json.loads((run_dir / "config.json").read_text())["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


RUN_FILES = ("config.json", "metrics.jsonl", "best.pt", "last.pt")


def run_files(run_dir: Path) -> list[str]:
    """The run's files in `run_dir`: a folder holding any of them is a run."""
    return [f for f in RUN_FILES if os.path.lexists(run_dir / f)]


def run_directory(out: str | Path, name: str, resume: bool, force: bool = False) -> Path:
    """OUT/NAME, checked against `resume` and `force`: a folder holding any of a run's files is
    a run, continued with `resume` (from last.pt) or started over with `force`; `resume` needs
    last.pt (a mistyped name starts nothing), except where the run holds only its config.json
    (stopped before its first epoch ended: it starts again)."""
    if resume and force:
        raise ValueError("--resume continues a run and --force starts it over: choose one")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file; it must name a directory of runs")
    run_dir = Path(out) / name
    found = run_files(run_dir)
    if found and not (resume or force):
        raise ValueError(
            f"{run_dir} already holds a run ({', '.join(found)}); pass --resume to continue it, "
            "--force to start it over or --name to start another"
        )
    if resume and "last.pt" not in found and found != ["config.json"]:
        if found:
            raise ValueError(
                f"{run_dir} holds {', '.join(found)} but no last.pt to resume from; pass --force "
                "to start it over or --name to start another run"
            )
        raise ValueError(f"nothing to resume: {run_dir / 'last.pt'} not found; drop --resume")
    return run_dir


def _clear_run(run_dir: Path) -> None:
    """Deletes a run's files and what ssmprobe wrote beside them (its caches), for `force`."""
    for name in run_files(run_dir):
        (run_dir / name).unlink()
    for path in run_dir.iterdir():
        if path.is_file() and written_here(path):
            path.unlink()


def train(
    model: str = "s4",
    dataset: str = "digits",
    method: str = "st",
    *,
    ads: str | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    resume: bool = False,
    force: bool = False,
    preset: str | None = None,
    arch: str | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    **options: Any,
) -> TrainedRun:
    """Trains (or resumes, or with `force` starts over) one run; `options` are architecture
    sizes (`ARCH_OPTIONS`) and training settings (`TRAIN_OPTIONS`), None meaning the preset's."""
    unknown = sorted(set(options) - {*ARCH_OPTIONS, *TRAIN_OPTIONS})
    if unknown:
        raise ValueError(f"unknown training options {unknown}")
    train_set = load_dataset(dataset, "train", data_dir)
    test_set = load_dataset(dataset, "test", data_dir)
    preset = preset or dataset
    arch_values = dict(ARCHS[arch or ARCH_DEFAULTS.get(preset, "table3")])
    arch_values |= {k: options[k] for k in ARCH_OPTIONS if options.get(k) is not None}
    mconfig = model_config(
        model,
        preset,
        d_input=train_set.channels,
        n_classes=train_set.num_classes,
        ads=ads,
        **arch_values,
    )
    tconfig = train_config(
        preset, model, method=method, **{k: options.get(k) for k in TRAIN_OPTIONS}
    )
    need = training_bytes(mconfig, tconfig.batch_size, train_set.seq_len)
    check_fits(mconfig, need, f"training (batch {tconfig.batch_size}, L {train_set.seq_len})")
    device = resolve_device(device)
    if options.get("amp") and device.type != "cuda":
        raise ValueError(f"--amp is bfloat16 autocast on CUDA; this run is on {device}")
    name = name or run_name(model, dataset, method, ads, options.get("seed"), out)
    run_dir = run_directory(out, name, resume, force)
    writer = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes the run
    with folder_lock(run_dir) if writer else nullcontext():
        run_directory(out, run_dir.name, resume, force)  # again: no other writer can start now
        if force and writer:
            _clear_run(run_dir)
        history = fit(
            mconfig,
            train_set,
            test_set,
            tconfig,
            run_dir,
            dataset=dataset,
            resume=resume and (run_dir / "last.pt").is_file(),
            device=device,
            progress=progress,
        )
    return TrainedRun(run_dir, history, tconfig)


if __name__ == "__main__":  # what the grid starts under torchrun: one JSON of `train`'s arguments
    train(**json.loads(sys.argv[1]))
