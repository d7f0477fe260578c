"""Options that several commands share, each declared here once: one name per concept, and
its help text, or one text per meaning where commands use it differently (`HELP`: `--seed`
seeds training in `train` and an attack's random starts elsewhere).

The names, one per concept: `--jobs` (processes), `--n` (the command's sample count; the report,
which has two, `--n` for its evaluations and `--n-probe` for the discrepancy), `--form
plain|relative` (the discrepancy's form), `--pdf` (vector copies of the figures, PNG alone by
default). `--out` names a command's main output, one of a few kinds (`OUT_KINDS`): every command
that writes states which kind its `--out` is, with that kind's help text; where figures are
the main output (`plot`, `attribute`) `--out` is their folder, and where they come beside a
results file (`bounds`, `poison`) `--figures DIR` adds them. A name replaced by one of these
stays a hidden alias for one release that says so on stderr (`deprecated`); a name already
gone fails naming its successor (`renamed`).

Defaults read `(default: X)` at the end of the help, once: the formatter appends the value;
an unset (None) default that means something else says what, in the same words.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from ssmprobe.attacks import attack_help
from ssmprobe.data import DATASETS
from ssmprobe.interop.reference import REFERENCE_FAMILIES, Reference
from ssmprobe.io import check_output_dir, check_output_file
from ssmprobe.vocab import ADS_ACTIVATIONS


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, `ssmprobe: error: ...` (exit 2), like every other error, with
    the subcommand whose `--help` lists what it takes; `--help` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ssmprobe: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse's, but an unknown option is reported by the subcommand it was given
        to (`see ssmprobe eval --help`, not `see ssmprobe --help`)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._given_to(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _given_to(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = getattr(parsed, action.dest, None)
                if chosen in action.choices:
                    return action.choices[chosen]
        return self


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
    """Shows defaults as `(default: X)`, except unset (None) ones, whose help ends with what
    happens instead in the same form, and flags (store_true)."""

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
    "figures": "folder the figures are written to (created if missing)",
    "csv": "CSV file of the results; a JSON of the same name goes beside it",
    "json": "JSON file of the results",
    "checkpoint": "checkpoint file to write",
}


def out(p: Parser, kind: str, default: str | None = None, required: bool = False) -> None:
    p.add_argument(
        "--out", default=default, required=required, metavar=kind.upper(), help=OUT_KINDS[kind]
    )
    p.set_defaults(out_kind="folder" if kind == "figures" else kind)
    if kind != "runs":  # train has its own --force (the run started over)
        add(p, "force", "checkpoint" if kind == "checkpoint" else "file")


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


_ANALYSED = (
    "with --from reference, the family of that state dict; else your own model: "
    "pkg.module:factory or path/file.py:factory with --components (importing it runs that code)"
)
HELP: dict[str, str | dict[str, str]] = {
    "quiet": {
        "train": "no progress bar or per-epoch lines on stderr (the final summary still prints)",
        "work": "no progress bars or time estimates on stderr (the results still print)",
        "report": "no progress bars, time estimates or step lines on stderr (the written files "
        "and the findings still print)",
    },
    "data_dir": "dataset files (default: $SSMPROBE_DATA, else ~/.cache/ssmprobe/data)",
    "device": "torch device (default: CUDA when present, else the CPU)",
    "ckpt": {
        "one": "checkpoint file, or the name of a bundled one (s4_pgd.pt)",
        "several": "checkpoint file, or the name of a bundled one (s4_pgd.pt); repeat it for "
        "several",
    },
    "n": {
        "eval": "test samples: the first N of the test split (all when N exceeds it)",
        "discrepancy": "samples per split: the first N of each (all when N exceeds it)",
        "attribute": "samples: the first N of --split",
        "bounds": "test samples: those PGD-10 attacks with --perturb adversarial, and those "
        "Mamba's input-dependent H is averaged over",
        "report": "test samples per evaluation: the first N (as `eval --n`)",
    },
    "batch_size": {
        "train": "samples per batch (default: the preset's)",
        "work": "samples per batch",
    },
    "seed": {
        "train": "random seed: initialisation, batch order and the training attack's random starts",
        "attack": "random seed of the attack's random starts",
    },
    "eps": {
        "train": "ℓ∞ budget ε of the training attack, in (0, 1] (default: the preset's)",
        "attack": "budget ε of the attack, at most 1 for ℓ∞ (default: the checkpoint's training "
        "ε, else its dataset's preset; your own model: its spec's eps)",
        "bounds": "scale of the i.i.d. noise, or with --perturb adversarial the PGD-10 budget "
        "(default: 0.1 for the noise, the checkpoint's training ε for PGD-10)",
    },
    "split": {
        "several": "splits of the dataset, comma-separated: train, test",
        "one": "split of the dataset",
    },
    "form": {
        "discrepancy": "form of the printed table: plain discrepancy, or divided by ||f|| (the "
        "paper's relative form); the files hold both",
        "plot": "form Figures 3-4 show: plain discrepancy, or divided by ||f|| (the paper's "
        "relative form; their file names end in _relative); the per-position curves are the "
        "same in both",
    },
    "model": {
        "family": "model family",
        "reference": "model family of the reference code's state dict",
        "analysed": _ANALYSED,
        "own": "your own model: pkg.module:factory or path/file.py:factory with --components "
        "(importing it runs that code)",
        "bounds": "model family, or your own model: pkg.module:factory or path/file.py:factory "
        "with --components, whose import runs that code (default: the --ckpt's family; give it "
        "with --init, without --ckpt, which checks the bundled MODEL_pgd.pt, and with --from "
        "reference)",
    },
    "dataset": {
        "train": "dataset",
        "reference": "dataset the reference code's state dict was trained on",
    },
    "ads": {
        "train": "AdS activation after each SSM (default: none)",
        "reference": "AdS activation of the reference code's state dict, where it has AdS weights",
    },
    "figures": "also draw the figures into this folder",
    "pdf": "also write every figure as a PDF (vector, for papers) beside its PNG",
    "jobs": {
        "eval": "processes AutoAttack's batches (--batch-size samples each, all with the same "
        "seed) run in on this machine, one thread each; the result equals --jobs 1's sample "
        "for sample",
        "poison": "processes the seeds are split over (default: 1 for the linear student, whose "
        "runs are batched in one program; one per free core for dss and s4)",
        "report": "processes drawing the figures, one core each; the figures are the same for "
        "any number (default: every core, here %(default)s)",
    },
    "force": {
        "file": "replace an existing output file that ssmprobe did not write (--out, or a file "
        "of that name in the --out folder); results never replace a PyTorch checkpoint",
        "checkpoint": "replace a file at --out that ssmprobe wrote, a checkpoint included "
        "(without it an existing --out is refused)",
        "train": "start the run NAME over: its checkpoints, metrics and caches are deleted",
    },
}


def _attack_help(variant: str | None) -> str:
    kinds = attack_help().split("; comma-separated")[0]  # the registry's kinds
    return f"{'the attacks, comma-separated' if variant == 'several' else 'the attack'}: {kinds}"


def help_text(name: str, variant: str | None = None) -> str:
    """The help of the shared option `name`, in the meaning `variant` where it has several."""
    if name == "attack":
        return _attack_help(variant)
    text = HELP[name]
    if isinstance(text, str):
        if variant is not None:
            raise KeyError(f"--{name} has one help text, not a variant {variant!r}")
        return text
    if variant not in text:
        raise KeyError(f"--{name} needs one of the variants {sorted(text)}, got {variant!r}")
    return text[variant]


def help_texts(name: str) -> set[str]:
    """Every help text the shared option `name` may have (tests check commands use these)."""
    if name == "attack":
        return {_attack_help("several"), _attack_help("one")}
    text = HELP[name]
    return {text} if isinstance(text, str) else set(text.values())


def add(
    p: Parser | argparse._ArgumentGroup, name: str, variant: str | None = None, **kwargs: Any
) -> None:
    """`--name` with its help text (`HELP`), in the meaning `variant` where it has several."""
    flag = "--" + name.replace("_", "-")
    if name in ("quiet", "force", "pdf"):
        kwargs.setdefault("action", "store_true")
    if name in ("n", "batch_size", "jobs"):
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
    p.add_argument(flag, help=help_text(name, variant), **kwargs)


def formats(args: argparse.Namespace) -> tuple[str, ...]:
    """The figure files `--pdf` asks for: PNG, and a PDF beside it with --pdf."""
    return (".png", ".pdf") if args.pdf else (".png",)


FORMS = {"plain": "none", "relative": "relative"}  # --form -> the results' `norm` column


def add_form(p: Parser, variant: str) -> None:
    """--form plain|relative (`FORMS`), and --norm none|relative, its name until 0.2."""

    def parse(text: str) -> str:
        if text not in (*FORMS, "none"):
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(map(repr, FORMS))})"
            )
        return text

    class Form(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
            if value == "none":  # --norm's value for the plain form
                if option == "--form":
                    warn_deprecated("--form none", "--form plain")
                value = "plain"
            setattr(namespace, self.dest, value)

    parse.__name__ = "form"
    p.add_argument(
        "--form",
        type=parse,
        action=Form,
        default="plain",
        metavar="{plain,relative}",
        help=help_text("form", variant),
    )
    deprecated(p, "--norm", "--form")


def warn_deprecated(old: str, new: str) -> None:
    """One line on stderr: `old` still works, for one release."""
    print(
        f"ssmprobe: warning: {old} is deprecated; use {new} (the old name goes in the next "
        "release)",
        file=sys.stderr,
    )


def deprecated(p: argparse.ArgumentParser, old: str, new: str) -> None:
    """`old`, the name of `new` until now: hidden from --help, it still works as `new` does
    (its type, choices and destination) for one release, and says so (`warn_deprecated`)."""
    target = next(a for a in p._actions if new in a.option_strings)

    class Deprecated(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
            warn_deprecated(old, new)
            target(parser, namespace, values, old)

    p.add_argument(
        old,
        action=Deprecated,
        dest=target.dest,
        nargs=target.nargs,
        type=target.type,
        choices=target.choices,
        metavar=target.metavar,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


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
        add(g, "model", "analysed")
    add(g, "dataset", "reference")
    add(g, "ads", "reference")


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
