"""Never lose a result, never show a traceback: outputs are checked before the work, corrupt
inputs are named as corrupt, a local file that shadows a bundled name says so and every
result records the file and SHA-256 it came from, requests beyond what exists say what
happens instead, and run names stay inside their folder (the fuzz test draws many more)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from ssmprobe.checkpoint import CheckpointError, bundled_dir, load_checkpoint
from ssmprobe.cli import main

ZOO = bundled_dir()


@pytest.fixture
def in_tmp(tmp_path: Path):
    cwd = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def test_flipped_bytes_in_the_weights_are_named_corrupt(tmp_path: Path) -> None:
    data = bytearray((ZOO / "s5_pgd.pt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0x55 for b in data[middle : middle + 16])
    (tmp_path / "x.pt").write_bytes(bytes(data))  # outside the zoo: no manifest hash to check
    with pytest.raises(CheckpointError, match="corrupt checkpoint: the stored checksum"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "half.pt").write_bytes(bytes(data[:middle]))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "half.pt")


def test_not_a_checkpoint_is_told_apart_from_code_in_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="not a PyTorch file"):
        load_checkpoint(tmp_path / "plain.pt")

    class Code:
        def __reduce__(self):
            return (print, ("this must never run",))

    buffer = io.BytesIO()
    torch.save({"x": Code()}, buffer)
    (tmp_path / "code.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="asks for Python objects"):
        load_checkpoint(tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint("/dev/zero")


def test_a_local_file_shadowing_a_bundled_name_says_so_and_results_name_their_file(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ZOO / "s5_pgd.pt", in_tmp / "s5_pgd.pt")
    assert main(["eval", "--ckpt", "s5_pgd.pt", "--attack", "pgd10", "--n", "4", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "ssmprobe: warning: s5_pgd.pt is the local file" in err
    record = json.loads((in_tmp / "eval_s5_pgd.json").read_text())
    digest = hashlib.sha256((in_tmp / "s5_pgd.pt").read_bytes()).hexdigest()
    assert record["file"] == {"path": "s5_pgd.pt", "sha256": digest}


def test_results_of_a_bundled_checkpoint_go_to_the_working_folder(in_tmp: Path) -> None:
    before = sorted(p.name for p in ZOO.iterdir())
    args = ["eval", "--ckpt", str(ZOO / "s5_pgd.pt"), "--attack", "pgd10", "--n", "4", "--quiet"]
    assert main(args) == 0
    assert (in_tmp / "eval_s5_pgd.json").is_file()
    assert sorted(p.name for p in ZOO.iterdir()) == before


def test_an_output_is_checked_before_the_work(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["discrepancy", "--ckpt", "s5_pgd", "--n", "4", "--out", "d.json"]
    assert main(args) == 2
    assert "its JSON is written beside it" in capsys.readouterr().err
    shutil.copy(ZOO / "dss_pgd.pt", in_tmp / "mine.pt")
    assert main(["export", "--ckpt", "mine.pt", "--out", "mine.pt"]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert list(in_tmp.iterdir()) == [in_tmp / "mine.pt"]


def test_run_names_stay_in_their_folder_and_the_zoo_keeps_its_own(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("../escape", "a/b", "zoo"):
        assert main(["train", "--epochs", "1", "--out", "runs", "--name", name]) == 2
    assert "reserved for the bundled zoo" in capsys.readouterr().err
    mine = in_tmp / "runs" / "zoo"
    mine.mkdir(parents=True)
    (mine / "config.json").write_text("{}")  # a run of the user's, named zoo before the rule
    assert main(["report", "--runs", "runs", "--zoo", "--quiet"]) == 2
    assert "which is not the bundled zoo" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["config.json"]


def test_a_request_beyond_the_split_says_what_it_does_instead() -> None:
    from ssmprobe.data import load_dataset

    with pytest.warns(UserWarning, match="1000 samples asked for.* using all 360"):
        assert len(load_dataset("digits", "test").head(1000)) == 360


def test_ads_asked_of_a_file_without_ads_weights(tmp_path: Path, capsys) -> None:
    from ssmprobe.interop.reference import export_checkpoint
    from ssmprobe.models import build_model, model_config
    from ssmprobe.models.registry import ARCHS

    config = model_config("s4", "digits", d_model=8, n_layers=1, d_state=4, **ARCHS["reference"])
    path = tmp_path / "native.pt"
    from ssmprobe.checkpoint import save_checkpoint

    save_checkpoint(path, config.to_dict(), build_model(config).state_dict(), {"dataset": "digits"})
    export_checkpoint(path, tmp_path / "theirs.pt")
    args = ["import", str(tmp_path / "theirs.pt"), "--model", "s4", "--dataset", "digits"]
    assert main([*args, "--ads", "relu", "--out", str(tmp_path / "back.pt")]) == 1
    assert "has no AdS weights" in capsys.readouterr().err
