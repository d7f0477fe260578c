"""The `ssmprobe` command line: one module per group of subcommands, each a thin layer over
the Python API (parse, call, print what the owning module formats). Modules that import
slowly (matplotlib, AutoAttack) are imported when their command runs."""

from __future__ import annotations

import argparse
import sys

from ssmprobe.checkpoint import CheckpointError
from ssmprobe.cli import bounds, evaluate, interop, poison, probe, report, train
from ssmprobe.data import DatasetError
from ssmprobe.training.fit import TrainingDiverged
from ssmprobe.version import __version__

COMMANDS = (train, evaluate, probe, bounds, interop, poison, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmprobe", description="Adversarial robustness of deep state space models."
    )
    parser.add_argument("--version", action="version", version=f"ssmprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, CheckpointError, TrainingDiverged, ValueError, FileNotFoundError) as err:
        print(f"ssmprobe: error: {err}", file=sys.stderr)
        return 2
