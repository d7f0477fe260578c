"""Checkpoints: round trip, atomic writes, refusal of code-carrying pickles, clear errors."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ssmprobe import checkpoint as ckpt_mod
from ssmprobe.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    check_state_dict,
    load_checkpoint,
    load_into,
    save_checkpoint,
)


class Tiny(nn.Module):
    """A stand-in for a sequence classifier: parameters, a LayerNorm and a buffer."""

    def __init__(self, d_in: int = 3, d: int = 4, classes: int = 2) -> None:
        super().__init__()
        self.encoder = nn.Linear(d_in, d)
        self.norm = nn.LayerNorm(d)
        self.decoder = nn.Linear(d, classes)
        self.register_buffer("steps", torch.arange(d, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.encoder(x)).mean(1))


CONFIG = {"name": "tiny", "d_in": 3, "d": 4, "classes": 2, "ads": None, "dims": [1, 2]}
META = {
    "dataset": "digits",
    "method": "pgd",
    "epoch": 7,
    "metrics": {"test_pgd10_acc": 0.52, "test_clean_acc": 0.9, "history": [0.1, 0.2]},
    "best": True,
}


class Marker:
    """Unpickling this would create `path`: the proof that code from a file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.path}",)


def save_tiny(path: Path, model: nn.Module, **kwargs: object) -> Path:
    return save_checkpoint(path, CONFIG, model.state_dict(), META, **kwargs)


def test_round_trip_with_optimizer_state(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 5, 3)).sum().backward()
    opt.step()
    extra = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state()}
    path = save_tiny(tmp_path / "runs" / "best.pt", model, extra=extra)  # makes runs/

    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint)
    assert loaded.config == CONFIG and loaded.meta == META
    assert loaded.state_dict.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict[name], tensor), name
        assert loaded.state_dict[name].dtype == tensor.dtype

    fresh = load_into(Tiny(), loaded)
    x = torch.randn(2, 5, 3)
    assert torch.equal(fresh(x), model(x))
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded.extra["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == 1
    assert torch.equal(loaded.extra["rng"], extra["rng"])
    assert stat.S_IMODE(path.stat().st_mode) != 0o600  # not mkstemp's private mode


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=25, deadline=None)
@given(config=st.dictionaries(st.text(), plain, max_size=4))
def test_any_plain_config_round_trips(
    tmp_path_factory: pytest.TempPathFactory, config: dict
) -> None:
    path = tmp_path_factory.mktemp("ck") / "c.pt"
    save_checkpoint(path, config, {}, {"epoch": 0})
    assert load_checkpoint(path).config == config


def test_save_rejects_values_that_would_not_load_safely(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    with pytest.raises(TypeError, match=r"meta\['metrics'\]\['acc'\] is a numpy.float64"):
        save_checkpoint(path, CONFIG, {}, {"metrics": {"acc": np.float64(0.5)}})
    with pytest.raises(TypeError, match=r"model_config\['shape'\] is a torch.Size"):
        save_checkpoint(path, {"shape": torch.Size([2])}, {}, {})
    with pytest.raises(TypeError, match="model_config"):
        save_checkpoint(path, {"w": torch.ones(1)}, {}, {})  # tensors only in weights / extra
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_crash_mid_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    old = Tiny()
    save_tiny(path, old)

    def crashing_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        f.write(b"PK\x03\x04 half a zip file")  # partial bytes reach the disk, then we die
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_tiny(path, Tiny())
    monkeypatch.undo()

    loaded = load_checkpoint(path)
    for name, tensor in old.state_dict().items():
        assert torch.equal(loaded.state_dict[name], tensor)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".ssmprobe-written.json", "last.pt"]  # no temp file left behind


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_code_carrying_file_is_refused_and_not_run(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "ssmprobe.checkpoint", "format_version": 1, "config": Marker(marker)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"refused.*system.*Nothing from it was executed"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_corrupt_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not found: .*nope\.pt \(no such file\)"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="a folder"):
        load_checkpoint(tmp_path)

    good = save_tiny(tmp_path / "good.pt", Tiny()).read_bytes()
    for name, blob in [
        ("empty.pt", b""),
        ("text.pt", b"hello, I am not a checkpoint"),
        ("half.pt", good[: len(good) // 2]),
        ("tail.pt", good[:-40]),
    ]:
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(
            CheckpointError, match=r"corrupt or truncated|not a PyTorch file"
        ) as err:
            load_checkpoint(tmp_path / name)
        assert name in str(err.value)


def test_foreign_or_incomplete_payloads(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    torch.save(Tiny().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"not an ssmprobe checkpoint.*bare state_dict"):
        load_checkpoint(path)
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="not an ssmprobe checkpoint"):
        load_checkpoint(path)

    path = tmp_path / "ours.pt"  # x.pt is the user's: never replaced
    save_tiny(path, Tiny())
    payload = torch.load(path, weights_only=True)
    for version in (FORMAT_VERSION + 1, 0, "1", None):
        torch.save({**payload, "format_version": version}, path)
        with pytest.raises(CheckpointError, match="format version"):
            load_checkpoint(path)
    torch.save({k: v for k, v in payload.items() if k not in ("meta", "extra")}, path)
    with pytest.raises(CheckpointError, match=r"lacks.*meta, extra"):
        load_checkpoint(path)
    torch.save({**payload, "state_dict": {"w": [1.0]}}, path)
    with pytest.raises(CheckpointError, match="not tensors: w"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_model(tmp_path: Path) -> None:
    save_tiny(tmp_path / "c.pt", Tiny(d=4))
    loaded = load_checkpoint(tmp_path / "c.pt")

    with pytest.raises(CheckpointError) as err:
        load_into(Tiny(d=5), loaded)
    message = str(err.value)
    assert "config/weights mismatch" in message and "shape mismatch" in message
    assert "encoder.weight: checkpoint (4, 3) vs model (5, 3)" in message
    assert "norm.bias" in message and "missing" not in message

    renamed = dict(loaded.state_dict)
    renamed["head.weight"] = renamed.pop("decoder.weight")
    with pytest.raises(CheckpointError) as err:
        check_state_dict(Tiny(), renamed)
    message = str(err.value)
    assert "missing from the checkpoint: decoder.weight" in message
    assert "unexpected in the checkpoint: head.weight" in message
    assert "shape" not in message

    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError):
        load_into(model, Checkpoint(CONFIG, renamed, META))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


def test_map_location_and_module_constants(tmp_path: Path) -> None:
    path = save_tiny(tmp_path / "c.pt", Tiny().double())
    loaded = load_checkpoint(path, map_location=torch.device("cpu"))
    assert all(t.device.type == "cpu" for t in loaded.state_dict.values())
    assert loaded.state_dict["encoder.weight"].dtype == torch.float64
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ckpt_mod.FORMAT_NAME and raw["format_version"] == FORMAT_VERSION
