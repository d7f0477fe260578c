"""Any PyTorch sequence model, analysed as it is: components named by pattern (`wrap`).

    probe = wrap(model, components={"ssm": "layers.*.mixer", "norm": "layers.*.norm"})
    print(probe.describe())          # every match: kind, class, hooked sites, SSM reader
    probe(x)                         # (B, L, C) in [0, 1] -> logits (B, classes)

The wrapped model is an `nn.Module` whose forward maps the attack's space, sequences
(B, L, C) in [0, 1], to logits (B, classes), so every attack, evaluation and probe of ssmprobe
takes it as it takes a bundled model; nothing of the user's model is changed, subclassed or
copied (its parameters are the wrapper's, by reference).

- **components**: kind -> pattern(s) over the model's `named_modules()` (`models.components`,
  the mechanism our own families' presets use too): a glob (`*` one name, `**` any number of
  dotted names), a regex (`re.compile(...)` or a string starting `re:`), a callable
  `(name, module) -> bool`, a list of them, or an entry/exit pair. Every matched module is one
  component, input to output; a pattern that matches nothing is an error listing the closest
  names.
- **input**: `"positional"` (the model's first positional tensor, default), `"kw:NAME"` (a
  keyword argument, e.g. `kw:inputs_embeds`), or `"embedding:PATTERN"` (a token model: the data
  are token ids, the attack runs on the output of the embedding module, and every result says
  so). `input_range` (low, high) is the declared range of that tensor (default [0, 1]; for an
  embedding, the range of the embedding table): the wrapper maps [0, 1] onto it, so an ε is a
  fraction of that range.
- **output**: None (the model returns the logits), an int (a tuple's element), a string (an
  attribute or key, e.g. `"logits"` of a `ModelOutput`) or a callable; `reduce` ("last" or
  "mean") turns per-position logits (B, L, classes) into (B, classes).
- **layout**: `"auto"` (from the batch's sequence length), `"bld"` or `"bdl"`, for all
  components or per kind; `index`: which element of a tuple input/output holds the features.
- **readers**: the SSM reader of the `ssm` components (`interop.readers`: mamba1, mamba2,
  s4d, s5 or a callable); default: detected from the parameter names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ssmprobe.models.base import Component
from ssmprobe.models.components import LAYOUTS, Patterns, SpecError, build_components, match_modules
from ssmprobe.vocab import COMPONENT_KINDS

REDUCTIONS = ("last", "mean")
WrapError = SpecError  # every misfit of a spec and a model: a ValueError naming it


@dataclass(frozen=True)
class InputSpec:
    """Where the attack's input enters the model (module docstring, **input**)."""

    kind: str = "positional"  # positional, kw, embedding
    name: str | None = None  # the keyword, or the embedding module's pattern
    low: float | None = 0.0
    high: float | None = 1.0

    @classmethod
    def parse(cls, text: str, input_range: tuple[float, float] | None) -> InputSpec:
        low, high = input_range if input_range is not None else (None, None)
        if text == "positional":
            return cls(
                "positional", None, 0.0 if low is None else low, 1.0 if high is None else high
            )
        kind, _, name = text.partition(":")
        if kind not in ("kw", "embedding") or not name:
            raise WrapError(
                f"input must be 'positional', 'kw:NAME' or 'embedding:PATTERN', got {text!r}"
            )
        if kind == "kw":
            return cls("kw", name, 0.0 if low is None else low, 1.0 if high is None else high)
        return cls("embedding", name, low, high)


def _select_output(out: Any, select: int | str | Callable[[Any], Tensor] | None) -> Any:
    if select is None:
        return out
    if callable(select):
        return select(out)
    if isinstance(select, int):
        if not isinstance(out, tuple | list):
            raise WrapError(f"output={select} picks a tuple element; the model returned a "
                            f"{type(out).__name__}")  # fmt: skip
        return out[select]
    if isinstance(out, Mapping) and select in out:
        return out[select]
    if hasattr(out, select):
        return getattr(out, select)
    raise WrapError(f"the model's {type(out).__name__} output has no attribute or key {select!r}")


