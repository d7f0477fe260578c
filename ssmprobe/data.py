"""Datasets as sequences: inputs (N, L, C) float32 in [0, 1], labels (N,) int64. This module
holds the datasets (`DATASETS`, their official files, mirrors and MD5s), `SequenceDataset`,
`load_dataset` and `make_loader`.

An image becomes a sequence by reading its pixels row by row (row-major), channels last:

| name      | L    | C | classes | train / test | source                                         |
|-----------|------|---|---------|--------------|------------------------------------------------|
| `digits`  | 64   | 1 | 10      | 1437 / 360   | scikit-learn's bundled 8x8 digits (no network) |
| `mnist`   | 784  | 1 | 10      | 60000/10000  | the four official IDX `.gz` files              |
| `cifar10` | 1024 | 3 | 10      | 50000/10000  | `cifar-10-python.tar.gz` or its extracted dir, |
|           |      |   |         |              | or image folders (below)                       |
| `mnist10k`| 784  | 1 | 10      | 8000 / 2000  | the official MNIST *test* images, shipped      |

`digits` is the default: its split is fixed (stratified `train_test_split`, test fraction 0.2,
`random_state=0`), so every run and every machine sees the same 1437 / 360 images. `mnist10k` is
the 10,000 official MNIST test images shipped with the package (CC BY-SA 3.0, attribution in
`ssmprobe/datafiles/mnist10k/NOTICE.md`), MD5-checked on every load and split the same way
(stratified, 2,000 test images, `random_state=0`): the paper's L = 784 on real MNIST digits
without the 60,000 training images, which cannot be had offline. Its accuracies are mnist10k
accuracies, never "MNIST test" accuracies.

Without the official files, `cifar10` is read from image folders (`imagefolder`): class
subfolders of PNG / JPEG images under `<split>/`, or a `<split>.tar.gz` holding them, in the same
places; the dataset's `source` says which ("image folder <path>"), and every result records it
(a JPEG copy is not the official test set: its pixels differ slightly).

Files of `mnist` and `cifar10` are looked for in `<data_dir>/<name>/`, then in `<data_dir>/`
itself (so `data_dir` may be a root of datasets or the folder holding the files);
`data_dir` defaults to `$SSMPROBE_DATA` or `~/.cache/ssmprobe/data`. Missing files are
downloaded into `<data_dir>/<name>/` when `download=True` and the network allows (short
timeouts, each file checked against its official MD5 before it is kept); otherwise one
`DatasetNotFound` names the missing files and the folder to put them in. Each split needs only
its own files, so a folder with just the MNIST `t10k-*` files serves the test split.

With `verify=True` (the default) a file carrying an official name must have the official MD5,
so a corrupt or truncated download is caught; `verify=False` accepts files you made yourself.
Finding, checking and downloading the files is `download`'s (`DataFiles`); parsing them is
`fileformats`'s, which checks every header, size and label range whatever `verify` says and
reads CIFAR-10's pickled batches with an unpickler that runs no code from the file. Every error
about data files is a `fileformats.DatasetError`.

Memory: pixels are kept as uint8 (CIFAR-10 train is 150 MB instead of 600 MB in float32) and
divided into [0, 1] when items or batches are read; `SequenceDataset.inputs` materialises the
whole float32 tensor, so prefer `make_loader` for the large datasets.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ssmprobe.download import ChecksumError, DataFiles, md5sum
from ssmprobe.fileformats import (
    CorruptDataError,
    read_cifar10_archive,
    read_cifar10_batch,
    read_mnist,
)
from ssmprobe.imagefolder import (
    CIFAR10_CLASSES,
    ImageFolderError,
    find_image_split,
    read_image_split,
)

SPLITS = ("train", "test")

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class DatasetInfo:
    """Shape of a dataset's sequences: `image_size` (rows, cols) flattens row-major to L."""

    seq_len: int
    channels: int
    num_classes: int
    image_size: tuple[int, int]
    sizes: dict[str, int]


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(64, 1, 10, (8, 8), {"train": 1437, "test": 360}),
    "mnist": DatasetInfo(784, 1, 10, (28, 28), {"train": 60000, "test": 10000}),
    "cifar10": DatasetInfo(1024, 3, 10, (32, 32), {"train": 50000, "test": 10000}),
    "mnist10k": DatasetInfo(784, 1, 10, (28, 28), {"train": 8000, "test": 2000}),
}
MNIST10K_TEST_SIZE = 2000

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)

# MD5 of the official files; a file with one of these names must match when verify=True.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    CIFAR10_ARCHIVE: "c58f30108f718f92721af3b95e74349a",
}


