"""The output rule (`ssmprobe.io`): an output is a new path or a regular file this tool wrote;
a user's file only with --force, and a checkpoint never by results."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from ssmprobe.cli import main
from ssmprobe.io import (
    WRITTEN,
    OutputError,
    check_output_dir,
    check_output_file,
    replacing,
    write_json,
    write_text,
    written_here,
)


def test_what_ssmprobe_wrote_is_replaced_and_a_users_file_only_with_force(tmp_path: Path) -> None:
    ours, mine = tmp_path / "ours.json", tmp_path / "mine.json"
    write_json(ours, {"a": 1})
    mine.write_text("{}\n")
    assert written_here(ours) and not written_here(mine)
    assert check_output_file(ours) == ours
    with pytest.raises(OutputError, match=r"exists; pass --force"):
        check_output_file(ours, overwrite=False)
    with pytest.raises(OutputError, match=r"ssmprobe did not write it .*or pass --force"):
        check_output_file(mine)
    assert check_output_file(mine, force=True) == mine
    ours.write_text('{"a": 2}\n')  # edited by hand since: the user's now
    assert not written_here(ours)
    with pytest.raises(OutputError, match="did not write it"):
        check_output_file(ours)


def test_a_checkpoint_is_never_replaced_by_results(tmp_path: Path) -> None:
    ckpt = tmp_path / "mine.pt"
    torch.save({"w": torch.zeros(2)}, ckpt)
    for force in (False, True):
        with pytest.raises(OutputError, match="PyTorch checkpoint"):
            check_output_file(ckpt, force=force)
    assert check_output_file(ckpt, overwrite=True, force=True, checkpoint=True) == ckpt


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "a folder"),
        (lambda p: p.symlink_to(p.parent / "elsewhere"), "a symbolic link"),
        (lambda p: p.symlink_to(p), "a symbolic link"),
        (lambda p: os.mkfifo(p), "a FIFO"),
    ],
)
def test_special_files_are_refused_even_with_force(tmp_path: Path, make, message) -> None:
    path = tmp_path / "out.json"
    make(path)
    with pytest.raises(OutputError, match=message):
        check_output_file(path, force=True)


def test_nothing_goes_into_the_zoo_or_the_package(tmp_path: Path) -> None:
    import ssmprobe
    from ssmprobe.checkpoint import bundled_dir

    for path in (bundled_dir() / "new.csv", bundled_dir() / "cache", Path(ssmprobe.__file__)):
        with pytest.raises(OutputError, match="lies in the"):
            check_output_file(path, force=True)
    with pytest.raises(OutputError, match="lies in the bundled checkpoints"):
        check_output_dir(bundled_dir() / "report")


def _write_many(folder: str, worker: int) -> None:
    for i in range(25):
        write_text(Path(folder) / f"w{worker}_{i}.txt", f"{worker} {i}\n")


def test_writers_at_once_keep_every_entry_of_the_sidecar(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    recorded = json.loads((tmp_path / WRITTEN).read_text())
    assert len(recorded) == 100
    assert all(written_here(tmp_path / name) for name in recorded)


def test_the_command_line_applies_the_rule(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.json").write_text("my notes\n")
    torch.save({"w": torch.zeros(2)}, tmp_path / "mine.pt")
    base = ["eval", "--ckpt", "dss_pgd", "--attack", "fgsm", "--n", "4", "--quiet"]
    assert main([*base, "--out", "notes.json"]) == 2
    assert "ssmprobe did not write it" in capsys.readouterr().err
    assert (tmp_path / "notes.json").read_text() == "my notes\n"
    assert main([*base, "--out", "notes.json", "--force"]) == 0
    assert json.loads((tmp_path / "notes.json").read_text())["n"] == 4
    assert main([*base, "--out", "notes.json"]) == 0  # now ssmprobe's: replaced freely
    probe = ["discrepancy", "--ckpt", "dss_pgd", "--n", "4", "--quiet", "--force"]
    assert main([*probe, "--out", "mine.pt"]) == 2
    assert "never replaced by results" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}\n")
    assert main([*probe[:-1], "--out", "run/config.csv"]) == 2  # its JSON: the user's file
    assert "run/config.json exists and ssmprobe did not write it" in capsys.readouterr().err


def test_a_write_never_replaces_a_users_file_unless_replacing(tmp_path: Path) -> None:
    """The rule's last line, at the moment of writing: names derived inside an output folder."""
    mine = tmp_path / "figure.png"
    mine.write_text("my figure\n")
    with pytest.raises(OutputError, match=r"did not write it.*--force"):
        write_text(mine, "ours\n")
    assert mine.read_text() == "my figure\n"
    assert not list(tmp_path.glob(".*.tmp"))  # nothing left behind either
    with replacing():
        write_text(mine, "ours\n")
    assert written_here(mine)
    write_text(mine, "ours again\n")  # now ssmprobe's: replaced freely
    (tmp_path / "link.png").symlink_to(mine)
    with replacing(), pytest.raises(OutputError, match="a symbolic link"):
        write_text(tmp_path / "link.png", "x\n")
    assert mine.read_text() == "ours again\n"


