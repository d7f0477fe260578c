"""`probe.positions`: late / early discrepancy along the sequence, by hand and by property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssmprobe.probe.positions import growth, late_over_early, through_depth

curves = st.lists(st.floats(0.01, 1e3), min_size=2, max_size=200)


def test_the_last_tenth_over_the_first_by_hand() -> None:
    ramp = [float(k) for k in range(1, 21)]  # tenths: (1, 2) and (19, 20)
    assert late_over_early(ramp) == pytest.approx(19.5 / 1.5)
    assert late_over_early([2.0, 8.0]) == 4.0  # one position each
    assert late_over_early([0.0, 1.0]) == math.inf and math.isnan(late_over_early([0.0, 0.0]))


@given(curves, st.floats(0.01, 100))
def test_it_is_scale_free_and_one_on_a_flat_curve(curve: list[float], scale: float) -> None:
    assert late_over_early([c * scale for c in curve]) == pytest.approx(late_over_early(curve))
    assert late_over_early([curve[0]] * len(curve)) == pytest.approx(1.0)


@given(curves)
def test_reversing_the_curve_inverts_it(curve: list[float]) -> None:
    assert late_over_early(curve[::-1]) == pytest.approx(1 / late_over_early(curve))


def test_growth_per_component_and_what_it_adds() -> None:
    steps = [
        {"component": "layers.0.ssm", "kind": "ssm", "split": "test",
         "before": [1.0] * 10, "after": [1.0] * 9 + [5.0]},
        {"component": "layers.0.norm", "kind": "norm", "split": "test",
         "before": [1.0] * 10, "after": [1.0] * 10},
    ]  # fmt: skip
    [g] = growth(steps)
    assert (g.component, g.before, g.after, g.added) == ("layers.0.ssm", 1.0, 5.0, 5.0)
    assert len(growth(steps, kind=None)) == 2


@pytest.mark.parametrize("bad", [[1.0], [[1.0, 2.0]]])
def test_a_curve_too_short_or_not_flat_is_refused(bad: list) -> None:
    with pytest.raises(ValueError, match="at least 2 positions"):
        late_over_early(bad)


def test_through_depth_reads_the_first_input_last_output_and_each_ssm() -> None:
    flat, late = [1.0] * 10, [1.0] * 9 + [5.0]
    def curve(component: str, split: str, before: list, after: list) -> dict:
        kind = component.rsplit(".", 1)[1]
        return {"component": component, "kind": kind, "split": split, "before": before,
                "after": after}  # fmt: skip

    steps = [
        curve("layers.0.ssm", "test", flat, flat),
        curve("layers.0.norm", "test", flat, [2.0] + [1.0] * 9),
        curve("layers.1.ssm", "test", flat, late),
        curve("layers.1.ssm", "train", late, flat),
    ]
    depth = through_depth(steps)
    assert (depth.first_input, depth.last_output) == (1.0, 5.0)
    assert (depth.least_added, depth.most_added) == (1.0, 5.0)
    with pytest.raises(ValueError, match="no per-position curves"):
        through_depth(steps, split="val")
