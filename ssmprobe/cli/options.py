"""Options that several commands share, each declared here once with one help text.

`--out` names one of a few kinds of output (`OUT_KINDS`); every command that writes states which
kind its `--out` is, with that kind's help text.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, NoReturn

from ssmprobe.attacks import attack_help
from ssmprobe.data import DATASETS
from ssmprobe.interop.reference import REFERENCE_FAMILIES, Reference
from ssmprobe.io import check_output_dir, check_output_file
from ssmprobe.vocab import ADS_ACTIVATIONS


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, `ssmprobe: error: ...` (exit 2), like every other error;
    `--help` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ssmprobe: error: {message} (see {self.prog} --help)\n")


Subparsers = argparse._SubParsersAction


def number(kind: type, low: float | None = None, high: float | None = None, strict: bool = False):
    """An argparse type: a finite `kind` (int or float) in [low, high] ((low, high] when
    `strict`), named in the error when it is not."""
    bounds = (
        ("(" if strict else "[") + f"{low:g}, " + (f"{high:g}]" if high is not None else "inf)")
        if low is not None
        else "finite"
    )

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a{'n integer' if kind is int else ' number'}: {text!r}"
            ) from None
        below = low is not None and (value <= low if strict else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be in {bounds}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE = number(int, 1)
COUNT = number(int, 0)
FINITE = number(float)
POSITIVE_FLOAT = number(float, 0, strict=True)


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except unset (None) ones: their help says what happens instead."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def command(sub: Subparsers, name: str, help: str, description: str | None = None) -> Parser:
    """A subcommand's parser, with defaults shown."""
    return sub.add_parser(
        name, help=help, description=description or help, formatter_class=Formatter
    )


OUT_KINDS = {
    "runs": "folder that holds the run folders",
    "folder": "folder the outputs are written to (created if missing)",
    "csv": "CSV file of the results; a JSON of the same name goes beside it",
    "json": "JSON file of the results",
    "checkpoint": "checkpoint file to write",
}


def out(p: Parser, kind: str, default: str | None = None, required: bool = False) -> None:
    p.add_argument(
        "--out", default=default, required=required, metavar=kind.upper(), help=OUT_KINDS[kind]
    )
    p.set_defaults(out_kind=kind)
    if kind != "runs":  # train has its own --force (the run started over)
        add(p, "force")


RESERVED_RUN_NAMES = ("zoo",)  # `report --zoo` writes the bundled checkpoints there


def check_outputs(args: argparse.Namespace) -> None:
    """Refuses, before any work, an --out that cannot be written as its kind or that would
    destroy an input, and a run name that would leave its folder."""
    kind = getattr(args, "out_kind", None)
    if kind is None:  # the command writes nothing
        return
    inputs = [
        *(args.ckpt if isinstance(getattr(args, "ckpt", None), list) else []),
        *[
            getattr(args, k)
            for k in ("ckpt", "state_dict")
            if isinstance(getattr(args, k, None), str)
        ],
        *getattr(args, "results", []),
    ]
    if args.out is None and hasattr(args, "default_out"):  # a default that depends on the input
        args.out = args.default_out(args)
    target = args.out
    if kind == "runs":
        check_output_dir(target)
        if args.name is not None and (
            args.name in ("", ".", "..") or Path(args.name).name != args.name
        ):
            raise ValueError(f"--name {args.name!r} must be a plain folder name, without / or ..")
        if args.name in RESERVED_RUN_NAMES:
            raise ValueError(f"--name {args.name!r} is reserved for the bundled zoo")
    elif kind == "folder" and target is not None:
        check_output_dir(target)
        for name in getattr(args, "out_names", ()):  # the fixed names it writes there
            check_output_file(Path(target) / name, inputs, force=args.force)
    elif kind == "csv":
        if Path(target).suffix.lower() == ".json":
            raise ValueError(f"--out {target}: name the CSV; its JSON is written beside it")
        for path in (Path(target), Path(target).with_suffix(".json")):
            check_output_file(path, inputs, force=args.force)
    elif kind == "json" and target is not None:
        check_output_file(target, inputs, force=args.force)
    elif kind == "checkpoint":
        check_output_file(target, inputs, overwrite=args.force, checkpoint=True)


