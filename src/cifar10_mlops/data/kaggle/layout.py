"""The Kaggle layout (train.7z of train/<id>.png + trainLabels.csv) -> labelled uint8 arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cifar10_mlops.core.config import IMAGE_SHAPE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.data.images import decode_png, png_header_problem
from cifar10_mlops.data.kaggle.labels_csv import read_labels_csv
from cifar10_mlops.data.kaggle.train_7z import TrainArchive, open_train_7z


def check_kaggle_files(archive: Path, labels_csv: Path) -> tuple[dict[int, str], dict[int, int]]:
    """The download stage's checks: archive member names, the labels file, that every image
    has exactly one label row (cheap, first), then every member's PNG signature and 32x32
    header (one decompression pass, no decoding), so what preprocess would refuse never
    replaces a good data/raw. Returns ({id: member}, {id: class index})."""
    labels_by_id = read_labels_csv(labels_csv)
    with open_train_7z(archive) as train_7z:
        _check_labels_match(archive, labels_csv, train_7z.members, labels_by_id)

        def check_header(image_id: int, png: bytes) -> None:
            problem = png_header_problem(png)
            if problem:
                raise PipelineError(f"{archive}: member 'train/{image_id}.png': {problem}")

        train_7z.read(check_header)
        return train_7z.members, labels_by_id


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
