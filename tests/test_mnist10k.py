"""mnist10k: the 10,000 official MNIST test images shipped with the package, split 8,000 / 2,000
(fixed, stratified), and a smoke run of the CPU preset at the paper's L = 784."""

from __future__ import annotations

import gzip
import hashlib
from importlib.resources import files

import numpy as np
import pytest
import torch

from ssmprobe import data
from ssmprobe.data import DATASETS, OFFICIAL_MD5, load_dataset
from ssmprobe.download import ChecksumError
from ssmprobe.models import model_config
from ssmprobe.models.registry import ARCHS
from ssmprobe.training.fit import fit, train_config
from ssmprobe.vocab import DATASET_NAMES

SHIPPED = files("ssmprobe.datafiles") / "mnist10k"
IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


@pytest.fixture(scope="module")
def splits() -> dict[str, data.SequenceDataset]:
    return {split: load_dataset("mnist10k", split) for split in ("train", "test")}


def raw() -> tuple[np.ndarray, np.ndarray]:
    images = np.frombuffer(gzip.decompress((SHIPPED / IMAGES).read_bytes())[16:], np.uint8)
    labels = np.frombuffer(gzip.decompress((SHIPPED / LABELS).read_bytes())[8:], np.uint8)
    return images.reshape(10000, 784), labels


def test_the_shipped_files_are_the_official_ones_with_their_attribution() -> None:
    for name in (IMAGES, LABELS):
        assert hashlib.md5((SHIPPED / name).read_bytes()).hexdigest() == OFFICIAL_MD5[name]
    notice = (SHIPPED / "NOTICE.md").read_text()
    assert "CC BY-SA 3.0" in notice and "LeCun" in notice
    assert DATASET_NAMES["mnist10k"] != DATASET_NAMES["mnist"]  # never shown as "MNIST"


def test_sizes_shapes_and_range(splits: dict[str, data.SequenceDataset]) -> None:
    for split, ds in splits.items():
        assert len(ds) == DATASETS["mnist10k"].sizes[split] and ds.name == "mnist10k"
        x, y = ds[:5]
        assert x.shape == (5, 784, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert ds.inputs.min() == 0 and ds.inputs.max() == 1


def test_the_split_is_fixed_stratified_and_partitions_the_10k(
    splits: dict[str, data.SequenceDataset],
) -> None:
    again = load_dataset("mnist10k", "test")
    assert torch.equal(again.data, splits["test"].data)
    assert torch.equal(again.labels, splits["test"].labels)
    images, labels = raw()
    counts = np.bincount(labels, minlength=10)
    test_counts = np.bincount(splits["test"].labels.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - counts * 0.2) <= 1)  # each class in proportion
    # Every official image lands in exactly one split, with its own label.
    rows = {row.tobytes(): int(lab) for row, lab in zip(images, labels, strict=True)}
    seen = [
        (x.numpy().tobytes(), int(y))
        for ds in splits.values()
        for x, y in zip(ds.data[..., 0], ds.labels, strict=True)
    ]
    assert len(seen) == 10000 and len({s for s, _ in seen}) == len(rows)
    assert all(rows[s] == y for s, y in seen)


def test_a_damaged_installed_copy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(data.OFFICIAL_MD5, LABELS, "0" * 32)
    with pytest.raises(ChecksumError, match="reinstall ssmprobe"):
        load_dataset("mnist10k", "train")


@pytest.mark.slow
def test_the_cpu_preset_trains_at_l_784_on_a_few_images(
    splits: dict[str, data.SequenceDataset], tmp_path
) -> None:
    """One epoch of PGD-AT with the mnist10k preset (ε 0.3, α 0.04, 10 steps) on 8 images, a
    tiny model of the paper's reference architecture: the run's files and finite metrics."""
    mconfig = model_config("s4", "mnist10k", **ARCHS["reference"], d_model=8, d_state=4)
    config = train_config(
        "mnist10k", "s4", method="pgd", epochs=1, batch_size=4, train_eval_size=4, test_eval_size=4
    )
    assert (config.eps, config.alpha, config.steps, config.lr) == (0.3, 0.04, 10, 1e-3)
    history = fit(
        mconfig,
        splits["train"].head(8),
        splits["test"].head(4),
        config,
        tmp_path,
        dataset="mnist10k",
        progress=False,
    )
    assert len(history) == 1 and np.isfinite(history[0]["test_pgd_loss"])
    assert {"best.pt", "last.pt"} <= {p.name for p in tmp_path.iterdir()}