HELP = {
    "quiet": "no progress bars or per-epoch lines (one line per step and the results still print)",
    "data_dir": "dataset files (default $SSMPROBE_DATA or ~/.cache/ssmprobe/data)",
    "device": "torch device (default: CUDA when present, else the CPU)",
    "ckpt": "checkpoint file, or the name of a bundled one (s4_pgd.pt)",
    "n": "how many samples: the first N of the split (all when N exceeds it)",
    "batch_size": "samples per batch",
    "seed": "random seed (training: initialisation and batches; attacks: random starts)",
    "eps": "ℓ∞ budget ε in (0, 1] (default: the preset's for training, the checkpoint's "
    "training ε for an attack)",
    "split": "split(s) of the dataset, comma-separated: train, test",
    "norm": "printed table: plain discrepancy, or divided by ||f|| (the paper's relative form); "
    "the files hold both",
    "model": "model family; where a command analyses a model, also your own: pkg.module:factory "
    "or path/file.py:factory with --components (importing it runs that code)",
    "dataset": "dataset",
    "ads": "AdS activation after each SSM (a reference file with AdS weights needs it too)",
    "figures": "also draw the figures into this folder",
    "force": "replace what would be refused: an existing output file that ssmprobe did not "
    "write (--out, or a file of that name in the --out folder; results never replace a PyTorch "
    "checkpoint); for train, the run NAME, started over with its "
    "checkpoints, metrics and caches deleted",
}


def add(p: Parser | argparse._ArgumentGroup, name: str, **kwargs: Any) -> None:
    """`--name` with its one help text (`HELP`)."""
    flag = "--" + name.replace("_", "-")
    if name in ("quiet", "force"):
        kwargs.setdefault("action", "store_true")
    if name in ("n", "batch_size"):
        kwargs.setdefault("type", POSITIVE)
    if name == "seed":
        kwargs.setdefault("type", COUNT)
    if name == "eps":
        kwargs.setdefault("type", number(float, 0, strict=True))
    if name == "ads":
        kwargs.setdefault("choices", ADS_ACTIVATIONS)
    if name == "dataset":
        kwargs.setdefault("choices", sorted(DATASETS))
    if name == "figures":
        kwargs.setdefault("metavar", "DIR")
    p.add_argument(flag, help=attack_help() if name == "attack" else HELP[name], **kwargs)


def data_and_device(p: Parser) -> None:
    add(p, "data_dir")
    add(p, "device")


def reference_source(p: Parser, own_model: bool = False) -> None:
    """--from reference and what it needs to read the reference code's state dicts."""
    g = p.add_argument_group(
        "checkpoints of the paper's reference code",
        "a plain state dict saved by that code, converted in memory (see `ssmprobe import`)",
    )
    g.add_argument(
        "--from",
        dest="source",
        choices=["native", "reference"],
        default="native",
        help="native: an ssmprobe checkpoint; reference: that code's state dict (needs "
        "--model and --dataset)",
    )
    if not own_model:  # a family, or your own model's factory (`cli.usermodel`)
        add(g, "model")
    add(g, "dataset")
    add(g, "ads")


def reference(args: argparse.Namespace, own_model: bool = False) -> Reference | None:
    """The `Reference` that --from reference and its flags describe; None for native files,
    whose config already says what --model/--dataset/--ads would (`own_model`: --model is the
    command's own, not the reference group's)."""
    flags = ["dataset", "ads"] if own_model else ["model", "dataset", "ads"]
    if ":" in (getattr(args, "model", None) or "") and not own_model:
        flags.remove("model")  # your own model's factory (`cli.usermodel`)
    if args.source == "native":
        given = [f"--{f}" for f in flags if getattr(args, f) is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)}: only for a reference state dict (add --from reference)"
            )
        return None
    missing = [f"--{f}" for f in ("model", "dataset") if getattr(args, f) is None]
    if missing:
        raise ValueError(f"--from reference needs {' and '.join(missing)}")
    if args.model not in REFERENCE_FAMILIES:
        raise ValueError(f"--model {args.model!r}: a reference family is one of "
                         f"{', '.join(REFERENCE_FAMILIES)}")  # fmt: skip
    return Reference(args.model, args.dataset, args.ads)


def comma_list(text: str, option: str, example: str = "pgd10,aa") -> list[str]:
    """The comma-separated names of `option` (--attack, --split): none, or one twice, refused."""
    from ssmprobe.inputs import as_names

    return as_names([p.strip() for p in text.split(",") if p.strip()], option, example)


def indices(text: str | None) -> list[int] | None:
    """ "0,2-4" -> [0, 2, 3, 4]; None stays None (all)."""
    if text is None:
        return None
    picked: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            span = range(int(first), int(last if dash else first) + 1)
        except ValueError:
            raise ValueError(f"cannot read {text!r} as indices like 0,2-4") from None
        if not span:
            raise ValueError(f"{part.strip()!r} in {text!r} is an empty range (write low-high)")
        picked += list(span)
    return picked


def renamed(p: Parser, old: str, new: str) -> None:
    """`old` is gone: using it fails with a message naming `new`."""

    class Renamed(argparse.Action):
        def __call__(self, parser: Parser, *_: Any, **__: Any) -> None:
            parser.error(f"{old} is now {new}")

    p.add_argument(old, nargs="?", action=Renamed, help=argparse.SUPPRESS)
