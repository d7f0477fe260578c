"""Best-epoch selection: the paper's rule among epochs that have learned; the ε warm-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_fixtures import write_run

from ssmprobe.report.runs import collect_runs, read_metrics
from ssmprobe.report.tables import write_tables
from ssmprobe.training.fit import TrainConfig
from ssmprobe.training.selection import LEARNED_FACTOR, BestChoice, best_epoch


def row(epoch: int, clean: float, pgd: float) -> dict:
    return {"epoch": epoch, "test_clean_acc": clean, "test_pgd_acc": pgd}


# A standard-training run as it looks on digits: epoch 1 predicts one class (10% clean, and the
# same 10% under attack), later epochs are trained but near 0% under PGD-10.
ST_RUN = [row(1, 0.103, 0.103), row(2, 0.61, 0.02), row(3, 0.85, 0.06), row(4, 0.93, 0.04)]


def test_a_near_chance_epoch_is_never_best_when_a_trained_one_exists() -> None:
    assert max(ST_RUN, key=lambda r: r["test_pgd_acc"])["epoch"] == 1  # the paper's rule alone
    assert best_epoch(ST_RUN, n_classes=10) == BestChoice(3, "learned")


def test_no_learned_epoch_falls_back_to_all_and_says_so() -> None:
    collapsed = [row(1, 0.10, 0.10), row(2, 0.12, 0.11), row(3, 0.10, 0.10)]
    assert best_epoch(collapsed, n_classes=10) == BestChoice(2, "all")
    assert best_epoch([], n_classes=10) is None


def test_threshold_is_three_times_chance_and_ties_keep_the_earliest() -> None:
    edge = [row(1, 0.29, 0.5), row(2, 0.30, 0.2), row(3, 0.9, 0.2)]
    assert best_epoch(edge, n_classes=10) == BestChoice(2, "learned")
    assert best_epoch([row(1, 0.3, 0.2), row(2, 0.3, 0.2)], n_classes=2) == BestChoice(1, "all")


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1), st.integers(2, 20))
def test_chosen_epoch_has_the_top_pgd_of_its_pool(accs, n_classes) -> None:
    history = [row(i + 1, c, p) for i, (c, p) in enumerate(accs)]
    choice = best_epoch(history, n_classes)
    learned = [r for r in history if r["test_clean_acc"] >= LEARNED_FACTOR / n_classes]
    assert choice.rule == ("learned" if learned else "all")
    pool = learned or history
    chosen = history[choice.epoch - 1]
    assert chosen in pool and chosen["test_pgd_acc"] == max(r["test_pgd_acc"] for r in pool)
    assert all(r["test_pgd_acc"] < chosen["test_pgd_acc"] for r in pool[: pool.index(chosen)])


def test_table_reports_the_rule_of_each_row(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    lines = "".join(json.dumps(r) + "\n" for r in ST_RUN)
    for name, method in (("s4_st", "st"), ("dss_pgd", "pgd")):
        run = write_run(
            root,
            name,
            model=name[:-3].rstrip("_"),
            method=method,
            best={"clean": 0.9, "pgd10": 0.05},
            last={"clean": 0.9, "pgd10": 0.05},
        )
        if method == "st":
            (run / "metrics.jsonl").write_text(lines)
        else:  # collapsed: every epoch at chance
            (run / "metrics.jsonl").write_text(
                "".join(json.dumps(row(e, 0.1, 0.1)) + "\n" for e in (1, 2))
            )
    df = collect_runs(root)
    by_run = df.set_index("run")
    assert (by_run.loc["s4_st", "best_epoch"], by_run.loc["s4_st", "best_rule"]) == (3, "learned")
    assert (by_run.loc["dss_pgd", "best_epoch"], by_run.loc["dss_pgd", "best_rule"]) == (1, "all")
    assert len(read_metrics(root / "s4_st")) == 4
    paths = write_tables(df, tmp_path / "out")
    md = paths["md"].read_text()
    assert "PGD-AT †" in md and "ST †" not in md and "3x chance" in md
    assert "Best rule" in paths["csv"].read_text().splitlines()[0]


def test_eps_warmup_ramps_linearly_then_holds() -> None:
    config = TrainConfig(method="pgd", epochs=4, eps=0.1, alpha=0.02, eps_warmup=2)
    steps = 5  # per epoch, so the ramp lasts 10 steps
    ramp = [config.budget_at(t, steps) for t in range(12)]
    assert ramp[0] == pytest.approx((0.01, 0.002))
    assert ramp[4] == pytest.approx((0.05, 0.01))
    assert ramp[9] == pytest.approx((0.1, 0.02)) and ramp[11] == (0.1, 0.02)
    assert TrainConfig(method="pgd", eps=0.1).budget_at(0, steps) == (0.1, 0.025)
    with pytest.raises(ValueError, match="eps_warmup"):
        TrainConfig(epochs=3, eps_warmup=4)
