"""The synthetic data set: deterministic, balanced, and byte-for-byte in Kaggle's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import py7zr
import pytest
from PIL import Image

from cifar10_mlops.core.config import CLASS_NAMES, IMAGE_SHAPE, LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data import synthetic
from cifar10_mlops.data.synthetic import generate_images, write_kaggle_layout


def read_labels_csv(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_shapes_and_dtypes() -> None:
    images, labels = generate_images(25, seed=0)
    assert images.shape == (25, *IMAGE_SHAPE)
    assert images.dtype == np.uint8
    assert labels.shape == (25,)
    assert labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < len(CLASS_NAMES)


def test_same_seed_same_bytes_and_other_seed_differs() -> None:
    images_a, labels_a = generate_images(30, seed=3)
    images_b, labels_b = generate_images(30, seed=3)
    images_c, labels_c = generate_images(30, seed=4)
    assert images_a.tobytes() == images_b.tobytes()
    assert labels_a.tobytes() == labels_b.tobytes()
    assert images_a.tobytes() != images_c.tobytes()
    assert labels_a.tobytes() != labels_c.tobytes()


def test_image_does_not_depend_on_count() -> None:
    # A small set is a prefix of a large one, so tests on 1,000 images speak for 50,000.
    small_images, small_labels = generate_images(17, seed=5)
    large_images, large_labels = generate_images(45, seed=5)
    np.testing.assert_array_equal(small_images, large_images[:17])
    np.testing.assert_array_equal(small_labels, large_labels[:17])


@pytest.mark.parametrize("count", [1000, 1003])
def test_classes_are_balanced_within_one_image(count: int) -> None:
    _, labels = generate_images(count, seed=1)
    per_class = np.bincount(labels, minlength=len(CLASS_NAMES))
    assert per_class.min() >= count // 10
    assert per_class.max() <= count // 10 + 1
    assert per_class.sum() == count


def test_labels_are_shuffled() -> None:
    _, labels = generate_images(100, seed=2)
    assert not np.array_equal(labels, np.sort(labels))
    assert not np.array_equal(labels, np.arange(100) % 10)


def test_images_are_not_blank() -> None:
    images, _ = generate_images(20, seed=0)
    # Every image holds an object on a background plus noise: plenty of distinct values.
    assert all(len(np.unique(image.reshape(-1, 3), axis=0)) > 100 for image in images)


def test_kaggle_layout_round_trips(tmp_path: Path) -> None:
    count, seed = 23, 11
    out_dir = tmp_path / "raw"
    write_kaggle_layout(out_dir, count, seed)
    images, labels = generate_images(count, seed)

    assert sorted(p.name for p in out_dir.iterdir()) == sorted([TRAIN_ARCHIVE, LABELS_CSV])

    with py7zr.SevenZipFile(out_dir / TRAIN_ARCHIVE, mode="r") as archive:
        assert archive.getnames() == [f"train/{i}.png" for i in range(1, count + 1)]
        assert archive.testzip() is None  # every member's CRC checks out
        archive.reset()  # testzip consumed the stream; rewind before extracting
        archive.extractall(path=tmp_path / "extracted")

    for image_id in range(1, count + 1):
        with Image.open(tmp_path / "extracted" / "train" / f"{image_id}.png") as png:
            assert png.format == "PNG"
            assert png.mode == "RGB"
            assert png.size == (32, 32)
            np.testing.assert_array_equal(np.asarray(png), images[image_id - 1])

    lines = read_labels_csv(out_dir / LABELS_CSV)
    assert lines[0] == "id,label"
    assert lines[1:] == [f"{i},{CLASS_NAMES[label]}" for i, label in enumerate(labels, start=1)]


def test_labels_csv_uses_the_ten_class_names(tmp_path: Path) -> None:
    write_kaggle_layout(tmp_path, 40, seed=0)
    rows = [line.split(",") for line in read_labels_csv(tmp_path / LABELS_CSV)[1:]]
    assert [int(image_id) for image_id, _ in rows] == list(range(1, 41))
    assert {name for _, name in rows} == set(CLASS_NAMES)


def test_archive_is_byte_identical_for_same_seed(tmp_path: Path) -> None:
    # No wall-clock timestamps inside: DVC sees the same output hash on every rerun.
    write_kaggle_layout(tmp_path / "a", 12, seed=9)
    write_kaggle_layout(tmp_path / "b", 12, seed=9)
    write_kaggle_layout(tmp_path / "c", 12, seed=10)
    for name in (TRAIN_ARCHIVE, LABELS_CSV):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / TRAIN_ARCHIVE).read_bytes() != (
        tmp_path / "c" / TRAIN_ARCHIVE
    ).read_bytes()


def test_rewrite_replaces_files_and_leaves_no_temp_files(tmp_path: Path) -> None:
    write_kaggle_layout(tmp_path, 15, seed=0)
    write_kaggle_layout(tmp_path, 8, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([TRAIN_ARCHIVE, LABELS_CSV])
    assert len(read_labels_csv(tmp_path / LABELS_CSV)) == 1 + 8
    with py7zr.SevenZipFile(tmp_path / TRAIN_ARCHIVE, mode="r") as archive:
        assert len(archive.getnames()) == 8


def test_crash_mid_write_keeps_old_files_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_kaggle_layout(tmp_path, 10, seed=0)
    before = {name: (tmp_path / name).read_bytes() for name in (TRAIN_ARCHIVE, LABELS_CSV)}

    real_encode = synthetic.encode_png
    calls = 0

    def encode_then_crash(image: np.ndarray) -> bytes:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise RuntimeError("simulated crash")
        return real_encode(image)

    monkeypatch.setattr(synthetic, "encode_png", encode_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_kaggle_layout(tmp_path, 20, seed=1)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    for name, content in before.items():
        assert (tmp_path / name).read_bytes() == content


@pytest.mark.parametrize(("count", "seed"), [(0, 0), (-5, 0), (10, -1), (2.5, 0), (True, 0)])
def test_bad_arguments_raise_pipeline_error(tmp_path: Path, count, seed) -> None:
    with pytest.raises(PipelineError):
        generate_images(count, seed)
    with pytest.raises(PipelineError):
        write_kaggle_layout(tmp_path, count, seed)
    assert list(tmp_path.iterdir()) == []