def default_data_dir() -> Path:
    """`$SSMPROBE_DATA` if set, else `~/.cache/ssmprobe/data`."""
    env = os.environ.get("SSMPROBE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ssmprobe" / "data"


class SequenceDataset(Dataset):
    """Sequences `data` (N, L, C) with labels (N,); items come out float32 as `data / scale`.

    `data` is usually uint8 pixels (scale 255, or 16 for digits) so that big datasets stay
    small; a float tensor with scale 1 works as well (e.g. adversarial examples). Indexing
    accepts an int, a slice, or a sequence / tensor of indices (then it returns a batch, which is
    what `make_loader` uses to avoid per-item collation).
    """

    def __init__(
        self,
        data: Tensor,
        labels: Tensor,
        num_classes: int,
        *,
        scale: float = 1.0,
        name: str = "custom",
        split: str = "",
    ) -> None:
        if data.ndim != 3:
            raise ValueError(f"data must be (N, L, C), got shape {tuple(data.shape)}")
        if labels.shape != data.shape[:1]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match data {tuple(data.shape)}")
        self.data = data
        self.labels = labels.to(torch.int64)
        self.num_classes = num_classes
        self.scale = float(scale)
        self.name = name
        self.split = split
        # Where the samples came from: "official" files, or "image folder <path>" (`imagefolder`)
        self.source = "official"

    @property
    def seq_len(self) -> int:
        return self.data.shape[1]

    @property
    def channels(self) -> int:
        return self.data.shape[2]

    @property
    def inputs(self) -> Tensor:
        """All inputs (N, L, C) as float32 in [0, 1] (materialised on every access)."""
        return self._to_float(self.data)

    def _to_float(self, x: Tensor) -> Tensor:
        return x.to(torch.float32) / self.scale

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: Any) -> tuple[Tensor, Tensor]:
        if isinstance(index, Sequence) and not isinstance(index, str):
            index = torch.as_tensor(index, dtype=torch.int64)
        return self._to_float(self.data[index]), self.labels[index]

    def subset(self, indices: Sequence[int] | Tensor) -> SequenceDataset:
        """The samples at `indices`, as a new dataset (e.g. a fixed train subset to evaluate)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        subset = SequenceDataset(
            self.data[index],
            self.labels[index],
            self.num_classes,
            scale=self.scale,
            name=self.name,
            split=self.split,
        )
        subset.source = self.source
        return subset

    def head(self, n: int | None) -> SequenceDataset:
        """The first `n` samples (all of them when `n` is None or exceeds the size): the fixed
        evaluation subset every analysis uses, so best and last are scored on the same ones."""
        if n is not None and n > len(self):
            warnings.warn(
                f"{n} samples asked for, the {self.name} {self.split} split has {len(self)}: "
                f"using all {len(self)}",
                stacklevel=2,
            )
        return self.subset(torch.arange(len(self) if n is None else min(n, len(self))))

    def __repr__(self) -> str:
        return (
            f"SequenceDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"seq_len={self.seq_len}, channels={self.channels}, num_classes={self.num_classes})"
        )


def make_loader(
    dataset: SequenceDataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    *,
    drop_last: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of (x (B, L, C) float32, y (B,) int64) batches.

    The order depends only on `seed` and on how many epochs were drawn before: a fresh loader
    with the same seed replays the same sequence of epochs. Batches are gathered by one
    fancy-index per batch instead of collating B items.
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=None,  # the BatchSampler hands whole index lists to __getitem__
        sampler=BatchSampler(sampler, batch_size, drop_last),
        num_workers=num_workers,
        pin_memory=pin_memory,
    )


def load_dataset(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    *,
    verify: bool = True,
) -> SequenceDataset:
    """Loads split `split` ("train" or "test") of dataset `name` (see `DATASETS`)."""
    key = name.lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return _LOADERS[key](split, DataFiles(key, root, download, verify, OFFICIAL_MD5))


# -------------------------------------------------------------------------------- loaders


def _stratified_split(labels: np.ndarray, test_size: float | int, split: str) -> np.ndarray:
    """The sorted indices of `split` in the fixed stratified split (seed `DIGITS_SPLIT_SEED`)."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=test_size,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels,
    )
    return np.sort(train_idx if split == "train" else test_idx)