def test_folder_outputs_keep_a_users_file_of_a_derived_name(tmp_path: Path, capsys) -> None:
    from ssmprobe.checkpoint import bundled_dir

    csv = str(bundled_dir() / "cache" / "s4_pgd" / "discrepancy.csv")
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "figure3_discrepancy.png").write_text("my figure\n")
    assert main(["plot", "discrepancy", csv, "--out", str(figures)]) == 2
    assert "figure3_discrepancy.png exists and ssmprobe did not write it" in capsys.readouterr().err
    assert (figures / "figure3_discrepancy.png").read_text() == "my figure\n"
    assert main(["plot", "discrepancy", csv, "--out", str(figures), "--force"]) == 0
    assert (figures / "figure3_discrepancy.png").read_bytes()[:4] == b"\x89PNG"
    # fixed names are checked before any work
    (tmp_path / "table.md").write_text("my table\n")
    assert main(["table", str(tmp_path)]) == 2
    assert "table.md exists and ssmprobe did not write it" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.html").write_text("mine\n")
    assert main(["report", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert "report.html exists" in capsys.readouterr().err
    assert (tmp_path / "out" / "report.html").read_text() == "mine\n"


# --------------------------------------------------------------------------- run folders

TINY = {"d_model": 4, "n_layers": 1, "d_state": 4, "epochs": 1, "batch_size": 64,
        "train_eval_size": 16, "test_eval_size": 16, "progress": False}  # fmt: skip


def tiny_train(out: Path, **kwargs) -> Path:
    from ssmprobe.training.run import train

    return train("s5", "digits", "st", out=out, name="r", **(TINY | kwargs)).path


def test_a_folder_with_any_run_file_is_a_run(tmp_path: Path) -> None:
    run = tiny_train(tmp_path)
    (run / "last.pt").unlink()  # what a full disk leaves: best.pt and metrics, no last.pt
    best = (run / "best.pt").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run \(config.json, metrics.jsonl"):
        tiny_train(tmp_path)
    with pytest.raises(ValueError, match=r"no last.pt to resume from; pass --force"):
        tiny_train(tmp_path, resume=True)
    assert (run / "best.pt").read_bytes() == best
    (run / "eval_best.json").write_text("{}")  # a user's file beside the run stays
    write_json(run / "eval_last.json", {})  # a cache ssmprobe wrote is deleted with the run
    tiny_train(tmp_path, force=True)
    assert (run / "last.pt").is_file() and (run / "eval_best.json").read_text() == "{}"
    assert not (run / "eval_last.json").exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]


def test_a_run_that_stopped_before_its_first_epoch_starts_again(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{}")
    assert (tiny_train(tmp_path, resume=True) / "last.pt").is_file()


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path: Path) -> None:
    import subprocess
    import sys

    from ssmprobe.io import LOCK, folder_lock

    held = rf"being written by process {os.getpid()}"
    with folder_lock(tmp_path / "r"), pytest.raises(OutputError, match=held):
        tiny_train(tmp_path)
    assert not (tmp_path / "r" / LOCK).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    (tmp_path / "r" / LOCK).write_text(dead)
    assert (tiny_train(tmp_path) / "last.pt").is_file()
    assert not (tmp_path / "r" / LOCK).exists()
