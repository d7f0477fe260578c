"""Dataset loaders: digits split, MNIST IDX files, CIFAR-10 batches, safe unpickling, loaders.

Nothing here touches the network: every test that could download either passes
download=False or replaces `ssmprobe.download.fetch_url`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmprobe import data, download
from ssmprobe.data import DATASETS, load_dataset, make_loader
from ssmprobe.download import ChecksumError, DatasetNotFound
from ssmprobe.fileformats import CorruptDataError, UnsafePickleError, read_idx, safe_unpickle

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every download attempt fails (and is recorded) unless a test installs its own fetcher."""
    calls: list[str] = []

    def offline(url: str, dest: Path, timeout: float) -> None:
        calls.append(url)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(download, "fetch_url", offline)
    return calls


# ----------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file written from the format description (independent of the parser)."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(folder: Path, split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    names = data.MNIST_FILES[split]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / names[0]).write_bytes(gzip.compress(idx_bytes(images, 0x08)))
    (folder / names[1]).write_bytes(gzip.compress(idx_bytes(labels, 0x08)))
    return images, labels


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the real CIFAR-10 batches: every str as a
    BINSTRING (loaded back as bytes) and numpy's globals under `numpy.core.multiarray`."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_str(self, obj: str | bytes) -> None:
        raw = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_str
    dispatch[str] = save_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name).replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


def write_cifar_dir(root: Path, n: int = 3, py2: bool = False) -> dict[str, tuple]:
    folder = root / data.CIFAR10_DIR
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([*data.CIFAR10_BATCHES["train"], *data.CIFAR10_BATCHES["test"]]):
        pixels, labels = cifar_batch(n, seed=i)
        batches[name] = (pixels, labels)
        if py2:
            blob = py2_pickle({"batch_label": name, "data": pixels, "labels": labels})
        else:
            blob = pickle.dumps({b"data": pixels, b"labels": labels}, protocol=2)
        (folder / name).write_bytes(blob)
    return batches


