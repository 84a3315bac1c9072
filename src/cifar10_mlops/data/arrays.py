"""Labelled images as uint8 arrays, and the npz files the preprocess stage writes.

The arrays stay uint8 (N, 32, 32, 3): 150 MB for the full 50,000 images. Normalisation and
resizing happen inside the model, so no float32 or resized copy of the data set ever exists.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from cifar10_mlops.core.atomic import atomic_path, disk_full_as_error
from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.core.errors import PipelineError


@dataclass(frozen=True)
class LabelledImages:
    images: np.ndarray  # uint8 (N, 32, 32, 3)
    labels: np.ndarray  # int64 (N,), index into class_names
    ids: np.ndarray  # int64 (N,), the Kaggle image ids
    class_names: tuple[str, ...] = CLASS_NAMES


def subset(data: LabelledImages, index: np.ndarray) -> LabelledImages:
    """The rows `index` of `data`, copied out."""
    return LabelledImages(
        images=data.images[index],
        labels=data.labels[index],
        ids=data.ids[index],
        class_names=data.class_names,
    )


@dataclass(frozen=True)
class Rows:
    """The rows `index` of `data`, in that order, not copied out yet (index None: every row).

    save_split and save_npz gather them a chunk at a time straight into the npz, so writing a
    split never holds a second copy of the pixels (146 MiB for 50,000 images)."""

    data: LabelledImages
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.data.labels) if self.index is None else len(self.index)

    def materialise(self) -> LabelledImages:
        return self.data if self.index is None else subset(self.data, self.index)


def save_npz(data: LabelledImages | Rows, path: Path) -> None:
    with atomic_path(path) as tmp:
        _write_npz(_as_rows(data), tmp)


def save_split(
    train: LabelledImages | Rows, test: LabelledImages | Rows, train_path: Path, test_path: Path
) -> None:
    """Both files or neither: a failure while writing the second must not pair a new
    train.npz with the old test.npz."""
    with atomic_path(train_path) as train_tmp, atomic_path(test_path) as test_tmp:
        # Translated here, so a full disk names the file being written, not the inner one.
        with disk_full_as_error(train_path):
            _write_npz(_as_rows(train), train_tmp)
        with disk_full_as_error(test_path):
            _write_npz(_as_rows(test), test_tmp)


def _as_rows(data: LabelledImages | Rows) -> Rows:
    return data if isinstance(data, Rows) else Rows(data)


# Rows gathered per write: 2,048 images are 6 MiB.
_CHUNK_ROWS = 2048


def _write_npz(rows: Rows, path: Path) -> None:
    """Uncompressed npz (PNG-like pixels barely compress, and loading stays a memcpy).

    What np.savez(path, images=, labels=, ids=, class_names=) writes for the gathered rows,
    member for member and byte for byte (same names, npy headers and data), but each member
    is written from the full array `_CHUNK_ROWS` rows at a time, never as a whole copy."""
    data = rows.data
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as npz:
        for name, array in (("images", data.images), ("labels", data.labels), ("ids", data.ids)):
            # force_zip64 as np.savez does (numpy gh-10776): the size is not known up front.
            with npz.open(f"{name}.npy", "w", force_zip64=True) as member:
                _write_npy_rows(member, array, rows.index)
        with npz.open("class_names.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.array(data.class_names), allow_pickle=False)


def _write_npy_rows(member: IO[bytes], array: np.ndarray, index: np.ndarray | None) -> None:
    """The .npy of array[index] (array if index is None), a chunk of rows at a time."""
    count = len(array) if index is None else len(index)
    header = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": False,
        "shape": (count, *array.shape[1:]),
    }
    np.lib.format.write_array_header_1_0(member, header)
    for start in range(0, count, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, count)
        chunk = array[start:stop] if index is None else array.take(index[start:stop], axis=0)
        member.write(np.ascontiguousarray(chunk).data.cast("B"))


def load_npz(path: Path) -> LabelledImages:
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("not an npz archive")
        with npz:
            return LabelledImages(
                images=npz["images"],
                labels=npz["labels"],
                ids=npz["ids"],
                class_names=tuple(str(name) for name in npz["class_names"]),
            )
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run `dvc repro` to rebuild it") from None
    # EOFError: an empty file; BadZipFile: a truncated npz; zlib.error: a corrupt member.
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise PipelineError(f"{path}: unreadable ({exc}); run `dvc repro -f preprocess`") from None
