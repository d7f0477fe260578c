"""How far a component kind's rate can be trusted: an interval over samples, a range over
attack seeds, and the layers that disagree in sign.

A kind's rate is the mean over its layers of each layer's rate, 100·(mean_n after − mean_n
before) / mean_n before (`discrepancy.summarise`). Over samples it gets a percentile bootstrap
interval: the n samples are drawn with replacement `draws` times (the same draw for every
component, as the samples are shared) and the kind's rate recomputed on each draw. Over attack
seeds it gets the rates of the same samples attacked with other random starts. A rate whose
interval contains 0, or whose seeds give both signs, is *not resolved*: neither "raises" nor
"lowers" is read from it. NSR's rate is the amplification's: amplification − 1 = rate / 100,
so an amplification interval containing 1 is not resolved either.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

LEVEL = 0.95
DRAWS = 1000


def kind_rates(
    samples: Mapping[tuple[str, str, str, str], Tensor],
    kinds: Mapping[str, str],
    index: Tensor | None = None,
) -> dict[tuple[str, str, str], float]:
    """(kind, metric, norm) -> the mean over the kind's components of their rates (%), from
    per-sample values `samples[(component, side, metric, norm)]` (n,), on the samples `index`
    (all when None). `kinds`: component -> kind."""
    per_kind: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (name, side, metric, norm), values in samples.items():
        if side != "before":
            continue
        before = values if index is None else values[index]
        after = samples[name, "after", metric, norm]
        after = after if index is None else after[index]
        mean_before = before.mean().item()
        rate = 100 * (after.mean().item() - mean_before) / mean_before if mean_before else math.nan
        per_kind[kinds[name], metric, norm].append(rate)
    return {key: sum(rates) / len(rates) for key, rates in per_kind.items()}


def bootstrap(
    samples: Mapping[tuple[str, str, str, str], Tensor],
    kinds: Mapping[str, str],
    draws: int = DRAWS,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(kind, metric, norm) -> the percentile interval at `level` of the kind's rate over
    `draws` resamples of the samples."""
    n = len(next(iter(samples.values())))
    generator = torch.Generator().manual_seed(seed)
    drawn: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for _ in range(draws):
        index = torch.randint(n, (n,), generator=generator)
        for key, rate in kind_rates(samples, kinds, index).items():
            drawn[key].append(rate)
    tail = (1 - level) / 2
    return {key: _quantiles(rates, tail) for key, rates in drawn.items()}


def _quantiles(values: list[float], tail: float) -> tuple[float, float]:
    finite = torch.tensor([v for v in values if math.isfinite(v)], dtype=torch.float64)
    if len(finite) < len(values) or not len(finite):
        return math.nan, math.nan  # a draw without a discrepancy before: no interval
    low, high = torch.quantile(finite, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return low.item(), high.item()


def resolved(low: float, high: float, seed_rates: Sequence[float]) -> bool:
    """Whether a direction can be read: the interval excludes 0 and every seed agrees on it."""
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high:
        return False
    return all(math.isfinite(r) and (r > 0) == (low > 0) for r in seed_rates)


def layer_signs(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str, str], list]:
    """(kind, split, metric, norm) -> [(layer, rate), ...] where the kind's layers disagree in
    sign (one raises, another lowers): the per-layer values a per-kind mean hides."""
    by: dict[tuple[str, str, str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        by[r["kind"], r["split"], r["metric"], r["norm"]].append((int(r["layer"]), r["rate"]))
    return {
        key: layers
        for key, layers in by.items()
        if any(rate > 0 for _, rate in layers) and any(rate < 0 for _, rate in layers)
    }
