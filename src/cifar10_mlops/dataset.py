"""From the Kaggle layout (train.7z + trainLabels.csv) to uint8 arrays and a stratified split.

The arrays stay uint8 (N, 32, 32, 3): 150 MB for the full 50,000 images. Normalisation and
resizing happen inside the model, so no float32 or resized copy of the data set ever exists.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifar10_mlops.archives import TrainArchive, list_train_7z, open_train_7z
from cifar10_mlops.atomic import atomic_path, disk_full_as_error
from cifar10_mlops.config import CLASS_NAMES, IMAGE_SHAPE
from cifar10_mlops.errors import PipelineError


@dataclass(frozen=True)
class LabelledImages:
    images: np.ndarray  # uint8 (N, 32, 32, 3)
    labels: np.ndarray  # int64 (N,), index into class_names
    ids: np.ndarray  # int64 (N,), the Kaggle image ids
    class_names: tuple[str, ...] = CLASS_NAMES


def read_labels_csv(path: Path) -> dict[int, int]:
    """trainLabels.csv -> {image id: class index}, with every row checked."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PipelineError(f"{path}: labels file not found; it must sit beside train.7z") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not UTF-8 text; expected a CSV with header id,label") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # e.g. a field above csv's 128 KiB limit
        raise PipelineError(f"{path}: not a readable CSV ({exc}); expected id,label rows") from None
    if not rows:
        raise PipelineError(f"{path}: empty file; expected a CSV with header id,label")
    header = [cell.strip() for cell in rows[0]]
    if header != ["id", "label"]:
        raise PipelineError(f"{path}: header is {','.join(header)!r}; expected 'id,label'")
    class_index = {name: index for index, name in enumerate(CLASS_NAMES)}
    labels: dict[int, int] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise PipelineError(f"{path}: line {line_number} has {len(row)} fields; expected id,label")
        raw_id, name = row[0].strip(), row[1].strip()
        # isascii: str.isdigit() also accepts digits such as '²' that int() refuses.
        if not (raw_id.isascii() and raw_id.isdigit()) or int(raw_id) < 1:
            raise PipelineError(f"{path}: line {line_number}: id {raw_id!r} is not a positive integer")
        if name not in class_index:
            raise PipelineError(
                f"{path}: line {line_number}: unknown class name {name!r}; "
                f"expected one of {', '.join(CLASS_NAMES)}"
            )
        image_id = int(raw_id)
        if image_id in labels:
            raise PipelineError(f"{path}: line {line_number}: duplicate id {image_id}; keep one row per image")
        labels[image_id] = class_index[name]
    if not labels:
        raise PipelineError(f"{path}: has a header but no label rows")
    return labels


def decode_png(png: bytes, where: str) -> np.ndarray:
    """One member's bytes -> uint8 (32, 32, 3). Opened as PNG only; 32x32 only.

    What counts as a CIFAR-10 picture (README "Image modes"):
    - 8-bit RGB: as is.
    - grayscale (L, 1-bit) and palette (P): expanded to the RGB colours a viewer shows.
    - 16-bit grayscale: the high byte of each value (convert() would clip it to white).
    - with an alpha channel (RGBA, LA, palette transparency): only if every pixel is opaque,
      then alpha is dropped. A transparent pixel has no defined colour, and compositing it
      onto an invented background would feed the model pixels nobody photographed.
    """
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            image.load()
            if image.size != IMAGE_SHAPE[:2]:
                raise PipelineError(
                    f"{where}: image is {image.size[0]}x{image.size[1]}; CIFAR-10 images are "
                    "32x32, resize it or remove it"
                )
            if image.mode == "RGB":  # the usual case, 50,000 times: no converted copy
                return np.asarray(image)
            return _to_rgb(image, where)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise PipelineError(f"{where}: not a readable PNG image; replace or remove it") from None


