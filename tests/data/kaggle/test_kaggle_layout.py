"""Labels CSV, PNG decoding, the Kaggle layout end to end, the stratified split and npz files."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter

import numpy as np
import py7zr
import pytest
from PIL import Image

from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.arrays import LabelledImages, load_npz, save_npz
from cifar10_mlops.data.images import decode_png
from cifar10_mlops.data.kaggle.labels_csv import read_labels_csv
from cifar10_mlops.data.kaggle.layout import load_kaggle_layout
from cifar10_mlops.data.split import stratified_split
from cifar10_mlops.data.synthetic import write_kaggle_layout


def random_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


# --- read_labels_csv ------------------------------------------------------------------------


def test_labels_csv_happy_path(make_labels_csv):
    path = make_labels_csv(text="id,label\n1,frog\n2,truck\n10,airplane\n3,automobile\n")
    assert read_labels_csv(path) == {1: 6, 2: 9, 10: 0, 3: 1}


def test_labels_csv_tolerates_bom_crlf_spaces_and_blank_lines(make_labels_csv):
    path = make_labels_csv(text="\ufeffid, label\r\n 1 , cat \r\n\r\n2,dog\r\n")
    assert read_labels_csv(path) == {1: 3, 2: 5}


def test_labels_csv_every_class_name(make_labels_csv):
    labels = {i + 1: name for i, name in enumerate(CLASS_NAMES)}
    assert read_labels_csv(make_labels_csv(labels)) == {i + 1: i for i in range(10)}


def test_labels_csv_missing_file(tmp_path):
    path = tmp_path / "trainLabels.csv"
    with pytest.raises(PipelineError) as info:
        read_labels_csv(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "empty file"),
        ("id,label\n", "has a header but no label rows"),
        ("id,label\n\n\n", "has a header but no label rows"),
        ("image,class\n1,cat\n", "header is 'image,class'"),
        ("1,cat\n2,dog\n", "header is '1,cat'"),
        ("id,label,extra\n1,cat,x\n", "header is 'id,label,extra'"),
        ("id,label\n1,kitten\n", "line 2: unknown class name 'kitten'"),
        ("id,label\n1,Cat\n", "line 2: unknown class name 'Cat'"),
        ("id,label\n1,cat\n2,dog\n1,frog\n", "line 4: duplicate id 1"),
        ("id,label\n1,cat\n01,dog\n", "line 3: duplicate id 1"),
        ("id,label\nabc,cat\n", "line 2: id 'abc' is not a positive integer"),
        ("id,label\n1.0,cat\n", "line 2: id '1.0' is not a positive integer"),
        ("id,label\n-3,cat\n", "line 2: id '-3' is not a positive integer"),
        ("id,label\n0,cat\n", "line 2: id '0' is not a positive integer"),
        ("id,label\n\u00b2,cat\n", "line 2: id '\u00b2' is not a positive integer"),
        ("id,label\n,cat\n", "line 2: id '' is not a positive integer"),
        ("id,label\n1,cat,extra\n", "line 2 has 3 fields"),
        ("id,label\n1\n", "line 2 has 1 fields"),
        ("id,label\n1,cat\n2;dog\n", "line 3 has 1 fields"),
        ("id,label\n1," + "a" * 200_000 + "\n", "not a readable CSV"),
        # int() refuses over 4,300 digits (ValueError); ids are at most 9 digits, as train/<id>.png
        ("id,label\n" + "1" * 5000 + ",cat\n", f"line 2: id '{'1' * 100}'... (5000 characters"),
        ("id,label\n1234567890,cat\n", "id '1234567890' is not a positive integer of at most 9"),
        # a long class name is quoted as a short prefix
        ("id,label\n1," + "k" * 100_000 + "\n", f"unknown class name '{'k' * 100}'... (100000"),
    ],
)
def test_labels_csv_errors(make_labels_csv, text, expected):
    path = make_labels_csv(text=text)
    with pytest.raises(PipelineError) as info:
        read_labels_csv(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message


def test_labels_csv_not_utf8(tmp_path):
    path = tmp_path / "trainLabels.csv"
    path.write_bytes(b"id,label\n1,caf\xe9\n")
    with pytest.raises(PipelineError, match="not UTF-8"):
        read_labels_csv(path)


# --- decode_png -----------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_decode_rgb_png_is_exact():
    array = random_image(3)
    decoded = decode_png(encode(Image.fromarray(array)), "where")
    assert decoded.dtype == np.uint8
    assert decoded.shape == (32, 32, 3)
    np.testing.assert_array_equal(decoded, array)


def test_decode_grayscale_becomes_rgb_with_equal_channels():
    gray = random_image(4)[..., 0]
    decoded = decode_png(encode(Image.fromarray(gray, mode="L")), "w")
    assert decoded.shape == (32, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray)


def test_decode_16bit_grayscale_keeps_the_high_byte():
    # Behaviour: 16-bit grayscale is scaled to 8 bits (value >> 8), not clipped to white.
    gray8 = random_image(5)[..., 0]
    gray16 = gray8.astype(np.uint16) * 257  # 8-bit value v -> 16-bit v*257 (0x vv vv)
    png = encode(Image.fromarray(gray16))
    assert Image.open(io.BytesIO(png)).mode.startswith("I")
    decoded = decode_png(png, "w")
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray8)


def test_decode_palette_becomes_its_rgb_colours():
    array = random_image(6)
    palette_image = Image.fromarray(array).quantize(colors=16)
    expected = np.asarray(palette_image.convert("RGB"))
    decoded = decode_png(encode(palette_image), "w")
    assert palette_image.mode == "P"
    np.testing.assert_array_equal(decoded, expected)


def test_decode_opaque_rgba_drops_alpha():
    rgba = np.dstack([random_image(7), np.full((32, 32), 255, dtype=np.uint8)])
    decoded = decode_png(encode(Image.fromarray(rgba, mode="RGBA")), "w")
    np.testing.assert_array_equal(decoded, rgba[..., :3])


def _translucent_rgba() -> Image.Image:
    alpha = np.full((32, 32), 255, dtype=np.uint8)
    alpha[3, 4] = 10
    return Image.fromarray(np.dstack([random_image(7), alpha]), mode="RGBA")


def _palette_with_transparent_entry() -> Image.Image:
    image = Image.fromarray(random_image(8)).quantize(colors=8)
    image.info["transparency"] = int(np.asarray(image)[0, 0])
    return image


@pytest.mark.parametrize(
    "make_image, mode",
    [
        (_translucent_rgba, "RGBA"),
        (lambda: _translucent_rgba().convert("LA"), "LA"),
        (_palette_with_transparent_entry, "RGBA"),
    ],
    ids=["rgba", "la", "palette-trns"],
)
def test_decode_transparent_pixels_are_refused(make_image, mode):
    with pytest.raises(PipelineError) as info:
        decode_png(encode(make_image()), "arch.7z: member 'train/3.png'")
    assert str(info.value) == (
        f"arch.7z: member 'train/3.png': image has transparent pixels (mode {mode}); CIFAR-10 "
        "images are opaque RGB, flatten it onto a background or remove it"
    )


@pytest.mark.parametrize("size", [(31, 32), (32, 31), (64, 64), (1, 1)])
def test_decode_wrong_size_is_refused(size):
    image = Image.new("RGB", size, (1, 2, 3))
    with pytest.raises(PipelineError) as info:
        decode_png(encode(image), "arch.7z: member 'train/5.png'")
    message = str(info.value)
    assert message.startswith("arch.7z: member 'train/5.png'")
    assert f"{size[0]}x{size[1]}" in message


@pytest.mark.parametrize(
    "make_bytes",
    [
        lambda: encode(Image.fromarray(random_image(1)), "JPEG"),
        lambda: encode(Image.fromarray(random_image(1)), "BMP"),
        lambda: encode(Image.fromarray(random_image(1)), "GIF"),
        lambda: os.urandom(2000),
        lambda: b"",
        lambda: encode(Image.fromarray(random_image(1)))[:200],  # truncated PNG
    ],
    ids=["jpeg", "bmp", "gif", "random", "empty", "truncated-png"],
)
def test_decode_non_png_is_refused(make_bytes):
    with pytest.raises(PipelineError) as info:
        decode_png(make_bytes(), "arch.7z: member 'train/9.png'")
    message = str(info.value)
    assert message.startswith("arch.7z: member 'train/9.png'")
    assert "not a readable PNG" in message


# --- load_kaggle_layout ---------------------------------------------------------------------


def test_load_kaggle_layout_end_to_end(make_kaggle_dir):
    directory, images, labels = make_kaggle_dir(25)
    data = load_kaggle_layout(directory / "train.7z", directory / "trainLabels.csv")
    assert data.images.dtype == np.uint8
    assert data.images.shape == (25, 32, 32, 3)
    assert data.labels.dtype == np.int64
    assert data.ids.tolist() == list(range(1, 26))
    assert data.class_names == CLASS_NAMES
    for row, image_id in enumerate(data.ids):
        np.testing.assert_array_equal(data.images[row], images[int(image_id)])
        assert CLASS_NAMES[data.labels[row]] == labels[int(image_id)]


def test_load_kaggle_layout_sorts_by_id(make_train_7z, make_labels_csv):
    images = {i: random_image(i) for i in (12, 3, 7)}
    archive = make_train_7z(images)
    csv = make_labels_csv({7: "cat", 12: "dog", 3: "ship"})
    data = load_kaggle_layout(archive, csv)
    assert data.ids.tolist() == [3, 7, 12]
    assert [CLASS_NAMES[i] for i in data.labels] == ["ship", "cat", "dog"]
    np.testing.assert_array_equal(data.images[2], images[12])


@pytest.mark.parametrize(
    ("image_ids", "label_rows", "named_file", "expected"),
    [
        # image 3 has no label row: the labels file is named
        (
            range(1, 6),
            {1: "cat", 2: "dog", 4: "cat", 5: "dog"},
            "csv",
            "no label row for image 'train/3.png'",
        ),
        # label row 9 has no image: the archive is named
        (
            range(1, 4),
            {1: "cat", 2: "dog", 3: "cat", 9: "frog"},
            "archive",
            "no image 'train/9.png'",
        ),
    ],
    ids=["image-without-label", "label-without-image"],
)
def test_load_kaggle_layout_images_and_labels_must_match(
    make_train_7z, make_labels_csv, image_ids, label_rows, named_file, expected
):
    archive = make_train_7z({i: random_image(i) for i in image_ids})
    csv = make_labels_csv(label_rows)
    with pytest.raises(PipelineError) as info:
        load_kaggle_layout(archive, csv)
    message = str(info.value)
    assert message.startswith(str({"csv": csv, "archive": archive}[named_file]))
    assert expected in message


def test_load_kaggle_layout_bad_png_names_the_member(make_train_7z, make_labels_csv, png_bytes):
    archive = make_train_7z({1: png_bytes(1), 2: b"\x89PNG not really"})
    csv = make_labels_csv({1: "cat", 2: "dog"})
    with pytest.raises(PipelineError) as info:
        load_kaggle_layout(archive, csv)
    assert f"{archive}: member 'train/2.png'" in str(info.value)


def test_load_kaggle_layout_matches_plain_py7zr_extraction(tmp_path):
    # The threaded in-memory reader against the obvious way: py7zr's own extractall to
    # disk, then PIL file by file. Same images, labels and ids, bit for bit.
    write_kaggle_layout(tmp_path / "raw", 300, seed=5)
    data = load_kaggle_layout(tmp_path / "raw" / "train.7z", tmp_path / "raw" / "trainLabels.csv")

    with py7zr.SevenZipFile(tmp_path / "raw" / "train.7z") as seven:
        seven.extractall(tmp_path / "plain")
    ids = sorted(int(p.stem) for p in (tmp_path / "plain" / "train").iterdir())
    images = np.stack(
        [np.asarray(Image.open(tmp_path / "plain" / "train" / f"{i}.png")) for i in ids]
    )
    with open(tmp_path / "raw" / "trainLabels.csv", newline="") as file:
        label_of = {int(row["id"]): CLASS_NAMES.index(row["label"]) for row in csv.DictReader(file)}
    assert data.ids.tolist() == ids
    assert data.labels.tolist() == [label_of[i] for i in ids]
    assert data.images.dtype == np.uint8 and data.images.shape == (300, 32, 32, 3)
    np.testing.assert_array_equal(data.images, images)


# --- stratified_split -----------------------------------------------------------------------


def make_data(counts: dict[int, int]) -> LabelledImages:
    """counts: {class index: how many}; ids 1..N, labels interleaved, image i filled with i."""
    labels = np.array([c for c, n in counts.items() for _ in range(n)], dtype=np.int64)
    labels = labels[np.random.default_rng(0).permutation(len(labels))]
    ids = np.arange(1, len(labels) + 1, dtype=np.int64)
    images = np.zeros((len(labels), 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = ids % 256
    images[:, 0, 0, 1] = ids // 256
    return LabelledImages(images=images, labels=labels, ids=ids)


def test_split_sizes_and_disjoint_ids():
    data = make_data({c: 20 + c for c in range(10)})  # 245 images, unequal classes
    train, test = stratified_split(data, 0.2, seed=1)
    n = len(data.labels)
    assert len(test.labels) == int(np.ceil(0.2 * n))
    assert len(train.labels) + len(test.labels) == n
    assert set(train.ids).isdisjoint(test.ids)
    assert set(train.ids) | set(test.ids) == set(data.ids)
    assert train.ids.tolist() == sorted(train.ids.tolist())  # sorted within each half
    assert train.class_names == test.class_names == data.class_names


def test_split_keeps_rows_together():
    data = make_data({c: 10 for c in range(10)})
    train, test = stratified_split(data, 0.3, seed=2)
    by_id = {int(i): (data.labels[k], data.images[k]) for k, i in enumerate(data.ids)}
    for half in (train, test):
        for k, image_id in enumerate(half.ids):
            label, image = by_id[int(image_id)]
            assert half.labels[k] == label
            np.testing.assert_array_equal(half.images[k], image)


@pytest.mark.parametrize("test_size", [0.1, 0.2, 0.25, 0.5])
def test_split_is_stratified(test_size):
    counts = {0: 100, 1: 50, 2: 33, 3: 20, 4: 11, 5: 10, 6: 60, 7: 7, 8: 41, 9: 18}
    train, test = stratified_split(make_data(counts), test_size, seed=0)
    test_counts = Counter(test.labels.tolist())
    train_counts = Counter(train.labels.tolist())
    for cls, n in counts.items():
        assert abs(test_counts[cls] - test_size * n) <= 1, (cls, test_counts[cls], n)
        assert test_counts[cls] + train_counts[cls] == n
        assert test_counts[cls] >= 1 and train_counts[cls] >= 1


def test_split_is_deterministic_for_a_seed():
    data = make_data({c: 15 for c in range(10)})
    first = stratified_split(data, 0.2, seed=7)
    second = stratified_split(data, 0.2, seed=7)
    other = stratified_split(data, 0.2, seed=8)
    assert first[1].ids.tolist() == second[1].ids.tolist()
    assert first[0].ids.tolist() == second[0].ids.tolist()
    assert first[1].ids.tolist() != other[1].ids.tolist()


def test_split_class_with_one_image_names_class_and_key():
    data = make_data({0: 20, 1: 20, 3: 1})
    with pytest.raises(PipelineError) as info:
        stratified_split(data, 0.2, seed=0)
    message = str(info.value)
    assert "class 'cat'" in message
    assert "split.test_size" in message
    assert "1 image(s)" in message


def test_split_test_part_too_small_for_every_class():
    # 10 classes of 5 images; test_size 0.1 -> 5 test images, fewer than the 10 classes.
    data = make_data({c: 5 for c in range(10)})
    with pytest.raises(PipelineError, match="split.test_size=0.1"):
        stratified_split(data, 0.1, seed=0)


def test_split_custom_key_in_message():
    data = make_data({0: 20, 4: 1})
    with pytest.raises(PipelineError, match="train.validation_split") as info:
        stratified_split(data, 0.2, seed=0, key="train.validation_split")
    assert "class 'deer'" in str(info.value)


# --- npz ------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    data = make_data({c: 3 for c in range(10)})
    data = LabelledImages(
        images=data.images,
        labels=data.labels,
        ids=data.ids,
        class_names=("a", "bb", "ccc", "d", "e", "f", "g", "h", "i", "jjjjjjjjjjjj"),
    )
    path = tmp_path / "processed" / "train.npz"
    save_npz(data, path)
    assert [p.name for p in path.parent.iterdir()] == ["train.npz"]  # no temp litter
    loaded = load_npz(path)
    assert loaded.images.dtype == np.uint8
    np.testing.assert_array_equal(loaded.images, data.images)
    np.testing.assert_array_equal(loaded.labels, data.labels)
    np.testing.assert_array_equal(loaded.ids, data.ids)
    assert loaded.class_names == data.class_names
    assert all(type(name) is str for name in loaded.class_names)


def test_npz_missing_file(tmp_path):
    path = tmp_path / "test.npz"
    with pytest.raises(PipelineError) as info:
        load_npz(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make_bytes",
    [
        lambda: os.urandom(1000),
        lambda: b"",
        lambda: b"PK\x03\x04" + os.urandom(100),
        lambda: _npz_bytes(images=np.zeros((300, 32, 32, 3), np.uint8))[:5000],
        lambda: _npz_bytes(images=np.zeros((2, 32, 32, 3), np.uint8)),  # keys missing
        lambda: _npy_bytes(),
    ],
    ids=["random", "empty", "zip-magic-garbage", "truncated", "missing-keys", "npy"],
)
def test_npz_garbage(tmp_path, make_bytes):
    path = tmp_path / "train.npz"
    path.write_bytes(make_bytes())
    with pytest.raises(PipelineError) as info:
        load_npz(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "unreadable" in message
