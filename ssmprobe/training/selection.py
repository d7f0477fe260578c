"""Which epoch is "best": the paper's rule, applied only among epochs that have learned.

The paper keeps the checkpoint of highest test PGD-10 accuracy. Taken literally, that rule
prefers an untrained epoch: a model that predicts one class scores about 1/classes under any
attack, more than a trained standard model's near-zero PGD accuracy. So the rule applies among
epochs whose test clean accuracy is at least `LEARNED_FACTOR` times chance; only when no epoch
has learned does it fall back to all epochs, and the rule that chose is reported with the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LEARNED_FACTOR = 3.0


@dataclass(frozen=True)
class BestChoice:
    """The chosen epoch and the rule that chose it: "learned" (the best among epochs that have
    learned) or "all" (no epoch has learned: the best over all epochs)."""

    epoch: int
    rule: str


def learned(clean_acc: float, n_classes: int) -> bool:
    """Whether a test clean accuracy is far enough above chance to count as a trained model."""
    return clean_acc >= LEARNED_FACTOR / n_classes


def best_epoch(history: Sequence[Mapping[str, Any]], n_classes: int) -> BestChoice | None:
    """The best epoch of per-epoch metrics rows (`epoch`, `test_clean_acc`, `test_pgd_acc`);
    the earliest on a tie, None for an empty history."""
    if not history:
        return None
    pool = [r for r in history if learned(r["test_clean_acc"], n_classes)]
    rule = "learned" if pool else "all"
    top = max(pool or history, key=lambda r: r["test_pgd_acc"])  # max keeps the first maximum
    return BestChoice(int(top["epoch"]), rule)
