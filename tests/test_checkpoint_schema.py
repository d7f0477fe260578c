"""A checkpoint's metadata checked as a schema on load (`loading.check_checkpoint`), by class:
every field of the model config and of the metadata the analyses read is dropped, mistyped and
put out of range, and every case either loads (a dropped field with a default that still fits
the weights) or ends in one CheckpointError that names the file and the field; never another
exception. NaN / Inf weights are refused."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from ssmprobe.checkpoint import CheckpointError, bundled_dir, load_checkpoint, save_checkpoint
from ssmprobe.cli import main
from ssmprobe.loading import load_model

SOURCE = load_checkpoint(bundled_dir() / "dss_pgd.pt")
MISTYPED = ("x", [1], None, True, math.nan, -1, 0, 10**9)
META = ("dataset", "method", "train", "train.eps", "train.alpha", "train.steps")


def cases() -> list[tuple[str, str, object]]:
    """(part, field, value) of every mutation: value DROP removes the field."""
    out = [("config", name, value) for name in SOURCE.config for value in ("DROP", *MISTYPED)]
    return out + [("meta", name, value) for name in META for value in ("DROP", *MISTYPED)]


def mutated(tmp_path: Path, part: str, field: str, value: object) -> Path:
    config, meta = dict(SOURCE.config), {**SOURCE.meta, "train": dict(SOURCE.meta["train"])}
    target, key = (config, field) if part == "config" else (meta, field)
    if "." in field:
        outer, key = field.split(".")
        target = meta[outer]
    if value == "DROP":
        target.pop(key)
    else:
        target[key] = value
    return save_checkpoint(tmp_path / "m.pt", config, SOURCE.state_dict, meta)


@pytest.mark.parametrize(("part", "field", "value"), cases())
def test_every_mutation_loads_or_is_one_named_error(tmp_path, part, field, value) -> None:
    path = mutated(tmp_path, part, field, value)
    try:
        load_model(path)
    except CheckpointError as err:
        message = str(err)
        assert message.startswith(str(path)), message
        named = field.split(".")[-1] if value != "DROP" or part == "meta" else None
        if named and "weights do not fit" not in message:
            assert named in message, message


@pytest.mark.parametrize(
    ("part", "field", "value", "message"),
    [
        ("config", "n_classes", 5, "config.n_classes = 5 does not fit digits, which has 10"),
        ("config", "d_model", "x", "config: d_model must be int, got 'x'"),
        ("meta", "dataset", None, "meta.dataset must be one of"),
        ("meta", "train.eps", math.inf, "meta.train.eps must be a number in (0, 1.0]"),
        ("meta", "method", "sgd", "meta.method must be one of"),
    ],
)
def test_the_classic_cases_name_their_field(tmp_path, part, field, value, message) -> None:
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path}/m.pt: {message}")):
        load_model(mutated(tmp_path, part, field, value))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float, capsys) -> None:
    state = {k: v.clone() for k, v in SOURCE.state_dict.items()}
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name].view(-1)[0] = bad
    path = save_checkpoint(tmp_path / "nan.pt", SOURCE.config, state, SOURCE.meta)
    with pytest.raises(CheckpointError, match=f"weights hold NaN or Inf: {name}"):
        load_model(path)
    assert main(["eval", "--ckpt", str(path), "--attack", "fgsm", "--n", "4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssmprobe: error:") and "NaN or Inf" in err[0]


@pytest.mark.parametrize("device", ["meta", "mps", "cuda:7"])
def test_a_device_that_cannot_run_is_refused(device: str) -> None:
    with pytest.raises(ValueError, match=f"device '{device}'"):
        load_model(bundled_dir() / "dss_pgd.pt", device)


def test_the_bundled_checkpoints_pass_the_schema() -> None:
    for path in sorted(bundled_dir().glob("*.pt")):
        model = load_model(path)
        meta = model.meta
        assert isinstance(model, torch.nn.Module)
        assert meta["dataset"] == ("mnist10k" if "_mnist10k_" in path.name else "digits")