def _to_rgb(image: Image.Image, where: str) -> np.ndarray:
    if image.mode == "I" or image.mode.startswith("I;16"):
        high = np.asarray(image).astype(np.int64) >> 8
        image = Image.fromarray(np.clip(high, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise PipelineError(
                f"{where}: image has transparent pixels (mode {image.mode}); CIFAR-10 images "
                "are opaque RGB, flatten it onto a background or remove it"
            )
    if image.mode not in ("RGB", "RGBA", "L", "LA", "1", "P", "PA"):
        raise PipelineError(
            f"{where}: image mode {image.mode} is not 8-bit RGB, grayscale or palette; "
            "convert it to RGB or remove it"
        )
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def check_kaggle_files(archive: Path, labels_csv: Path) -> tuple[dict[int, str], dict[int, int]]:
    """The checks that need no decompression: archive member names, the labels file, and
    that every image has exactly one label row. Returns ({id: member}, {id: class index})."""
    labels_by_id = read_labels_csv(labels_csv)
    members = list_train_7z(archive)
    _check_labels_match(archive, labels_csv, members, labels_by_id)
    return members, labels_by_id


def _check_labels_match(
    archive: Path, labels_csv: Path, members: dict[int, str], labels_by_id: dict[int, int]
) -> None:
    unlabelled = sorted(set(members) - set(labels_by_id))
    if unlabelled:
        raise PipelineError(
            f"{labels_csv}: no label row for image 'train/{unlabelled[0]}.png' "
            f"({len(unlabelled)} unlabelled); add the rows or remove the images"
        )
    missing = sorted(set(labels_by_id) - set(members))
    if missing:
        raise PipelineError(
            f"{archive}: no image 'train/{missing[0]}.png' for the label row with id {missing[0]} "
            f"({len(missing)} missing); the archive is incomplete"
        )


def load_kaggle_layout(archive: Path, labels_csv: Path) -> LabelledImages:
    """Check names against labels first (cheap, before any decompression), then decode each
    PNG straight into its row of one preallocated uint8 array."""
    labels_by_id = read_labels_csv(labels_csv)
    with open_train_7z(archive) as train_7z:
        _check_labels_match(archive, labels_csv, train_7z.members, labels_by_id)
        ids = np.array(sorted(train_7z.members), dtype=np.int64)
        images = _decode_members(train_7z, ids)
    labels = np.array([labels_by_id[int(i)] for i in ids], dtype=np.int64)
    return LabelledImages(images=images, labels=labels, ids=ids)


def _decode_members(train_7z: TrainArchive, ids: np.ndarray) -> np.ndarray:
    """Every member decoded into its row (the order of `ids`) of one uint8 array."""
    row_of = {int(image_id): row for row, image_id in enumerate(ids)}
    images = np.empty((len(ids), *IMAGE_SHAPE), dtype=np.uint8)
    seen = np.zeros(len(ids), dtype=bool)
    where = f"{train_7z.path}: member 'train/"

    def on_member(image_id: int, png: bytes) -> None:
        row = row_of[image_id]
        images[row] = decode_png(png, f"{where}{image_id}.png'")
        seen[row] = True

    train_7z.read(on_member)
    if not seen.all():  # the archive listed a member that extraction never produced
        lost = int(ids[np.argmin(seen)])
        raise PipelineError(
            f"{train_7z.path}: member 'train/{lost}.png' could not be extracted; download it again"
        )
    return images


def stratified_split(
    data: LabelledImages, test_size: float, seed: int, key: str = "split.test_size"
) -> tuple[LabelledImages, LabelledImages]:
    """Seeded, stratified split: each class keeps its share in both halves."""
    train_index, test_index = split_indices(data, test_size, seed, key)
    return _subset(data, train_index), _subset(data, test_index)


def split_indices(
    data: LabelledImages, test_size: float, seed: int, key: str = "split.test_size"
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `data` in the train and the test half of stratified_split, each sorted."""
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    present = np.flatnonzero(counts)
    smallest = int(present[counts[present].argmin()])
    n_test = int(np.ceil(test_size * len(data.labels)))
    n_train = len(data.labels) - n_test
    # A stratified split needs two images per class and at least one per class on each side.
    if counts[smallest] < 2 or min(n_test, n_train) < len(present):
        raise PipelineError(
            f"{key}={test_size}: class '{data.class_names[smallest]}' has "
            f"{counts[smallest]} image(s) of {len(data.labels)}, too few for a stratified split; "
            f"add images or change {key}"
        )
    return _stratified_indices(data.labels, n_train, n_test, seed)


def _stratified_indices(
    labels: np.ndarray, n_train: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rows that sklearn's train_test_split(np.arange(len(labels)), test_size=n_test,
    random_state=seed, stratify=labels) puts in train and in test, each sorted.

    StratifiedShuffleSplit._iter_indices (scikit-learn 1.9, BSD-3-Clause) step for step: the
    same RandomState draws in the same order, so the split is the one sklearn has always made
    here. Not imported because `sklearn.model_selection` alone costs ~130 MiB of RSS, next to
    the 146 MiB of pixels. tests/test_dataset_split.py compares the two on many inputs.
    sklearn's last step, a shuffle of each half, is left out: both halves are sorted anyway.
    """
    rng = np.random.RandomState(seed)
    _, class_of_row, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    # The rows of each class, in row order.
    class_rows = np.split(np.argsort(class_of_row, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for i in range(len(class_counts)):
        shuffled = class_rows[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.append(shuffled[: n_i[i]])
        test.append(shuffled[n_i[i] : n_i[i] + t_i[i]])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """sklearn.utils.extmath._approximate_mode (scikit-learn 1.9, BSD-3-Clause), unchanged:
    how many of `n_draws` each class gets, proportional to `class_counts`; the rounding
    remainders go to the largest fractions, ties broken by `rng`."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        values = np.sort(np.unique(remainder))[::-1]
        for value in values:
            (inds,) = np.where(remainder == value)
            # Drawn even when every tie is taken: the draw moves rng on, as in sklearn.
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _subset(data: LabelledImages, index: np.ndarray) -> LabelledImages:
    return LabelledImages(
        images=data.images[index], labels=data.labels[index], ids=data.ids[index],
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
        return self.data if self.index is None else _subset(self.data, self.index)


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
        member.write(memoryview(np.ascontiguousarray(chunk)).cast("B"))


def load_npz(path: Path) -> LabelledImages:
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("not an npz archive")
        with npz:
            return LabelledImages(
                images=npz["images"], labels=npz["labels"], ids=npz["ids"],
                class_names=tuple(str(name) for name in npz["class_names"]),
            )
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run `dvc repro` to rebuild it") from None
    # EOFError: an empty file; BadZipFile: a truncated npz; zlib.error: a corrupt member.
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise PipelineError(f"{path}: unreadable ({exc}); run `dvc repro -f preprocess`") from None