class Marker:
    """Unpickling this would create `path`: the proof that code from a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.path}",)


# ------------------------------------------------------------------------------ digits


def test_digits_shapes_range_and_sizes() -> None:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360) == tuple(DATASETS["digits"].sizes.values())
    for ds in (train, test):
        assert ds.inputs.shape == (len(ds), 64, 1) and ds.inputs.dtype == torch.float32
        assert ds.labels.dtype == torch.int64
        assert ds.inputs.min() == 0 and ds.inputs.max() == 1
        assert (ds.seq_len, ds.channels, ds.num_classes) == (64, 1, 10)
        assert set(ds.labels.tolist()) == set(range(10))
    # Stratified: every class keeps ~20 % of its images in the test split.
    test_counts = torch.bincount(test.labels, minlength=10)
    all_counts = test_counts + torch.bincount(train.labels, minlength=10)
    assert ((test_counts.double() / all_counts - 0.2).abs() < 0.02).all()


def test_digits_split_is_fixed_and_partitions_the_data() -> None:
    from sklearn.datasets import load_digits

    first, again = load_dataset("digits", "train"), load_dataset("digits", "train")
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.labels, again.labels)
    test = load_dataset("digits", "test")
    bunch = load_digits()
    # Train + test rows (pixels and label) are exactly the original 1797 rows, each once.
    ours = torch.cat([first.inputs, test.inputs])[:, :, 0] * 16
    ours = torch.cat([ours, torch.cat([first.labels, test.labels])[:, None].double()], 1)
    theirs = np.concatenate([bunch.data, bunch.target[:, None]], 1)
    assert sorted(map(tuple, ours.tolist())) == sorted(map(tuple, theirs.tolist()))


def test_unknown_name_or_split() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'svhn'.*digits, mnist, cifar10"):
        load_dataset("svhn", "train")
    with pytest.raises(ValueError, match=r"unknown split 'valid'.*train, test"):
        load_dataset("digits", "valid")


# ----------------------------------------------------------------------------- loaders


def test_make_loader_is_deterministic_and_covers_every_item() -> None:
    ds = load_dataset("digits", "test")

    def epochs(seed: int) -> list[list[torch.Tensor]]:
        loader = make_loader(ds, 64, shuffle=True, seed=seed)
        return [[x for x, _ in loader] for _ in range(2)]

    a, b, c = epochs(0), epochs(0), epochs(1)
    assert all(
        torch.equal(x, y) for ea, eb in zip(a, b, strict=True) for x, y in zip(ea, eb, strict=True)
    )
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])  # a new order every epoch

    loader = make_loader(ds, 64, shuffle=True, seed=3)
    xs, ys = zip(*loader, strict=True)
    assert [len(y) for y in ys] == [64] * 5 + [40] and len(loader) == 6
    assert xs[0].shape == (64, 64, 1) and xs[0].dtype == torch.float32
    # The shuffled epoch is a permutation of the dataset: same multiset of (x, y) rows.
    rows = torch.cat([torch.cat(xs)[:, :, 0], torch.cat(ys)[:, None].float()], 1)
    ref = torch.cat([ds.inputs[:, :, 0], ds.labels[:, None].float()], 1)
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, ref.tolist()))

    x, y = next(iter(make_loader(ds, 10, shuffle=False)))
    assert torch.equal(x, ds.inputs[:10]) and torch.equal(y, ds.labels[:10])
    assert len(make_loader(ds, 64, drop_last=True)) == 5


def test_items_and_subset() -> None:
    ds = load_dataset("digits", "test")
    x, y = ds[5]
    assert x.shape == (64, 1) and torch.equal(x, ds.inputs[5]) and y == ds.labels[5]
    sub = ds.subset([3, 1, 4])
    assert torch.equal(sub.inputs, ds.inputs[[3, 1, 4]]) and len(sub) == 3


# ------------------------------------------------------------------------- real MNIST


@pytest.fixture
def shared_mnist() -> Path:
    if not all((SHARED_MNIST / name).is_file() for name in MNIST_TEST):
        pytest.skip(f"real MNIST test files not in {SHARED_MNIST}")
    return SHARED_MNIST


def test_real_mnist_test_split(shared_mnist: Path, no_network: list[str]) -> None:
    ds = load_dataset("mnist", "test", shared_mnist)  # verify=True: official MD5s checked
    assert ds.inputs.shape == (10000, 784, 1) and ds.inputs.dtype == torch.float32
    assert ds.inputs.min() == 0 and ds.inputs.max() == 1
    assert ds.labels.shape == (10000,) and set(ds.labels.tolist()) == set(range(10))
    assert no_network == []
    # Same files found when data_dir is the root holding mnist/.
    assert torch.equal(load_dataset("mnist", "test", shared_mnist.parent).labels, ds.labels)
    # Independent decode of one image: gzip + skip the 16-byte header.
    raw = gzip.decompress((shared_mnist / MNIST_TEST[0]).read_bytes())
    first = torch.tensor(list(raw[16 : 16 + 784]), dtype=torch.float32) / 255
    assert torch.equal(ds.inputs[0, :, 0], first)


def test_hard_coded_md5_match_the_shared_md5sums(shared_mnist: Path) -> None:
    listed = dict(
        line.split()[::-1] for line in (shared_mnist / "MD5SUMS").read_text().splitlines()
    )
    assert {name: data.OFFICIAL_MD5[name] for name in listed} == listed
    for name, md5 in listed.items():
        assert hashlib.md5((shared_mnist / name).read_bytes()).hexdigest() == md5


def test_real_mnist_train_missing_names_files_and_folder(
    shared_mnist: Path, no_network: list[str]
) -> None:
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("mnist", "train", shared_mnist.parent, download=False)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert "t10k" not in message and str(shared_mnist) in message
    assert err.value.directory == shared_mnist and no_network == []


def test_download_is_checksummed(
    tmp_path: Path, shared_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first mirror serves garbage, the second the real file: only the real file is kept."""
    urls: list[str] = []

    def fake_fetch(url: str, dest: Path, timeout: float) -> None:
        urls.append(url)
        if url.startswith(data.MNIST_MIRRORS[0]):
            dest.write_bytes(b"<html>mirror error page</html>")
        else:
            shutil.copyfile(shared_mnist / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(download, "fetch_url", fake_fetch)
    ds = load_dataset("mnist", "test", tmp_path)
    assert len(ds) == 10000 and len(urls) == 4
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(MNIST_TEST)


# -------------------------------------------------------------------------- IDX files


@settings(max_examples=30, deadline=None)
@given(
    code_dtype=st.sampled_from(
        [(0x08, "u1"), (0x09, "i1"), (0x0B, "i2"), (0x0C, "i4"), (0x0D, "f4"), (0x0E, "f8")]
    ),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    compress=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_read_idx_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    code_dtype: tuple,
    shape: list,
    compress: bool,
    seed: int,
) -> None:
    code, dtype = code_dtype
    array = (np.random.default_rng(seed).normal(size=shape) * 100).astype(dtype)
    blob = idx_bytes(array, code)
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    path.write_bytes(gzip.compress(blob) if compress else blob)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "not an IDX file"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "not an IDX file"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated IDX header"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + b"abcde", "truncated"),
        (b"\x00\x00\x0c\x01" + struct.pack(">I", 1) + b"abcdefgh", "trailing bytes"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path: Path, blob: bytes, message: str) -> None:
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(gzip.compress(blob))
    with pytest.raises(CorruptDataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_rejects_truncated_gzip(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8), 0x08))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptDataError, match="gzip"):
        read_idx(path)


