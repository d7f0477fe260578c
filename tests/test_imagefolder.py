"""CIFAR-10 read from folders of class subfolders of images, or their .tar.gz
(`ssmprobe.imagefolder`): pixels row by row, channels last, classes in the official order and
interleaved; each kind of bad folder one CorruptDataError naming the file."""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssmprobe.data import load_dataset
from ssmprobe.download import DatasetNotFound
from ssmprobe.evaluation.evaluate import format_results
from ssmprobe.fileformats import CorruptDataError
from ssmprobe.imagefolder import CIFAR10_CLASSES

RNG = np.random.default_rng(0)


def make_folder(root: Path, per_class: int = 2) -> dict[tuple[str, int], np.ndarray]:
    """root/test/<class>/<i>.png (lossless) and one JPEG per class; returns the PNG pixels."""
    pixels = {}
    for cls in CIFAR10_CLASSES:
        folder = root / "test" / cls
        folder.mkdir(parents=True)
        for i in range(per_class):
            ramp = np.add.outer(np.arange(32), np.arange(32))[..., None] * np.array([3, 2, 1])
            image = ((ramp + RNG.integers(0, 64, 3)) % 256).astype(np.uint8)  # smooth: JPEG-able
            Image.fromarray(image).save(folder / f"{i:04d}.png")
            pixels[cls, i] = image
        Image.fromarray(image).save(folder / f"{per_class:04d}.jpg", quality=95)
    return pixels


def test_a_folder_reads_like_the_official_layout(tmp_path: Path) -> None:
    pixels = make_folder(tmp_path)
    data = load_dataset("cifar10", "test", tmp_path, download=False)
    assert (len(data), data.seq_len, data.channels) == (30, 1024, 3)
    assert data.source == f"image folder {tmp_path / 'test'}"
    assert data.labels[:10].tolist() == list(range(10))  # interleaved: head(n) is balanced
    x = data.data.numpy()
    for label, cls in enumerate(CIFAR10_CLASSES):
        first = x[label]  # the first image of each class, row by row, channels last
        np.testing.assert_array_equal(first, pixels[cls, 0].reshape(1024, 3))
    jpeg = x[20:].astype(int) - x[10:20].astype(int)  # the JPEG copy of image 1: close, not equal
    assert 0 < np.abs(jpeg).mean() < 8
    assert data.head(10).source == data.source


def test_the_tar_gz_gives_the_same_dataset(tmp_path: Path) -> None:
    make_folder(tmp_path / "src")
    with tarfile.open(tmp_path / "test.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "test", arcname="test")
    from_tar = load_dataset("cifar10", "test", tmp_path, download=False)
    from_folder = load_dataset("cifar10", "test", tmp_path / "src", download=False)
    assert from_tar.source.endswith("test.tar.gz")
    assert np.array_equal(from_tar.data.numpy(), from_folder.data.numpy())
    assert from_tar.labels.tolist() == from_folder.labels.tolist()


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: shutil.rmtree(f / "cat"), "no folder for class(es) cat"),
        (lambda f: (f / "dog" / "0001.png").write_bytes(b"\x89PNG broken"), "not a readable image"),
        (lambda f: (f / "dog" / "notes.txt").write_text("hi"), "not a PNG or JPEG image"),
        (lambda f: Image.new("RGB", (28, 28)).save(f / "ship" / "9.png"), "28x28 pixels"),
        (lambda f: shutil.copytree(f / "cat", f / "zebra"), "zebra are not classes"),
    ],
)
def test_each_bad_folder_is_one_error_naming_the_file(tmp_path: Path, spoil, message) -> None:
    make_folder(tmp_path)
    spoil(tmp_path / "test")
    with pytest.raises(CorruptDataError, match=re.escape(message)):
        load_dataset("cifar10", "test", tmp_path, download=False)


def test_grey_images_are_converted(tmp_path: Path) -> None:
    make_folder(tmp_path, per_class=1)
    Image.new("L", (32, 32), 200).save(tmp_path / "test" / "frog" / "0000.png")
    data = load_dataset("cifar10", "test", tmp_path, download=False)
    assert (data.data[6] == 200).all()


def test_results_name_the_source() -> None:
    record = {"checkpoint": "s4.pt", "dataset": "cifar10", "n": 4, "results": {"clean": 0.5},
              "data_source": "image folder /x/test.tar.gz"}  # fmt: skip
    assert format_results(record).startswith("s4.pt (cifar10 from image folder /x/test.tar.gz")


def test_the_archive_given_as_the_folder_says_to_give_its_folder(tmp_path: Path) -> None:
    make_folder(tmp_path)
    archive = tmp_path / "test.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "test", arcname="test")
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("cifar10", "test", archive, download=False)
    assert "test/<class>/*.png|jpg or test.tar.gz" in str(err.value)
    assert f"{archive} is a file: give the folder that holds it" in str(err.value)
    assert len(load_dataset("cifar10", "test", tmp_path, download=False)) == 30
