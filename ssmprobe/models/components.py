"""Components by pattern: the one way a model's recordable places are named, for our families
(their presets) and for a user's model (`interop.wrap`) alike.

A spec is a list of (kind, pattern) entries, in the order the components run inside a layer.
A pattern selects modules over `named_modules()`:

- a glob: `*` one dotted name, `**` any number of them; the first `*` that matches a number
  is the component's layer (`layers.*.mixer` -> layer 3 for `layers.3.mixer`);
- a regex (`re.compile(...)` or a string starting `re:`), whose group `layer`, if any, is the
  layer;
- a callable `(name, module) -> bool`;
- a list of them;
- `{"entry": P, "exit": Q, "name": "layers.{layer}.ssm"}`: a component from the place P
  selects to the place Q selects (paired in order), e.g. a fused block's SSM that ends at the
  input of its output projection. A place is a pattern with `@input` or `@output` (default:
  entry at the input, exit at the output); `{"module": P, "name": ...}` renames the modules P
  selects.

A trailing `?` makes a glob optional (an AdS that a model may not have); otherwise a pattern
that matches nothing is a `SpecError` naming the closest module names. Components come out
ordered by layer, then by the spec's order; one without a layer number takes the order of its
match among its entry's. Its `part` is its name after the layer's number (`mixer`, `ffn_norm`),
or the whole name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from ssmprobe.models.base import Component, Site

Pattern = str | re.Pattern | Callable[[str, nn.Module], bool]
Patterns = Pattern | Sequence[Pattern] | Mapping[str, Any]
SpecEntries = Sequence[tuple[str, Patterns]]
LAYOUTS = ("auto", "bld", "bdl")


class SpecError(ValueError):
    """A spec that does not fit the model: the message names the pattern or the module."""


def _glob_regex(glob: str) -> re.Pattern:
    """`*` one dotted name (no dot, captured), `**` any number of them, the rest literal."""
    parts = re.split(r"(\*\*|\*)", glob)
    body = "".join({"**": r".*", "*": r"([^.]*)"}.get(p, re.escape(p)) for p in parts)
    return re.compile(body)


def _shown(pattern: Pattern) -> str:
    return pattern if isinstance(pattern, str) else str(getattr(pattern, "pattern", pattern))


def _layer_of(match: re.Match) -> int | None:
    if "layer" in match.re.groupindex:
        return int(match["layer"]) if (match["layer"] or "").isdigit() else None
    return next((int(g) for g in match.groups() if g is not None and g.isdigit()), None)


def match_modules(
    model: nn.Module, patterns: Pattern | Sequence[Pattern]
) -> list[tuple[str, nn.Module, int | None]]:
    """(name, module, layer) of every module one of `patterns` selects (the root excluded), in
    the model's order; a pattern matching nothing is a `SpecError` unless it ends with `?`."""
    named = [(n, m) for n, m in model.named_modules() if n]
    if isinstance(patterns, str | re.Pattern) or callable(patterns):
        patterns = [patterns]
    if not isinstance(patterns, Sequence) or not patterns:
        raise SpecError(f"a pattern must be a string, regex, callable or non-empty list, got "
                        f"{patterns!r}")  # fmt: skip
    found: dict[str, int | None] = {}
    for pattern in patterns:
        optional = isinstance(pattern, str) and pattern.endswith("?")
        hits: dict[str, int | None] = {}
        if callable(pattern) and not isinstance(pattern, re.Pattern):
            hits = {n: None for n, m in named if pattern(n, m)}
        else:
            text = pattern.rstrip("?") if isinstance(pattern, str) else pattern
            if isinstance(text, str) and text.startswith("re:"):
                text = re.compile(text[3:])
            regex = text if isinstance(text, re.Pattern) else _glob_regex(text)
            for n, _ in named:
                if match := regex.fullmatch(n):
                    hits[n] = _layer_of(match)
        if not hits and not optional:
            close = difflib.get_close_matches(_shown(pattern), [n for n, _ in named], 5, 0.3)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise SpecError(f"pattern {_shown(pattern)!r} matches no module of the model{hint}")
        found.update(hits)
    return [(n, m, found[n]) for n, m in named if n in found]


def _places(model: nn.Module, place: str) -> list[tuple[str, Site, int | None]]:
    pattern, _, side = place.partition("@")
    if side not in ("", "input", "output"):
        raise SpecError(f"{place!r}: a place ends with @input or @output")
    return [(n, Site(m, side or "input"), layer) for n, m, layer in match_modules(model, pattern)]


def _part(name: str, layer: int | None) -> str:
    if layer is None:
        return name
    _, sep, tail = name.partition(f".{layer}.")
    return tail if sep and tail else name


def build_components(
    model: nn.Module,
    entries: SpecEntries,
    layouts: Mapping[str, str] | None = None,
    index: int = 0,
) -> list[Component]:
    """The components `entries` select in `model` (module docstring), each site with its
    kind's layout (default `auto`) and tuple `index`."""
    layouts = layouts or {}
    found: list[tuple[int, int, int, Component]] = []
    for position, (kind, patterns) in enumerate(entries):
        layout = layouts.get(kind, "auto")
        if isinstance(patterns, Mapping) and "module" in patterns:  # one module, renamed
            patterns = {**patterns, "entry": patterns["module"], "exit": patterns["module"]}
        if isinstance(patterns, Mapping):
            entry = _places(model, patterns["entry"])
            exit_place = patterns["exit"]
            exits = _places(model, exit_place if "@" in exit_place else exit_place + "@output")
            if not entry and not exits:  # an optional pair, absent
                continue
            if len(entry) != len(exits):
                raise SpecError(f"{kind}: {len(entry)} entries for {len(exits)} exits")
            pairs = [
                (n, a, b, layer) for (n, a, layer), (_, b, _) in zip(entry, exits, strict=True)
            ]
            template = patterns.get("name")
        else:
            pairs = [
                (n, Site(m, "input"), Site(m, "output"), layer)
                for n, m, layer in match_modules(model, patterns)
            ]
            template = None
        for order, (name, first, last, layer) in enumerate(pairs):
            layer = order if layer is None else layer
            name = template.format(layer=layer) if template else name
            sites = (Site(s.module, s.side, index, layout) for s in (first, last))  # type: ignore[arg-type]
            component = Component(name, kind, *sites, layer=layer, part=_part(name, layer))
            found.append((layer, position, order, component))
    return [c for *_, c in sorted(found, key=lambda t: t[:3])]
