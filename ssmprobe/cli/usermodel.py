"""Your own model on the command line: `--model pkg.module:factory` or `path/file.py:factory`
(plus `--weights state_dict.pt`), `--components spec.toml` and `--data file.pt|file.npz|
pkg.module:loader`, shared by eval, discrepancy and inspect. Loading a factory or a loader runs
that code, as any import does.

The spec file holds what `ssmprobe.wrap` takes as keywords, and the components as a table:

    input = "positional"        # or "kw:inputs_embeds", "embedding:backbone.embeddings"
    output = "logits"           # a tuple index, an attribute or key; omit for a plain tensor
    reduce = "last"             # per-position logits -> (batch, classes)
    eps = 0.1                   # the attack budget in [0, 1] of the input range
    [components]
    ssm = "backbone.layers.*.mixer"
    norm = ["backbone.layers.*.norm"]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ssmprobe.cli import options as opt

HELP = {
    "weights": "a state dict for your model (read with weights_only=True)",
    "components": "TOML spec of your model's components (kind = pattern(s)) and its input, "
    "output, layout, readers and eps (docs: Your own model)",
    "data": "your data: a .pt (dict of tensors x, y) or .npz (arrays x, y) file, or "
    "pkg.module:loader returning (x, y), a Dataset or a DataLoader",
}


def add(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    with_model: bool = False,
    required: bool = True,
) -> None:
    """--weights, --components, --data (and --model where the command has no --model yet)."""
    if with_model:
        opt.add(p, "model", "own", required=required)
    for name in ("weights", "components", "data"):
        p.add_argument(f"--{name}", help=HELP[name])


def given(args: argparse.Namespace) -> bool:
    """Whether the command line names a user's model (a --model with a colon)."""
    return ":" in (getattr(args, "model", None) or "")


def _import_object(spec: str, what: str) -> Any:
    """The object `name` of `module:name` or `path/file.py:name`."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ValueError(f"{what} {spec!r}: write pkg.module:name or path/file.py:name")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ValueError(f"{what} {spec!r}: no such file {path}")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
            sys.modules.setdefault(path.stem, module)
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(target)
    except ValueError:
        raise
    except Exception as err:  # the user's code: any exception is theirs, named in one line
        raise ValueError(f"{what} {spec!r}: importing {target} failed: {err!r}") from None
    if not hasattr(module, name):
        raise ValueError(f"{what} {spec!r}: {target} has no {name!r}")
    return getattr(module, name)


def read_spec(path: str | Path) -> dict[str, Any]:
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--components {path}: no such file")
    try:
        spec = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"--components {path} is not valid TOML ({err})") from None
    if not isinstance(spec.get("components"), dict) or not spec["components"]:
        raise ValueError(f"--components {path} has no [components] table (kind = pattern)")
    if "input_range" in spec:
        spec["input_range"] = tuple(spec["input_range"])
    return spec


def load(args: argparse.Namespace) -> Any:
    """The wrapped user model the command line describes."""
    import torch

    from ssmprobe.interop.wrap import wrap

    if args.components is None:
        raise ValueError("--model pkg.module:factory needs --components spec.toml")
    spec = read_spec(args.components)
    factory = _import_object(args.model, "--model")
    try:
        model = factory()
    except Exception as err:  # the user's factory
        raise ValueError(f"--model {args.model}: the factory raised {err!r}") from None
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"--model {args.model} returned a {type(model).__name__}, not a module")
    if args.weights is not None:
        try:
            state = torch.load(args.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError:
            raise ValueError(f"--weights {args.weights}: no such file") from None
        except (RuntimeError, KeyError, TypeError, EOFError) as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"--weights {args.weights} does not fit the model: {first}") from None
    components = spec.pop("components")
    return wrap(model.eval(), components, **spec)


def load_data(args: argparse.Namespace) -> Any:
    """--data as what `ssmprobe.wrap`'s analyses take (a path, or what a loader returns)."""
    if args.data is None:
        raise ValueError("your own model needs --data (a .pt / .npz file or pkg.module:loader)")
    if Path(args.data).suffix in (".pt", ".npz"):
        return args.data
    loader = _import_object(args.data, "--data")
    try:
        return loader()
    except Exception as err:  # the user's loader
        raise ValueError(f"--data {args.data}: the loader raised {err!r}") from None


def target(args: argparse.Namespace, ckpt: Any) -> tuple[Any, Any]:
    """(what to analyse, its data): the user's wrapped model and --data, or `ckpt` and None."""
    if given(args):
        return load(args), load_data(args)
    if not ckpt:
        raise ValueError("name a checkpoint (--ckpt) or your own model (--model pkg:factory)")
    return ckpt, None


def inspect(args: argparse.Namespace) -> int:
    from ssmprobe.interop.userdata import user_batches
    from ssmprobe.probe.recorder import check_components

    model = load(args)
    print(model.describe())
    if args.data is not None:
        x, _ = next(iter(user_batches(model, load_data(args), batch_size=4, n=4)))
        check_components(model, x)
        print(f"checked on {len(x)} samples of --data: every component ran once, layouts read")
    return 0


def add_inspect(sub: opt.Subparsers) -> None:
    p = opt.command(
        sub,
        "inspect",
        "your own model: every component its spec matches, and the SSM parameters found",
        "Builds your model from --model, applies --components and prints every match of every "
        "pattern with its kind, class, hooked sites, layout and SSM reader. With --data, one "
        "recorded forward on 4 samples checks that every component runs once and that its "
        "features have a (B, L, d) or (B, d, L) layout. Loading your factory runs its code.",
    )
    add(p, with_model=True)
    p.set_defaults(func=inspect)
