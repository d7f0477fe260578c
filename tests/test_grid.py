"""The grid launcher with submitit's local executor: runs, skips finished runs, resumes a
killed one; the grid's shape and the dry run's hours."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssmprobe.grid import (
    GridError,
    GridRun,
    LaunchOptions,
    evaluated,
    expected_hours,
    finished,
    launch,
    paper_grid,
    select,
)

pytest.importorskip("submitit")

REPRODUCE_DIGITS = Path(__file__).resolve().parents[1] / "analysis" / "reproduce_digits.py"
TINY = {
    "d_model": 8, "n_layers": 1, "d_state": 4, "batch_size": 256, "steps": 1,
    "train_eval_size": 16, "test_eval_size": 16,
}  # fmt: skip


def tiny(**options: object) -> tuple[tuple[str, object], ...]:
    return tuple((TINY | options).items())


def epochs_of(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_papers_grid() -> None:
    grid = paper_grid("mnist")
    assert len(grid) == 5 * 3 + 2 * 3 * 2 == len({r.name for r in grid})
    assert grid[0].method == "st" and {"s4_pgd_ads-relu", "dss_trades_ads-tanh"} <= {
        r.name for r in grid
    }
    hours = expected_hours(grid, lambda r: 100)
    s4 = next(r for r in hours["rows"] if r["run"] == "s4_pgd")
    assert s4["gpu_hours"] == pytest.approx(43 * 100 / 3600)
    with pytest.raises(ValueError, match="unknown"):
        paper_grid("mnist", ["transformer"])


def test_seeds_repeat_every_run_and_name_all_but_seed_zero() -> None:
    grid = paper_grid("digits", ["s4"], ["pgd"], seeds=[0, 2])
    plain = ["s4_pgd", "s4_pgd_ads-relu", "s4_pgd_ads-sigmoid", "s4_pgd_ads-tanh"]
    assert [r.name for r in grid] == plain + [f"{name}_seed2" for name in plain]
    kwargs = grid[4].train_kwargs(Path("runs"))
    assert kwargs["seed"] == 2
    assert kwargs["name"] == "s4_pgd_seed2"
    for bad in ([], [1, 1], [-1]):
        with pytest.raises(ValueError, match="seeds"):
            paper_grid("digits", seeds=bad)


def test_evaluated_wants_every_attack_on_enough_samples(tmp_path: Path) -> None:
    def write(results: dict[str, float | None], n: int = 360) -> None:
        for which in ("best", "last"):
            payload = {"n": n, "results": results}
            (tmp_path / f"eval_{which}.json").write_text(json.dumps(payload))

    assert not evaluated(tmp_path, 360)
    write({"clean": 0.9, "pgd10": 0.8})
    assert evaluated(tmp_path, 360, "pgd10") and not evaluated(tmp_path, 360, "pgd10,aa")
    write({"clean": 0.9, "pgd10": 0.8, "aa": None})
    assert not evaluated(tmp_path, 360)
    write({"clean": 0.9, "pgd10": 0.8, "aa": 0.7}, n=100)
    assert evaluated(tmp_path, 100) and not evaluated(tmp_path, 360)
    (tmp_path / "last.pt").write_bytes(b"retrained")  # newer than its eval file
    later = (tmp_path / "eval_last.json").stat().st_mtime + 5
    os.utime(tmp_path / "last.pt", (later, later))
    assert evaluated(tmp_path, 100, which="best") and not evaluated(tmp_path, 100, which="last")


def test_select_by_name_and_pattern() -> None:
    grid = paper_grid("digits")
    names = [r.name for r in select(grid, ["mamba_*", "s4_pgd"])]
    assert names == ["mamba_st", "s4_pgd", "mamba_pgd", "mamba_trades"]  # the grid's order
    assert len(select(grid, ["*_ads-*"])) == 12
    with pytest.raises(ValueError, match="transformer"):
        select(grid, ["s4_st", "transformer_*"])
    seeds = paper_grid("digits", seeds=(0, 3, 4))
    chosen = [r.name for r in select(seeds, ["dss_trades", "s4_pgd_seed3"])]
    assert chosen == ["dss_trades", "s4_pgd_seed3", "dss_trades_seed3", "dss_trades_seed4"]


@pytest.mark.slow
def test_local_launch_skips_finished_runs_and_resumes_a_killed_one(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    grid = [GridRun(m, "st", "digits", None, tiny(epochs=1)) for m in ("s5", "dss")]
    options = LaunchOptions(logs=str(tmp_path / "logs"), parallel=2, timeout_min=10)
    done = launch(grid, runs, options, n_eval=16, attacks="pgd10", log=lambda _: None)
    assert sorted(Path(p).name for p in done) == ["dss_st", "s5_st"]
    for run in grid:
        assert finished(runs / run.name) and (runs / run.name / "eval_last.json").is_file()
    assert launch(grid, runs, options, n_eval=16, attacks="pgd10", log=lambda _: None) == []

    # A run killed after its first epoch: the next launch resumes it from last.pt.
    long = GridRun("s5", "pgd", "digits", None, tiny(epochs=8))
    entry = json.dumps(long.train_kwargs(runs))  # what torchrun starts
    command = [sys.executable, "-m", "ssmprobe.training.run", entry]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = runs / long.name / "metrics.jsonl"
    while process.poll() is None and not (metrics.is_file() and metrics.read_text().strip()):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = epochs_of(runs / long.name)[-1]
    assert 1 <= killed_at < 8 and not finished(runs / long.name)
    launch([long, *grid], runs, options, n_eval=16, attacks="pgd10", log=lambda _: None)
    assert epochs_of(runs / long.name) == list(range(1, 9))


@pytest.mark.slow
def test_a_failed_job_does_not_stop_the_others(tmp_path: Path) -> None:
    good = GridRun("s5", "st", "digits", None, tiny(epochs=1))
    bad = GridRun("dss", "st", "digits", None, tiny(epochs=1, d_state=0))
    options = LaunchOptions(logs=str(tmp_path / "logs"), parallel=1, timeout_min=10)
    failure = r"1 of 2 run\(s\) failed: dss_st \(ValueError: d_state must be positive, got 0; log: "
    with pytest.raises(GridError, match=failure):
        launch([bad, good], tmp_path / "runs", options, 16, "pgd10", log=lambda _: None)
    assert finished(tmp_path / "runs" / "s5_st")  # queued after the failure, still ran


def test_reproduce_digits_lists_its_own_options_and_the_dry_run(tmp_path: Path) -> None:
    run = [sys.executable, str(REPRODUCE_DIGITS)]
    usage = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--bundle" in usage and "--dry-run" in usage
    listed = subprocess.run(
        [*run, "--dry-run", "--only", "s4_st,mamba_*", "--runs", str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert [line.split()[0] for line in listed[:4]] == [
        "s4_st", "mamba_st", "mamba_pgd", "mamba_trades",
    ]  # fmt: skip
    assert all(line.rstrip().endswith("to do") for line in listed[:4])


def test_dry_run_columns_line_up_past_long_seed_names(tmp_path: Path) -> None:
    listed = subprocess.run(
        [sys.executable, str(REPRODUCE_DIGITS), "--dry-run", "--runs", str(tmp_path),
         "--seeds", "0,1", "--only", "s4_st*,dss_trades_ads-sigmoid*"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()[:-1]  # fmt: skip
    assert "dss_trades_ads-sigmoid_seed1" in listed[-1]
    assert len({line.index(" epochs") for line in listed}) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "nomatch"], "no run of the grid matches ['nomatch']"),
        (["--models", "s4,foo"], "unknown models or methods ['foo']"),
        (["--seeds", "1,1"], "seeds must be distinct"),
    ],
)
def test_grid_options_give_one_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPRODUCE_DIGITS), "--dry-run", "--runs", str(tmp_path), *args],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr.strip().splitlines()[-1]


def test_an_eval_file_is_of_its_checkpoints_bytes_not_of_their_times(tmp_path: Path) -> None:
    """A clone or copy gives files new times in any order: an eval file that records its
    checkpoint's SHA-256 stays done while those bytes are there, and is redone once they change,
    whichever file is newer."""
    import hashlib

    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    record = {"n": 100, "results": {"clean": 0.9, "pgd10": 0.8}, "file": {"sha256": digest}}
    (tmp_path / "eval_last.json").write_text(json.dumps(record))
    later = (tmp_path / "eval_last.json").stat().st_mtime + 5
    os.utime(ckpt, (later, later))  # checked out after its eval file
    assert evaluated(tmp_path, 100, "pgd10", which="last")
    ckpt.write_bytes(b"retrained")
    os.utime(ckpt, (1e9, 1e9))  # and older than it
    assert not evaluated(tmp_path, 100, "pgd10", which="last")
