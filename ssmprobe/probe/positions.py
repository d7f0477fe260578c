"""Does the discrepancy grow along the sequence? One number per curve of the per-position probe.

`discrepancy` records, per component, the squared error ||f'_k - f_k||² between adversarial
and clean features at each position k, before and after the component (`steps` in its JSON).
A causal SSM carries what the attack changed at step j into every later step (y_k sums
h_i·u_{k-i} over i ≤ k, eq. 2), so its output's error may pile up along k even where the
input's does not. `growth` compares the mean of the last tenth of positions with the first
tenth's, after and before the component: the ratio after / ratio before says how much the
component itself makes the late positions worse than the early ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

TENTH = 0.1


@dataclass(frozen=True)
class Growth:
    """Late / early mean squared error of one curve before and after a component."""

    component: str
    split: str
    before: float  # mean of the last tenth of positions / mean of the first tenth, before
    after: float  # the same after the component

    @property
    def added(self) -> float:
        """How much more the component's output grows along the sequence than its input."""
        return self.after / self.before if self.before > 0 else float("inf")


def late_over_early(curve: Sequence[float], share: float = TENTH) -> float:
    """Mean of the last `share` of the positions over the mean of the first `share` (at least
    one position each); inf where the early mean is 0 and the late one is not, nan for both 0."""
    values = np.asarray(curve, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"a curve of at least 2 positions is needed, got shape {values.shape}")
    if not 0 < share <= 0.5:
        raise ValueError(f"share must be in (0, 0.5], got {share}")
    k = max(1, int(len(values) * share))
    early, late = values[:k].mean(), values[-k:].mean()
    if early == 0:
        return float("nan") if late == 0 else float("inf")
    return float(late / early)


def growth(steps: Sequence[Mapping], kind: str | None = "ssm") -> list[Growth]:
    """`Growth` of each (component, split) in a discrepancy result's `steps`, those of `kind`
    only (None: every component)."""
    ratio = late_over_early
    return [
        Growth(c["component"], c["split"], ratio(c["before"]), ratio(c["after"]))
        for c in steps
        if kind is None or c["kind"] == kind
    ]


@dataclass(frozen=True)
class Depth:
    """How one probed checkpoint's late / early ratio runs through the network (test inputs)."""

    first_input: float  # before the first component
    last_output: float  # after the last component
    least_added: float  # the least and most any SSM layer multiplies the ratio by
    most_added: float


def through_depth(steps: Sequence[Mapping], split: str = "test") -> Depth:
    """`Depth` of a discrepancy result's `steps` on `split`, components in network order."""
    curves = [g for g in growth(steps, kind=None) if g.split == split]
    added = [g.added for g in growth(steps) if g.split == split]
    if not curves or not added:
        raise ValueError(f"no per-position curves of an SSM on the {split!r} split")
    return Depth(curves[0].before, curves[-1].after, min(added), max(added))
