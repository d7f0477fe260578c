"""The paper's Tables 1-2 as transcribed in `report.paper`: spot checks against the printed
numbers, and every row's Diff against Best - Last."""

from __future__ import annotations

import pytest

from ssmprobe.report.paper import PAPER_ROWS, paper_row, paper_rows
from ssmprobe.report.runs import ACCURACY_COLUMNS


@pytest.mark.parametrize(
    ("key", "column", "printed"),
    [
        (("mnist", "s4", "pgd"), "clean_best", 53.26),
        (("mnist", "s4", "pgd"), "pgd10_best", 99.92),
        (("mnist", "s4", "pgd"), "aa_best", 0.26),
        (("mnist", "dss", "pgd"), "clean_best", 59.87),
        (("mnist", "dss", "pgd"), "pgd10_best", 99.95),
        (("mnist", "dss", "pgd"), "aa_best", 0.62),
        (("mnist", "s5", "pgd"), "clean_last", 20.20),
        (("mnist", "s5", "pgd"), "pgd10_last", 99.86),
        (("mnist", "mamba", "pgd"), "clean_best", 37.18),
        (("mnist", "mamba", "pgd"), "pgd10_best", 99.87),
        (("mnist", "mamba", "pgd"), "aa_best", 0.53),
        (("cifar10", "mega", "trades"), "pgd10_last", 30.68),
        (("mnist", "dss", "trades", "tanh"), "aa_best", 90.34),
        (("cifar10", "s4", "pgd", "relu"), "clean_diff", 0.13),
    ],
)
def test_printed_values(key: tuple[str, ...], column: str, printed: float) -> None:
    row = paper_row(*key)
    assert row is not None
    assert getattr(row, column) == printed


def test_every_diff_is_best_minus_last_to_the_printed_rounding() -> None:
    # The transcription checks out: no row of either table disagrees with itself.
    wrong = [
        (row.table, row.dataset, row.model, row.method, row.ads, attack)
        for row in PAPER_ROWS
        for attack in ("clean", "pgd10", "aa")
        if abs(
            getattr(row, f"{attack}_best")
            - getattr(row, f"{attack}_last")
            - getattr(row, f"{attack}_diff")
        )
        > 0.005 + 1e-9
    ]
    assert wrong == []


def test_shape_and_lookup() -> None:
    assert len(paper_rows(table=1)) == 28  # 2 datasets x (5 models x 3 methods - 1 Mega row)
    assert len(paper_rows(table=2)) == 24  # 2 datasets x 2 models x 2 methods x 3 AdS
    assert len(paper_rows(table=1, dataset="mnist")) == 14
    assert {r.ads for r in paper_rows(table=1)} == {"none"}
    assert paper_row("mnist", "mega", "pgd") is None  # not in the printed text
    assert "PGD-AT" in paper_row("cifar10", "mega", "trades").note
    assert paper_row("mnist", "s4", "st").accuracies() == dict(
        zip(ACCURACY_COLUMNS, (99.16, 99.15, 0.01, 4.57, 0.72, 3.85, 0.07, 0.00, 0.07), strict=True)
    )
