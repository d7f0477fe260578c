"""One recorder for every model: the features going into and out of each named component.

Every model lists its components (`model.components()`: name, kind, entry `Site`, exit `Site`).
`record` hooks each distinct site once (a forward pre-hook for an input, a forward hook for an
output) and keeps what passes there only while `Recording.capture` runs a forward, so the
attack's own forward and backward passes inside the same `with` block are never recorded.
The hooks are removed when the block ends, also when it ends with an exception.

    with record(model) as rec:
        x_adv = run_attack(model, x, y, attack)
        clean, adv = rec.capture(x), rec.capture(x_adv)
    clean["layers.0.ssm"].entry  # (B, L, d) input of the first SSM on the clean batch
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ssmprobe.attacks import AttackConfig, run_attack
from ssmprobe.models.base import Component, Site


@dataclass(frozen=True)
class Features:
    """A component's input (`entry`) and output (`exit`) features on one batch, (B, L, d)."""

    entry: Tensor
    exit: Tensor


class Recording:
    """The armed-on-demand hooks of `record`; `capture` runs one recorded forward."""

    def __init__(self, model: nn.Module, components: Sequence[Component]) -> None:
        self.model = model
        self.components = list(components)
        # Sites compare by (module, side): a place two components share is hooked once.
        self._sites = list(dict.fromkeys(s for c in self.components for s in (c.entry, c.exit)))
        self._seen: dict[Site, Tensor] | None = None  # None: not capturing
        self._length: int | None = None  # the captured batch's sequence length

    def _store(self, site: Site, value: Any) -> None:
        if self._seen is None:
            return
        if site in self._seen:
            raise RuntimeError(
                f"{type(site.module).__name__} ran twice in one forward: its features are ambiguous"
            )
        self._seen[site] = site.features(value, self._length).detach()

    def hook(self, handles: list[torch.utils.hooks.RemovableHandle]) -> None:
        """Registers one hook per site, appending each handle as soon as it exists (so the
        caller can remove all of them even if a later registration fails). An input is the
        module's positional inputs, or its tensor keyword arguments when it has none."""
        for site in self._sites:
            if site.side == "input":
                handles.append(
                    site.module.register_forward_pre_hook(
                        lambda _m, args, kwargs, site=site: self._store(
                            site, args or [v for v in kwargs.values() if isinstance(v, Tensor)]
                        ),
                        with_kwargs=True,
                    )
                )
            else:
                handles.append(
                    site.module.register_forward_hook(
                        lambda _m, _args, out, site=site: self._store(site, out)
                    )
                )

    @torch.no_grad()
    def capture(self, x: Tensor) -> dict[str, Features]:
        """One forward of `x`; every component's features by name, in forward order."""
        self._seen = {}
        self._length = x.shape[1] if x.dim() >= 2 else None
        try:
            self.model(x)
            seen = self._seen
        finally:
            self._seen = None
        missing = [c.name for c in self.components if c.entry not in seen or c.exit not in seen]
        if missing:
            raise RuntimeError(f"components not reached by the forward: {', '.join(missing)}")
        return {c.name: Features(seen[c.entry], seen[c.exit]) for c in self.components}


@contextmanager
def record(model: nn.Module, components: Sequence[Component] | None = None) -> Iterator[Recording]:
    """Hooks `components` (default: all of `model.components()`) for the block's duration."""
    recording = Recording(model, model.components() if components is None else components)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        recording.hook(handles)
        yield recording
    finally:
        for handle in handles:
            handle.remove()


def check_components(model: nn.Module, x: Tensor) -> None:
    """One recorded forward of `x`: every component runs once and its features have a layout,
    else the recorder's error (`ssmprobe inspect` runs this on the first batch)."""
    with record(model) as recording:
        recording.capture(x)


def adversarial_features(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    attack: AttackConfig,
    components: Sequence[Component] | None = None,
    seed: int = 0,
) -> Iterator[tuple[dict[str, Features], dict[str, Features], int]]:
    """Per batch: attack it (hooks idle, one generator seeded with `seed` for the whole
    stream), then record the clean and the adversarial forward of `components` (default all);
    yields (clean features, adversarial features, batch size)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    with record(model, components) as recording:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            x_adv = run_attack(model, x, y, attack, generator=generator, seed=seed)
            yield recording.capture(x), recording.capture(x_adv), len(y)