def test_mnist_from_own_files(tmp_path: Path) -> None:
    images, labels = write_mnist(tmp_path / "mnist", "train", 7)
    ds = load_dataset("mnist", "train", tmp_path, verify=False)
    assert ds.inputs.shape == (7, 784, 1)
    expected = torch.from_numpy(images.reshape(7, 784, 1).astype(np.float32) / 255)
    assert torch.equal(ds.inputs, expected)
    assert ds.labels.tolist() == labels.tolist()


def test_official_name_with_wrong_md5_is_caught(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", 3)
    with pytest.raises(ChecksumError, match=r"t10k-images-idx3-ubyte\.gz.*verify=False"):
        load_dataset("mnist", "test", tmp_path)  # verify defaults to True
    assert len(load_dataset("mnist", "test", tmp_path, verify=False)) == 3


def test_mnist_inconsistent_files(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", 3)
    labels_file = tmp_path / MNIST_TEST[1]
    labels_file.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8), 0x08)))
    with pytest.raises(CorruptDataError, match="expected 3 uint8 labels"):
        load_dataset("mnist", "test", tmp_path, verify=False)
    labels_file.write_bytes(gzip.compress(idx_bytes(np.full(3, 10, np.uint8), 0x08)))
    with pytest.raises(CorruptDataError, match=r"labels must lie in 0\.\.9"):
        load_dataset("mnist", "test", tmp_path, verify=False)
    images_file = tmp_path / MNIST_TEST[0]
    images_file.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 8, 8), np.uint8), 0x08)))
    with pytest.raises(CorruptDataError, match=r"\(N, 28, 28\)"):
        load_dataset("mnist", "test", tmp_path, verify=False)


def test_missing_files_offline(tmp_path: Path, no_network: list[str]) -> None:
    write_mnist(tmp_path / "mnist", "test", 2)
    (tmp_path / "mnist" / MNIST_TEST[1]).unlink()
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("mnist", "test", tmp_path, verify=False)
    message = str(err.value)
    assert MNIST_TEST[1] in message and MNIST_TEST[0] not in message.split("Download")[0]
    assert str(tmp_path / "mnist") in message and "network disabled" in message
    assert err.value.missing == [MNIST_TEST[1]]
    assert no_network == [base + MNIST_TEST[1] for base in data.MNIST_MIRRORS]

    no_network.clear()
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("mnist", "train", tmp_path)
    assert err.value.missing == list(data.MNIST_FILES["train"])
    # A mirror that cannot be reached is tried once, then skipped for the remaining files.
    assert no_network == [base + data.MNIST_FILES["train"][0] for base in data.MNIST_MIRRORS]

    no_network.clear()
    with pytest.raises(DatasetNotFound, match="download=False"):
        load_dataset("mnist", "train", tmp_path, download=False)
    assert no_network == []


def test_default_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSMPROBE_DATA", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    write_mnist(tmp_path / "mnist", "test", 2)
    assert len(load_dataset("mnist", "test", verify=False)) == 2


# ---------------------------------------------------------------------------- CIFAR-10


def expected_cifar(batches: dict, names: tuple[str, ...]) -> tuple[torch.Tensor, list[int]]:
    """Pixel (row r, col c), channel ch is data[ch * 1024 + r * 32 + c] (CIFAR's layout)."""
    pixels = np.concatenate([batches[n][0] for n in names]).astype(np.float32) / 255
    n = len(pixels)
    seq = np.empty((n, 1024, 3), np.float32)
    for ch in range(3):
        for r in range(32):
            for c in range(32):
                seq[:, r * 32 + c, ch] = pixels[:, ch * 1024 + r * 32 + c]
    return torch.from_numpy(seq), [lab for name in names for lab in batches[name][1]]


