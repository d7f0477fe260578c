"""The `ssmprobe` command line: one module per group of subcommands, each a thin layer over
the Python API (parse, call, print what the owning module formats). Modules that import
slowly (matplotlib, AutoAttack) are imported when their command runs.

Exit codes: 0 done, 1 the work failed (a missing or corrupt file, a dataset that cannot be read,
training that diverged, an OS error), 2 a usage error (a flag or value the command cannot take),
130 interrupted (Ctrl-C), with one line on stderr and no traceback. Progress goes to stderr,
results to stdout.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ssmprobe.checkpoint import CheckpointError
from ssmprobe.cli import bounds, evaluate, interop, poison, probe, report, train, usermodel, zoo
from ssmprobe.cli import options as opt
from ssmprobe.fileformats import DatasetError
from ssmprobe.io import replacing
from ssmprobe.plugins import PluginError, load_plugins
from ssmprobe.training.fit import TrainingDiverged
from ssmprobe.version import __version__

COMMANDS = (train, evaluate, probe, bounds, interop, poison, report, zoo)
RUNTIME_ERRORS = (DatasetError, CheckpointError, TrainingDiverged, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = opt.Parser(
        prog="ssmprobe",
        description="Adversarial robustness of deep state space models.",
        epilog="Exit codes: 0 done, 1 the work failed, 2 a usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"ssmprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add(sub)
    usermodel.add_inspect(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (a usage error's 2 and --help's 0 too)."""
    try:
        load_plugins()  # before the parser: the choices include what plugins register
    except PluginError as err:
        print(f"ssmprobe: error: {err}", file=sys.stderr)
        return 2
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # argparse has printed the help or the one-line error
        return int(done.code or 0)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        opt.check_outputs(args)
        with replacing(getattr(args, "force", False)):
            return args.func(args)
    except KeyboardInterrupt:
        print(f"ssmprobe: interrupted; {_resume_hint(args)}", file=sys.stderr)
        return 130
    except RUNTIME_ERRORS as err:  # FileNotFoundError is an OSError
        print(f"ssmprobe: error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # a value the command cannot take
        print(f"ssmprobe: error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    """A warning as one line on stderr, where it happens."""
    print(f"ssmprobe: warning: {message}", file=sys.stderr)


def _resume_hint(args: argparse.Namespace) -> str:
    """What to run to carry on: training resumes from last.pt; the report keeps what it
    cached; other commands wrote nothing (their writes are atomic) and start again."""
    if args.command == "train":
        return "add --resume to the same command to continue from the last finished epoch"
    if args.command == "report":
        return "run the same command again: what was computed is cached and kept"
    return "nothing was written; run the same command again"
