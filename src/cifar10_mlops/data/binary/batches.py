"""The official CIFAR-10 binary batches (cifar-10-batches-bin/*.bin) -> labelled uint8 arrays.

Layout: cifar-10-batches-bin/data_batch_1.bin .. data_batch_5.bin, test_batch.bin,
batches.meta.txt and readme.html. A batch is a run of 3073-byte records: one label byte
(0-9), then the 32x32 red, green and blue planes, each row-major. A full batch holds 10,000
records; smaller batches (and fewer data batches) are accepted, for tests and subsets.
Batches are read with numpy; nothing is ever unpickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cifar10_mlops.core.config import CLASS_NAMES, IMAGE_SHAPE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.data.split import stratified_split

ARCHIVE_NAME = "cifar-10-binary.tar.gz"
BATCHES_DIR = "cifar-10-batches-bin"
RECORD_BYTES = 1 + 32 * 32 * 3
FULL_BATCH_BYTES = 10_000 * RECORD_BYTES
DATA_BATCHES = tuple(f"data_batch_{number}.bin" for number in range(1, 6))
TEST_BATCH = "test_batch.bin"


def is_whole_records(size: int) -> bool:
    return size > 0 and size % RECORD_BYTES == 0


def load_binary_batches(
    directory: Path, official_test: bool, test_size: float, seed: int
) -> tuple[LabelledImages, LabelledImages]:
    """(train, test) from a cifar-10-batches-bin directory.

    official_test: train on every data batch, test on test_batch.bin. Otherwise the data
    batches are split (stratified, seeded by test_size and seed) and test_batch.bin is unused.
    Ids run 1..N over data_batch_1..5 in order; test_batch ids continue after them.
    """
    directory = Path(directory)
    training = read_batches(data_batch_files(directory))
    if not official_test:
        return stratified_split(training, test_size, seed)
    test_file = directory / TEST_BATCH
    if not test_file.is_file():
        raise PipelineError(
            f"{test_file}: not found, but split.official_test is true; use the complete "
            "cifar-10-binary.tar.gz (it holds test_batch.bin), or set split.official_test: false"
        )
    return training, read_batches([test_file], first_id=len(training.ids) + 1)


def data_batch_files(directory: Path) -> list[Path]:
    """The data_batch_N.bin files present, in order; at least one."""
    files = [directory / name for name in DATA_BATCHES if (directory / name).is_file()]
    if not files:
        raise PipelineError(
            f"{directory}: holds no data_batch_1..5.bin; run the download stage again "
            "(dvc repro download)"
        )
    return files


def check_binary_batches(directory: Path) -> None:
    """Read every batch once (sizes and label bytes) without keeping the pixels: the download
    stage fails on a bad batch instead of handing it to preprocess."""
    directory = Path(directory)
    files = data_batch_files(directory)
    if (directory / TEST_BATCH).is_file():
        files.append(directory / TEST_BATCH)
    for path in files:
        records = _read_records(path)
        _check_labels(path, records[:, 0])


def read_batches(files: list[Path], first_id: int = 1) -> LabelledImages:
    """Concatenate batch files into uint8 (N, 32, 32, 3) images, labels and ids.

    The output arrays are allocated once; each file is read, converted into its slice and
    dropped, so the peak is the output plus one batch file (30 MB).
    """
    counts = [_record_count(path) for path in files]
    total = sum(counts)
    images = np.empty((total, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    row = 0
    for path, count in zip(files, counts, strict=True):
        records = _read_records(path, count)
        labels[row : row + count] = _check_labels(path, records[:, 0])
        # Each record's pixels are three planes (R, G, B) of 32x32: (N, 3, 32, 32) -> (N, 32, 32, 3).
        images[row : row + count] = records[:, 1:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
        row += count
    ids = np.arange(first_id, first_id + total, dtype=np.int64)
    return LabelledImages(images=images, labels=labels, ids=ids)


def _record_count(path: Path) -> int:
    size = path.stat().st_size
    if not is_whole_records(size) or size > FULL_BATCH_BYTES:
        raise PipelineError(
            f"{path}: {size} bytes is not a whole number of {RECORD_BYTES}-byte records (at most "
            f"{FULL_BATCH_BYTES} bytes); the batch is truncated or not a CIFAR-10 binary batch, "
            "download it again"
        )
    return size // RECORD_BYTES


def _read_records(path: Path, count: int | None = None) -> np.ndarray:
    count = _record_count(path) if count is None else count
    data = np.fromfile(path, dtype=np.uint8)
    if data.size != count * RECORD_BYTES:  # changed while we read it
        raise PipelineError(f"{path}: the file changed while it was read; run the stage again")
    return data.reshape(count, RECORD_BYTES)


def _check_labels(path: Path, label_bytes: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(label_bytes >= len(CLASS_NAMES))
    if bad.size:
        index = int(bad[0])
        raise PipelineError(
            f"{path}: record {index} (byte offset {index * RECORD_BYTES}) has label "
            f"{int(label_bytes[index])}; CIFAR-10 labels are 0-9, the batch is corrupt, "
            "download it again"
        )
    return label_bytes