class WrappedModel(nn.Module):
    """A user's model seen through a component spec (`wrap`); see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        components: Mapping[str, Patterns],
        *,
        input: str = "positional",
        input_range: tuple[float, float] | None = None,
        output: int | str | Callable[[Any], Tensor] | None = None,
        reduce: str | None = None,
        layout: str | Mapping[str, str] = "auto",
        index: int = 0,
        readers: str | Callable[[nn.Module], Any] | Mapping[str, Any] | None = None,
        eps: float | None = None,
        alpha: float | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"wrap takes an nn.Module, got {type(model).__name__}")
        if not components:
            raise WrapError("components is empty: name at least one kind and its pattern(s)")
        unknown = sorted(set(components) - set(COMPONENT_KINDS))
        if unknown:
            raise WrapError(f"unknown component kinds {unknown}; known: {COMPONENT_KINDS}")
        if reduce is not None and reduce not in REDUCTIONS:
            raise WrapError(f"reduce must be None or one of {REDUCTIONS}, got {reduce!r}")
        layouts = {k: layout for k in components} if isinstance(layout, str) else dict(layout)
        bad = {k: v for k, v in layouts.items() if v not in LAYOUTS}
        if bad or set(layouts) - set(components):
            raise WrapError(f"layout must be one of {LAYOUTS} for a kind of the spec, got {layout}")
        self.model = model
        self.input = InputSpec.parse(input, input_range)
        self.output_select, self.reduce = output, reduce
        self.name = name or type(model).__name__
        self._embedding: nn.Module | None = None
        if self.input.kind == "embedding":
            (_, embedding, _), *more = match_modules(model, self.input.name)
            # Held outside `_modules`: it is the model's, not a second copy in state_dict.
            self.__dict__["_embedding"] = embedding
            if more:
                raise WrapError(
                    f"input pattern {self.input.name!r} matches {len(more) + 1} modules"
                )
            if self.input.low is None:  # the range of the embedding table
                weight = self._embedding.weight.detach()
                self.input = InputSpec("embedding", self.input.name, weight.min().item(),
                                       weight.max().item())  # fmt: skip
        if not self.input.low < self.input.high:
            raise WrapError(f"input_range needs low < high, got {input_range}")
        self._components = build_components(model, list(components.items()), layouts, index)
        self._readers = readers
        self.meta: dict[str, Any] = {
            "dataset": "custom",
            "model": self.name,
            "train": {} if eps is None else {"eps": eps, "alpha": alpha},
            "input": self.describe_input(),
        }

    # ------------------------------------------------------------------------- the forward

    def describe_input(self) -> str:
        lo, hi = self.input.low, self.input.high
        where = {
            "positional": "the first positional input",
            "kw": f"keyword {self.input.name}",
            "embedding": f"the output of embedding module {self.input.name} (embedding space)",
        }[self.input.kind]
        return f"{where}, range [{lo:g}, {hi:g}] mapped to [0, 1]"

    def to_model_range(self, x: Tensor) -> Tensor:
        return self.input.low + (self.input.high - self.input.low) * x

    def prepare(self, x: Tensor) -> Tensor:
        """The user's data as the attack's input in [0, 1]: inputs in the declared range are
        rescaled (out of it: an error), token ids of an embedding input are embedded first."""
        if self.input.kind == "embedding":
            if x.dtype not in (torch.int64, torch.int32):
                raise WrapError(f"an embedding input takes token ids (integers), got {x.dtype}")
            with torch.no_grad():
                x = self._embedding(x)
        elif not torch.is_floating_point(x):
            x = x.float()
        low, high = self.input.low, self.input.high
        if x.numel() and (x.min() < low or x.max() > high):
            raise WrapError(
                f"data outside the declared input range [{low:g}, {high:g}]: found "
                f"[{x.min().item():g}, {x.max().item():g}]; declare input_range"
            )
        return (x - low) / (high - low)

    @contextmanager
    def _embedded(self, e: Tensor) -> Iterator[Tensor]:
        """Token placeholders whose embedding module returns `e` instead (hook removed after)."""
        handle = self._embedding.register_forward_hook(lambda _m, _a, _o: e)
        try:
            yield torch.zeros(e.shape[:2], dtype=torch.long, device=e.device)
        finally:
            handle.remove()

    def forward(self, x: Tensor) -> Tensor:
        inputs = self.to_model_range(x)
        if self.input.kind == "embedding":
            with self._embedded(inputs) as ids:
                out = self.model(ids)
        elif self.input.kind == "kw":
            out = self.model(**{self.input.name: inputs})
        else:
            out = self.model(inputs)
        logits = _select_output(out, self.output_select)
        if not isinstance(logits, Tensor):
            raise WrapError(
                f"the model returned a {type(logits).__name__}: declare output= (a tuple "
                "index, an attribute such as 'logits', or a callable)"
            )
        if logits.dim() == 3 and self.reduce is not None:
            logits = logits[:, -1] if self.reduce == "last" else logits.mean(dim=1)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            hint = " (per-position logits: declare reduce='last' or 'mean')" * (logits.dim() == 3)
            raise WrapError(
                f"model output must be (batch, classes) logits, got {tuple(logits.shape)}{hint}"
            )
        return logits

    # ------------------------------------------------------------------ what the probe sees

    def components(self) -> list[Component]:
        return list(self._components)

    def _reader_for(self, name: str) -> Any:
        """The reader declared for component `name` (None: detect it)."""
        if isinstance(self._readers, Mapping):
            return self._readers.get(name)
        return self._readers

    def ssm_layers(self) -> dict[str, Any]:
        """The `ssm` components whose parameters a reader rebuilds: name -> read layer."""
        from ssmprobe.interop.readers import read_ssm

        layers = {}
        for c in self._components:
            if c.kind != "ssm":
                continue
            reader = self._reader_for(c.name)
            try:
                layers[c.name] = read_ssm(c.entry.module, reader)
            except ValueError:
                if reader is not None:
                    raise
        return layers

    def describe(self) -> str:
        """Every match of every pattern: kind, class, hooked sites, and the SSM reader found."""
        from ssmprobe.interop.readers import detect_reader

        lines = [f"{self.name}: input {self.describe_input()}"]
        for c in self._components:
            module = c.entry.module
            sites = f"input[{c.entry.index}] -> output[{c.exit.index}], layout {c.entry.layout}"
            line = f"  {c.kind:<9} {c.name:<40} {type(module).__name__:<22} {sites}"
            if c.kind == "ssm":
                reader = self._reader_for(c.name)
                found = reader if isinstance(reader, str) else (
                    "callable" if reader is not None else detect_reader(module))  # fmt: skip
                params = ", ".join(n for n, _ in module.named_parameters(recurse=False)) or "-"
                line += f"\n  {'':<9} reader: {found or 'none (no bounds)'}; parameters: {params}"
            lines.append(line)
        return "\n".join(lines)


def wrap(model: nn.Module, components: Mapping[str, Patterns], **spec: Any) -> WrappedModel:
    """`model` seen through `components` (kind -> patterns) and the rest of the spec (module
    docstring); already-wrapped models are returned as they are."""
    if isinstance(model, WrappedModel):
        return model
    return WrappedModel(model, components, **spec)
