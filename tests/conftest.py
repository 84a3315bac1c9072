"""Shared fixtures. Each one is a factory that builds REAL files (7z, zip, PNG, CSV) in tmp_path.

Data-layer fixtures (used by test_archives / test_dataset / test_acquire):
  png_bytes        -> make a PNG (bytes) from an array or a seed, in any PIL mode
  write_7z         -> write any 7z: raw members, directory and symlink entries, hostile names
  make_train_7z    -> write a Kaggle-layout train.7z from {id: image} or from raw members
  make_labels_csv  -> write a trainLabels.csv from {id: class name} or from raw text
  make_kaggle_dir  -> a directory holding a matching train.7z + trainLabels.csv
  make_kaggle_zip  -> cifar-10.zip as the Kaggle API delivers it (with test.7z and
                      sampleSubmission.csv beside the two files the pipeline needs)
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pytest

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from tests.helpers import archives
from tests.helpers.archives import default_labels, encode_png, random_image


@pytest.fixture
def png_bytes():
    """png_bytes(image_or_seed=0, mode=None) -> PNG bytes."""

    def make(image: np.ndarray | int = 0, mode: str | None = None) -> bytes:
        array = random_image(image) if isinstance(image, int) else image
        return encode_png(array, mode)

    return make


@pytest.fixture
def write_7z():
    """write_7z(path, members, *, directories=(), symlinks=None, raw_names=False) -> path."""
    return archives.write_7z


@pytest.fixture
def make_train_7z(tmp_path):
    """make_train_7z(images=None, *, path=None, members=None, ...) -> Path of a real train.7z.

    images: {id: uint8 (32,32,3) array or PNG bytes} -> members train/<id>.png plus a 'train'
        directory entry, as in Kaggle's archive. Default: ids 1..20, seeded random images.
    members: raw (name, bytes) pairs instead (for hostile or odd layouts); extra keyword
        arguments go to write_7z (directories=, symlinks=, raw_names=).
    """
    counter = iter(range(1_000_000))

    def make(
        images: Mapping[int, np.ndarray | bytes] | None = None,
        *,
        path: Path | None = None,
        members: Iterable[tuple[str, bytes]] | None = None,
        with_dir: bool = True,
        **kwargs,
    ) -> Path:
        path = path or tmp_path / f"archive{next(counter)}" / TRAIN_ARCHIVE
        if members is None:
            if images is None:
                images = {i: random_image(i) for i in range(1, 21)}
            members = [
                (f"train/{image_id}.png", data if isinstance(data, bytes) else encode_png(data))
                for image_id, data in images.items()
            ]
            if with_dir:
                kwargs.setdefault("directories", ["train"])
        return archives.write_7z(path, members, **kwargs)

    return make


@pytest.fixture
def make_labels_csv(tmp_path):
    """make_labels_csv(labels=None, *, path=None, text=None) -> Path of a trainLabels.csv.

    labels: {id: class name}; default ids 1..20 cycling through the ten classes.
    text: the exact file content instead.
    """
    counter = iter(range(1_000_000))

    def make(
        labels: Mapping[int, str] | None = None,
        *,
        path: Path | None = None,
        text: str | None = None,
    ) -> Path:
        path = path or tmp_path / f"labels{next(counter)}" / LABELS_CSV
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            if labels is None:
                labels = default_labels(20)
            text = "id,label\n" + "".join(f"{i},{name}\n" for i, name in labels.items())
        path.write_text(text, encoding="utf-8", newline="")
        return path

    return make


@pytest.fixture
def make_kaggle_dir(tmp_path, make_train_7z, make_labels_csv):
    """make_kaggle_dir(count=20, directory=None) -> (directory, {id: image}, {id: class name})."""
    counter = iter(range(1_000_000))

    def make(count: int = 20, directory: Path | None = None):
        directory = directory or tmp_path / f"kaggle{next(counter)}"
        images = {i: random_image(i) for i in range(1, count + 1)}
        labels = default_labels(count)
        make_train_7z(images, path=directory / TRAIN_ARCHIVE)
        make_labels_csv(labels, path=directory / LABELS_CSV)
        return directory, images, labels

    return make


@pytest.fixture
def make_kaggle_zip(tmp_path, make_kaggle_dir):
    """make_kaggle_zip(path=None, count=20) -> Path of a cifar-10.zip laid out like Kaggle's:
    train.7z, trainLabels.csv, test.7z and sampleSubmission.csv at the top level."""
    counter = iter(range(1_000_000))

    def make(path: Path | None = None, count: int = 20) -> Path:
        path = path or tmp_path / f"zip{next(counter)}" / "cifar-10.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        source, _, _ = make_kaggle_dir(count)
        test_7z = archives.write_7z(
            tmp_path / f"testsrc{next(counter)}" / "test.7z",
            [("test/1.png", encode_png(random_image(999)))],
        )
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            zipped.write(source / TRAIN_ARCHIVE, TRAIN_ARCHIVE)
            zipped.write(source / LABELS_CSV, LABELS_CSV)
            zipped.write(test_7z, "test.7z")
            zipped.writestr("sampleSubmission.csv", "id,label\n1,cat\n")
        return path

    return make


@pytest.fixture
def archive_server(monkeypatch):
    """A real HTTP server on 127.0.0.1 serving generated archives (tests/helpers/cifar_binary.py)."""
    from tests.helpers.cifar_binary import running_server

    # A proxy set in the environment must not intercept requests to the local server.
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with running_server() as running:
        yield running
