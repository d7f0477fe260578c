"""The command line of analysis/reproduce_*.py: list (`--dry-run`) or launch the paper's grid
(`ssmprobe.grid`), then write its report."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssmprobe.cli import options as opt
from ssmprobe.cli import train as train_command
from ssmprobe.grid import (
    GridError,
    GridRun,
    LaunchOptions,
    expected_hours,
    finished,
    launch,
    paper_grid,
    select,
)
from ssmprobe.models import FAMILIES
from ssmprobe.training.fit import train_config
from ssmprobe.training.run import ARCH_OPTIONS, TRAIN_OPTIONS
from ssmprobe.vocab import METHODS

_EXTRA = {*ARCH_OPTIONS, *TRAIN_OPTIONS, "preset", "arch", "data_dir", "device"}


def train_options(extra: str) -> dict[str, Any]:
    """`ssmprobe train` options given as text ("--data-dir D --epochs 5") as `train`'s keyword
    arguments: only those that differ from the defaults."""
    parser = argparse.ArgumentParser(prog="--extra", add_help=False)
    train_command.add(parser.add_subparsers())
    given = vars(parser.parse_args(["train", *extra.split()]))
    default = vars(parser.parse_args(["train"]))
    return {k: v for k, v in given.items() if k in _EXTRA and v != default[k]}


def main(
    argv: Sequence[str] | None,
    datasets: Sequence[str],
    description: str,
    n_eval: int = 1000,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> tuple[list[GridRun], Path, bool]:
    """Lists or launches the grid, then writes the report; returns the grid, its runs folder
    and whether it was launched. `parents` add a script's own options (parsed by the script)
    to this `--help`."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=list(parents),
    )
    parser.add_argument("--dataset", choices=datasets, default=datasets[0])
    parser.add_argument("--runs", help="where the runs go (default runs/DATASET)")
    parser.add_argument("--out", help="where the report goes (default: no report)")
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--n", type=int, default=n_eval, help="test samples per evaluation")
    parser.add_argument(
        "--attack", default="pgd10,aa", help="attacks of each evaluation (pgd10: a quick pass)"
    )
    opt.deprecated(parser, "--attacks", "--attack")
    parser.add_argument(
        "--seeds", default="0", help="comma-separated training seeds; seed n > 0 adds _seed<n>"
    )
    parser.add_argument("--launcher", choices=["local", "slurm"], default="local")
    parser.add_argument("--jobs", type=int, default=1, help="local: grid jobs at once")
    opt.deprecated(parser, "--parallel", "--jobs")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per job (>1: torchrun)")
    parser.add_argument("--timeout-min", type=int, default=24 * 60, help="time per job")
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument(
        "--only",
        help="run names, settings (every seed: s4_pgd) or shell patterns, comma-separated, "
        "e.g. 'mamba_*,*_ads-*'",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs and GPU-hours")
    parser.add_argument("--extra", default="", help="more train options, e.g. '--data-dir D'")
    args = parser.parse_args(argv)
    runs = Path(args.runs or f"runs/{args.dataset}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    try:
        options = train_options(args.extra)
        grid = paper_grid(
            args.dataset, args.models.split(","), args.methods.split(","), options, seeds
        )
        if args.only:
            grid = select(grid, args.only.split(","))
    except ValueError as err:  # unknown model or method, a pattern that matches nothing
        parser.error(str(err))
    if args.dry_run:
        _print_dry_run(grid, runs)
        return grid, runs, False
    launch_options = LaunchOptions(
        args.launcher, args.gpus, args.timeout_min, 1, args.partition, str(runs / ".submitit"),
        args.jobs,
    )  # fmt: skip
    try:
        launch(grid, runs, launch_options, n_eval=args.n, attacks=args.attack)
    except GridError as err:
        parser.exit(1, f"error: {err}\nrerun the same command to retry them\n")
    if args.out:
        from ssmprobe.cli import main as ssmprobe

        ssmprobe(["report", "--runs", str(runs), "--out", args.out, "--n", str(args.n)])
    return grid, runs, True


def _print_dry_run(grid: Sequence[GridRun], runs: Path) -> None:
    hours = expected_hours(grid, lambda r: train_config(r.dataset, r.model).epochs)
    width = max(len(run.name) for run in grid) + 2
    for run, row in zip(grid, hours["rows"], strict=True):
        state = "finished" if finished(runs / run.name) else "to do"
        cost = "unmeasured" if row["gpu_hours"] is None else f"{row['gpu_hours']:.1f} GPU-h"
        print(f"{run.name:<{width}}{row['epochs']:>5} epochs  {cost:<14}{state}")
    print(
        f"{len(grid)} runs: {hours['measured_total']:.1f} GPU-hours from measured epoch "
        f"times (an AdS run at its model's), {hours['unmeasured']} run(s) unmeasured"
    )