def _load_digits(split: str, files: DataFiles) -> SequenceDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = bunch.target
    chosen = _stratified_split(labels, DIGITS_TEST_FRACTION, split)
    pixels = bunch.data[chosen].astype(np.uint8)  # integers 0..16 stored as float64
    return SequenceDataset(
        torch.from_numpy(pixels[:, :, None]),
        torch.from_numpy(labels[chosen].astype(np.int64)),
        10,
        scale=16.0,
        name="digits",
        split=split,
    )


def _mnist_dataset(
    images: np.ndarray, labels: np.ndarray, name: str, split: str
) -> SequenceDataset:
    return SequenceDataset(
        torch.from_numpy(images), torch.from_numpy(labels), 10, scale=255.0, name=name, split=split
    )


def _load_mnist(split: str, files: DataFiles) -> SequenceDataset:
    names = MNIST_FILES[split]
    paths = [files.find_or_fetch(name, MNIST_MIRRORS) for name in names]
    missing = [name for name, path in zip(names, paths, strict=True) if path is None]
    if missing:
        raise files.not_found(split, missing, ", ".join(missing))
    return _mnist_dataset(*read_mnist(*paths), "mnist", split)


def _load_mnist10k(split: str, files: DataFiles) -> SequenceDataset:
    from importlib.resources import as_file
    from importlib.resources import files as package_files

    folder = package_files("ssmprobe.datafiles") / "mnist10k"
    with (
        as_file(folder / MNIST_FILES["test"][0]) as images,
        as_file(folder / MNIST_FILES["test"][1]) as labels,
    ):
        for path in (images, labels):
            if md5sum(Path(path)) != OFFICIAL_MD5[Path(path).name]:  # always checked
                raise ChecksumError(
                    f"{path}: the shipped MNIST file does not have the official MD5; the "
                    "installed package is damaged: reinstall ssmprobe"
                )
        pixels, targets = read_mnist(Path(images), Path(labels))
    chosen = _stratified_split(targets, MNIST10K_TEST_SIZE, split)
    return _mnist_dataset(pixels[chosen], targets[chosen], "mnist10k", split)


def _load_cifar10(split: str, files: DataFiles) -> SequenceDataset:
    batches = CIFAR10_BATCHES[split]
    parsed = _read_cifar10_dir(files, batches)
    if parsed is None and files.find(CIFAR10_ARCHIVE) is None:  # no official files here
        folder = next(filter(None, (find_image_split(d, split) for d in files.search_dirs)), None)
        if folder is not None:
            return _image_folder_dataset("cifar10", split, folder)
    if parsed is None:
        archive = files.find_or_fetch(CIFAR10_ARCHIVE, CIFAR10_MIRRORS)
        if archive is None:
            raise files.not_found(
                split,
                [CIFAR10_ARCHIVE],
                f"{CIFAR10_ARCHIVE} (or an extracted {CIFAR10_DIR}/ holding {', '.join(batches)}"
                f"; or images: {split}/<class>/*.png|jpg or {split}.tar.gz holding them)"
                + (  # the commonest slip: the archive itself given as the folder
                    f". {files.root} is a file: give the folder that holds it"
                    if files.root.is_file()
                    else ""
                ),
            )
        parsed = read_cifar10_archive(archive, CIFAR10_DIR, batches)
    data = np.concatenate([d for d, _ in parsed])
    labels = np.concatenate([lab for _, lab in parsed])
    return SequenceDataset(
        torch.from_numpy(data),
        torch.from_numpy(labels),
        10,
        scale=255.0,
        name="cifar10",
        split=split,
    )


def _image_folder_dataset(name: str, split: str, source: Path) -> SequenceDataset:
    """The split read from a folder (or .tar.gz) of class folders of images (`imagefolder`)."""
    info = DATASETS[name]
    classes = CIFAR10_CLASSES if name == "cifar10" else ()
    try:
        pixels, labels = read_image_split(source, split, classes, info.image_size, info.channels)
    except ImageFolderError as err:
        raise CorruptDataError(str(err)) from None
    dataset = SequenceDataset(torch.from_numpy(pixels), torch.from_numpy(labels),
                              info.num_classes, scale=255.0, name=name, split=split)  # fmt: skip
    dataset.source = f"image folder {source}"
    return dataset


def _read_cifar10_dir(
    files: DataFiles, batches: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    for directory in files.search_dirs:
        paths = [directory / CIFAR10_DIR / batch for batch in batches]
        if all(path.is_file() for path in paths):
            parsed = []
            for path in paths:
                with open(path, "rb") as f:
                    parsed.append(read_cifar10_batch(f, str(path)))
            return parsed
    return None


_LOADERS: dict[str, Callable[[str, DataFiles], SequenceDataset]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
    "mnist10k": _load_mnist10k,
}
