"""Options that several commands share, each declared here once with one help text.

`--out` names one of a few kinds of output (`OUT_KINDS`); every command that writes states which
kind its `--out` is, with that kind's help text.
"""

from __future__ import annotations

import argparse
from typing import Any

from ssmprobe.data import DATASETS
from ssmprobe.interop.reference import REFERENCE_FAMILIES, Reference
from ssmprobe.vocab import ADS_ACTIVATIONS

Parser = argparse.ArgumentParser
Subparsers = argparse._SubParsersAction


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


HELP = {
    "quiet": "no progress bars or progress lines",
    "data_dir": "dataset files (default $SSMPROBE_DATA or ~/.cache/ssmprobe/data)",
    "device": "torch device (default: CUDA when present, else the CPU)",
    "ckpt": "checkpoint file, or the name of a bundled one (s4_pgd.pt)",
    "n": "how many samples: the first N of the split (all when N exceeds it)",
    "batch_size": "samples per batch",
    "seed": "random seed (training: initialisation and batches; attacks: random starts)",
    "eps": "ℓ∞ budget ε in (0, 1] (default: the preset's for training, the checkpoint's "
    "training ε for an attack)",
    "attack": "pgd<N>, fgsm, pgdl2-<N>, aa (standard AutoAttack), aa-fast (APGD-CE + APGD-T); "
    "comma-separated where a command runs several",
    "split": "split(s) of the dataset, comma-separated: train, test",
    "norm": "printed table: plain discrepancy, or divided by ||f|| (the paper's relative form); "
    "the files hold both",
    "model": "model family",
    "dataset": "dataset",
    "ads": "AdS activation after each SSM (a reference file with AdS weights needs it too)",
    "figures": "also draw the figures into this folder",
}


def add(p: Parser | argparse._ArgumentGroup, name: str, **kwargs: Any) -> None:
    """`--name` with its one help text (`HELP`)."""
    flag = "--" + name.replace("_", "-")
    if name in ("quiet",):
        kwargs.setdefault("action", "store_true")
    if name in ("n", "batch_size", "seed"):
        kwargs.setdefault("type", int)
    if name == "eps":
        kwargs.setdefault("type", float)
    if name == "ads":
        kwargs.setdefault("choices", ADS_ACTIVATIONS)
    if name == "dataset":
        kwargs.setdefault("choices", sorted(DATASETS))
    if name == "figures":
        kwargs.setdefault("metavar", "DIR")
    p.add_argument(flag, help=HELP[name], **kwargs)


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
    if not own_model:
        add(g, "model", choices=REFERENCE_FAMILIES)
    add(g, "dataset")
    add(g, "ads")


def reference(args: argparse.Namespace, own_model: bool = False) -> Reference | None:
    """The `Reference` that --from reference and its flags describe; None for native files,
    whose config already says what --model/--dataset/--ads would (`own_model`: --model is the
    command's own, not the reference group's)."""
    flags = ["dataset", "ads"] if own_model else ["model", "dataset", "ads"]
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
    return Reference(args.model, args.dataset, args.ads)


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def indices(text: str | None) -> list[int] | None:
    """ "0,2-4" -> [0, 2, 3, 4]; None stays None (all)."""
    if text is None:
        return None
    picked: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            picked += list(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"cannot read {text!r} as indices like 0,2-4") from None
    return picked


def renamed(p: Parser, old: str, new: str) -> None:
    """`old` is gone: using it fails with a message naming `new`."""

    class Renamed(argparse.Action):
        def __call__(self, parser: Parser, *_: Any, **__: Any) -> None:
            parser.error(f"{old} is now {new}")

    p.add_argument(old, nargs="?", action=Renamed, help=argparse.SUPPRESS)
