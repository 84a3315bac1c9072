"""What data/raw holds, and how each layout becomes the (train, test) split.

Two layouts reach data/raw:
- Kaggle: train.7z + trainLabels.csv (data.source synthetic, kaggle, or local Kaggle files);
- binary: cifar-10-batches-bin/*.bin (data.source cifar10, or a local cifar-10-binary.tar.gz).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import SplitParams
from cifar10_mlops.data.arrays import LabelledImages, Rows
from cifar10_mlops.data.binary.batches import (
    BATCHES_DIR,
    check_binary_batches,
    data_batch_files,
    load_binary_batches,
    read_batches,
)
from cifar10_mlops.data.kaggle.layout import check_kaggle_files, load_kaggle_layout
from cifar10_mlops.data.split import split_indices

Layout = Literal["kaggle", "binary"]


def detect_layout(raw_dir: Path) -> Layout:
    raw_dir = Path(raw_dir)
    # Either Kaggle file alone still counts, so the error names the one that is missing.
    if (raw_dir / TRAIN_ARCHIVE).exists() or (raw_dir / LABELS_CSV).exists():
        return "kaggle"
    if (raw_dir / BATCHES_DIR).is_dir():
        return "binary"
    raise PipelineError(
        f"{raw_dir}: holds neither {TRAIN_ARCHIVE} + {LABELS_CSV} nor {BATCHES_DIR}/; "
        "run the download stage first (dvc repro download)"
    )


def check_layout(raw_dir: Path) -> None:
    """Cheap checks of whichever layout raw_dir holds (the download stage runs them)."""
    if detect_layout(raw_dir) == "binary":
        check_binary_batches(Path(raw_dir) / BATCHES_DIR)
    else:
        check_kaggle_files(Path(raw_dir) / TRAIN_ARCHIVE, Path(raw_dir) / LABELS_CSV)


def load_split(raw_dir: Path, split: SplitParams) -> tuple[LabelledImages, LabelledImages]:
    """(train, test) from raw_dir, following params.yaml's split section."""
    train, test = load_split_rows(raw_dir, split)
    return train.materialise(), test.materialise()


def load_split_rows(raw_dir: Path, split: SplitParams) -> tuple[Rows, Rows]:
    """load_split's (train, test) as rows of the images read, not yet copied out: save_split
    writes them without a second copy of the pixels (the preprocess stage's peak memory)."""
    raw_dir = Path(raw_dir)
    if detect_layout(raw_dir) == "binary":
        if split.official_test:
            train, test = load_binary_batches(
                raw_dir / BATCHES_DIR, split.official_test, split.test_size, split.seed
            )
            return Rows(train), Rows(test)
        # What load_binary_batches splits, with the split kept as indices.
        data = read_batches(data_batch_files(raw_dir / BATCHES_DIR))
    else:
        if split.official_test:
            raise PipelineError(
                f"params.yaml: split.official_test is true, but {raw_dir} holds the Kaggle files "
                f"({TRAIN_ARCHIVE} + {LABELS_CSV}), which have no labelled test set; set "
                "split.official_test: false, or use data.source: cifar10 or a local "
                "cifar-10-binary.tar.gz"
            )
        data = load_kaggle_layout(raw_dir / TRAIN_ARCHIVE, raw_dir / LABELS_CSV)
    train_index, test_index = split_indices(data, split.test_size, split.seed)
    return Rows(data, train_index), Rows(data, test_index)