@pytest.mark.parametrize("py2", [False, True])
def test_cifar10_from_extracted_dir(tmp_path: Path, py2: bool) -> None:
    batches = write_cifar_dir(tmp_path / "cifar10", n=3, py2=py2)
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split, tmp_path)
        inputs, labels = expected_cifar(batches, data.CIFAR10_BATCHES[split])
        assert ds.inputs.shape == (3 * len(data.CIFAR10_BATCHES[split]), 1024, 3)
        assert ds.data.dtype == torch.uint8  # stored small, converted on read
        assert torch.equal(ds.inputs, inputs) and ds.labels.tolist() == labels
        assert (ds.seq_len, ds.channels, ds.num_classes) == (1024, 3, 10)


def test_cifar10_from_archive(tmp_path: Path) -> None:
    batches = write_cifar_dir(tmp_path / "src", n=2)
    archive = tmp_path / "data" / data.CIFAR10_ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / data.CIFAR10_DIR, arcname=data.CIFAR10_DIR)
    ds = load_dataset("cifar10", "test", tmp_path / "data", verify=False)
    inputs, labels = expected_cifar(batches, ("test_batch",))
    assert torch.equal(ds.inputs, inputs) and ds.labels.tolist() == labels
    assert not (tmp_path / "data" / data.CIFAR10_DIR).exists()  # read in place
    with pytest.raises(ChecksumError, match="c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", "test", tmp_path / "data")


def test_cifar10_corrupt_archive_and_batches(tmp_path: Path) -> None:
    archive = tmp_path / data.CIFAR10_ARCHIVE
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(CorruptDataError, match=r"broken tar\.gz"):
        load_dataset("cifar10", "test", tmp_path, verify=False)

    folder = tmp_path / "cifar10" / data.CIFAR10_DIR
    folder.mkdir(parents=True)
    batch = folder / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(CorruptDataError, match=r"uint8 \(n, 3072\)"):
        load_dataset("cifar10", "test", tmp_path)
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(CorruptDataError, match="labels for 2 images"):
        load_dataset("cifar10", "test", tmp_path)
    batch.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]})[:-9])
    with pytest.raises(CorruptDataError, match="not a readable pickle"):
        load_dataset("cifar10", "test", tmp_path)


def test_cifar10_missing_offline(tmp_path: Path, no_network: list[str]) -> None:
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("cifar10", "train", tmp_path)
    message = str(err.value)
    assert data.CIFAR10_ARCHIVE in message and data.CIFAR10_DIR in message
    assert "data_batch_5" in message and str(tmp_path / "cifar10") in message
    assert no_network == [data.CIFAR10_MIRRORS[0] + data.CIFAR10_ARCHIVE]


@pytest.mark.parametrize("via_archive", [False, True])
def test_cifar10_refuses_malicious_pickle(tmp_path: Path, via_archive: bool) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "src" / data.CIFAR10_DIR
    folder.mkdir(parents=True)
    payload = {b"data": Marker(marker), b"labels": [0]}
    (folder / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    root = tmp_path / "src"
    if via_archive:
        root = tmp_path / "arch"
        root.mkdir()
        with tarfile.open(root / data.CIFAR10_ARCHIVE, "w:gz") as tar:
            tar.add(folder, arcname=data.CIFAR10_DIR)
    with pytest.raises(UnsafePickleError, match=r"refused.*system.*nothing.*executed"):
        load_dataset("cifar10", "test", root, verify=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03.",
        b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00base64\x86R.",
        b"\x80\x02cnumpy\nload\nq\x00.",
    ],
)
def test_safe_unpickle_refuses_other_globals(payload: bytes) -> None:
    with pytest.raises(UnsafePickleError, match="refused"):
        safe_unpickle(io.BytesIO(payload), "payload")


def test_dataset_info_matches_loaded_data() -> None:
    for split in ("train", "test"):
        ds = load_dataset("digits", split)
        info = DATASETS["digits"]
        assert (ds.seq_len, ds.channels, ds.num_classes) == (
            info.seq_len,
            info.channels,
            info.num_classes,
        )
    for info in DATASETS.values():
        assert info.seq_len == info.image_size[0] * info.image_size[1]
