"""A split of an image dataset read from a folder of class subfolders of PNG / JPEG images, or
from a `.tar.gz` holding one (`<split>/<class>/<image>`), as the official files are read: uint8
pixels flattened row by row, channels last.

The classes are the dataset's own names in its label order (CIFAR-10's airplane ... truck) and
every one must have a folder. Files are taken in name order within a class, and the classes are
interleaved (the first image of each class, then the second ...), so the first n samples hold
every class equally, as the evaluation subsets of the analyses expect. A file that is not an
image, an image that does not decode and one of another size are each a `CorruptDataError`
naming the file; images in another colour mode (grey, RGBA, palette) are converted.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


class ImageFolderError(ValueError):
    """A folder of images that cannot be read as the dataset: named, with the file at fault."""


def find_image_split(directory: Path, split: str) -> Path | None:
    """`directory/<split>/` holding class folders, or `directory/<split>.tar.gz`; None if
    neither is there."""
    folder, archive = directory / split, directory / f"{split}.tar.gz"
    if folder.is_dir() and any(p.is_dir() for p in folder.iterdir()):
        return folder
    return archive if archive.is_file() else None


def read_image_split(
    source: Path, split: str, classes: Sequence[str], size: tuple[int, int], channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, H*W, C) uint8, labels (N,) int64) of the images under `source`: a folder of
    class subfolders, or a `.tar.gz` whose members are `<split>/<class>/<file>`."""
    files = _tar_members(source, split) if source.is_file() else _folder_files(source)
    by_class: dict[str, list[tuple[str, bytes]]] = {}
    for cls, name, data in files:
        by_class.setdefault(cls, []).append((name, data))
    missing = [c for c in classes if c not in by_class]
    if missing:
        raise ImageFolderError(f"{source}: no folder for class(es) {', '.join(missing)}")
    extra = sorted(set(by_class) - set(classes))
    if extra:
        raise ImageFolderError(f"{source}: folders {', '.join(extra)} are not classes of the "
                               f"dataset ({', '.join(classes)})")  # fmt: skip
    columns = [sorted(by_class[c]) for c in classes]
    order = [(label, i) for i in range(max(map(len, columns))) for label in range(len(classes))]
    order = [(label, i) for label, i in order if i < len(columns[label])]
    pixels = np.stack([
        _decode(columns[label][i], source, size, channels) for label, i in order
    ])  # fmt: skip
    labels = np.array([label for label, _ in order], dtype=np.int64)
    return pixels, labels


def _decode(item: tuple[str, bytes], source: Path, size: tuple[int, int], channels: int):
    from PIL import Image, UnidentifiedImageError

    name, data = item
    where = f"{source}:{name}" if source.is_file() else name
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageFolderError(f"{where}: not a readable image ({err})") from None
    if pixels.shape[:2] != size:
        raise ImageFolderError(f"{where}: {pixels.shape[1]}x{pixels.shape[0]} pixels, "
                               f"the dataset's images are {size[1]}x{size[0]}")  # fmt: skip
    return pixels.reshape(size[0] * size[1], channels)


def _folder_files(folder: Path) -> Iterator[tuple[str, str, bytes]]:
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(class_dir.iterdir()):
            if path.name.startswith("."):
                continue
            _check_suffix(str(path))
            yield class_dir.name, str(path), path.read_bytes()


def _tar_members(archive: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) != 3 or parts[0] != split:
                    continue  # folders, links and anything outside <split>/<class>/ are skipped
                if parts[2].startswith("."):
                    continue
                _check_suffix(f"{archive}:{member.name}")
                f = tar.extractfile(member)
                if f is not None:
                    yield parts[1], member.name, f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ImageFolderError(f"{archive}: broken tar.gz archive ({err})") from None


def _check_suffix(where: str) -> None:
    if not where.lower().endswith(IMAGE_SUFFIXES):
        raise ImageFolderError(f"{where}: not a PNG or JPEG image (a class folder holds images)")
