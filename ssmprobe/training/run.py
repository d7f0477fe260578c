"""One training run as a user names it: where it goes, whether it resumes, what it trains.

`train("s4", "digits", "pgd", ads="relu")` builds the model and training configs from the
dataset's preset (Table 4 for MNIST and CIFAR-10) with the given options on top, and trains
into OUT/NAME (default name MODEL[_ADS]_DATASET_METHOD). A run directory that already holds a
run is continued only with `resume=True`, and `resume=True` needs one: a mistyped name never
starts a fresh run silently, nor does a second run overwrite a first. `ssmprobe train` and the
grid both call this.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ssmprobe.data import load_dataset
from ssmprobe.loading import resolve_device
from ssmprobe.models import model_config
from ssmprobe.models.registry import ARCH_DEFAULTS, ARCHS
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


def run_name(model: str, dataset: str, method: str, ads: str | None = None) -> str:
    """The default run folder name: MODEL[_ADS]_DATASET_METHOD."""
    return "_".join([model, *([ads] if ads else []), dataset, method])


def run_directory(out: str | Path, name: str, resume: bool) -> Path:
    """OUT/NAME, checked against `resume`: a run that exists needs `resume`, and `resume`
    needs one (say, a mistyped name)."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file; it must name a directory of runs")
    run_dir = Path(out) / name
    if not resume and (run_dir / "last.pt").exists():
        raise ValueError(
            f"{run_dir} already holds a run; pass --resume to continue it "
            "or --name to start another"
        )
    if resume and not (run_dir / "last.pt").is_file():
        raise ValueError(f"nothing to resume: {run_dir / 'last.pt'} not found; drop --resume")
    return run_dir


def train(
    model: str = "s4",
    dataset: str = "digits",
    method: str = "st",
    *,
    ads: str | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    resume: bool = False,
    preset: str | None = None,
    arch: str | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    **options: Any,
) -> TrainedRun:
    """Trains (or resumes) one run; `options` are architecture sizes (`ARCH_OPTIONS`) and
    training settings (`TRAIN_OPTIONS`), None meaning the preset's."""
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
    run_dir = run_directory(out, name or run_name(model, dataset, method, ads), resume)
    history = fit(
        mconfig,
        train_set,
        test_set,
        tconfig,
        run_dir,
        dataset=dataset,
        resume=resume,
        device=resolve_device(device),
        progress=progress,
    )
    return TrainedRun(run_dir, history, tconfig)


if __name__ == "__main__":  # what the grid starts under torchrun: one JSON of `train`'s arguments
    train(**json.loads(sys.argv[1]))
