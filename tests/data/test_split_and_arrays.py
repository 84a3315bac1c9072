"""The split as indices (the same rows as sklearn's train_test_split) and the npz writer that
gathers those rows chunk by chunk (the same files as np.savez of the copied subsets)."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import SplitParams
from cifar10_mlops.data import arrays
from cifar10_mlops.data.arrays import LabelledImages, Rows, load_npz, save_npz, save_split
from cifar10_mlops.data.kaggle.layout import load_kaggle_layout
from cifar10_mlops.data.raw_layout import load_split, load_split_rows
from cifar10_mlops.data.split import split_indices, stratified_split

# --- split_indices == sklearn -----------------------------------------------------------------


def sklearn_split(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """What stratified_split did before: sklearn's split of the row numbers, each half sorted."""
    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_size, random_state=seed, stratify=labels
    )
    return np.sort(train), np.sort(test)


def labelled(labels: np.ndarray) -> LabelledImages:
    n = len(labels)
    return LabelledImages(
        images=np.zeros((n, 1, 1, 1), np.uint8),
        labels=labels.astype(np.int64),
        ids=np.arange(1, n + 1, dtype=np.int64),
    )


def random_labels(rng: np.random.Generator) -> np.ndarray:
    """Balanced, skewed, with absent classes, with equal counts (ties in the rounding)."""
    classes = rng.choice(10, size=int(rng.integers(2, 11)), replace=False)
    if rng.random() < 0.4:
        counts = np.full(len(classes), int(rng.integers(2, 60)))
    else:
        counts = rng.integers(2, 80, size=len(classes))
    labels = np.repeat(classes, counts)
    return labels[rng.permutation(len(labels))]


def test_split_indices_match_sklearn_on_random_inputs():
    rng = np.random.default_rng(2024)
    checked = 0
    for _ in range(400):
        labels = random_labels(rng)
        test_size = float(
            rng.choice([0.1, 0.15, 0.2, 0.25, 1 / 3, 0.5, 0.7, rng.uniform(0.05, 0.95)])
        )
        seed = int(rng.integers(0, 2**31))
        try:
            expected = sklearn_split(labels, test_size, seed)
        except ValueError:  # a split sklearn refuses; split_indices refuses it too (below)
            continue
        got = split_indices(labelled(labels), test_size, seed)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        checked += 1
    assert checked > 300


@pytest.mark.parametrize("seed", [0, 1, 42, 12345])
@pytest.mark.parametrize("test_size", [0.1, 0.2, 0.3])
def test_split_indices_match_sklearn_at_full_size(seed, test_size):
    # The real shape: 50,000 images, 5,000 per class, the labels in a random order.
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(10), 5000))
    got = split_indices(labelled(labels), test_size, seed)
    expected = sklearn_split(labels, test_size, seed)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_split_indices_refuse_what_sklearn_refuses():
    rng = np.random.default_rng(7)
    for _ in range(300):
        labels = rng.integers(0, 10, size=int(rng.integers(2, 40)))
        test_size = float(rng.uniform(0.02, 0.98))
        try:
            sklearn_split(labels, test_size, 0)
        except ValueError:
            with pytest.raises(PipelineError, match="too few for a stratified split"):
                split_indices(labelled(labels), test_size, 0)
        else:
            split_indices(labelled(labels), test_size, 0)


def test_stratified_split_is_the_subset_of_split_indices():
    labels = np.random.default_rng(3).integers(0, 10, size=500)
    images = np.random.default_rng(4).integers(0, 256, size=(500, 32, 32, 3), dtype=np.uint8)
    data = LabelledImages(images=images, labels=labels, ids=np.arange(7, 507, dtype=np.int64))
    train_index, test_index = split_indices(data, 0.2, 42)
    train, test = stratified_split(data, 0.2, 42)
    for half, index in ((train, train_index), (test, test_index)):
        np.testing.assert_array_equal(half.images, images[index])
        np.testing.assert_array_equal(half.labels, labels[index])
        np.testing.assert_array_equal(half.ids, data.ids[index])


# --- the chunked npz writer -------------------------------------------------------------------


def random_data(n: int, seed: int = 0) -> LabelledImages:
    rng = np.random.default_rng(seed)
    return LabelledImages(
        images=rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8),
        labels=rng.integers(0, 10, size=n).astype(np.int64),
        ids=rng.permutation(np.arange(1, n + 1, dtype=np.int64)),
    )


def savez_bytes(data: LabelledImages) -> bytes:
    """What the writer used to do: np.savez of the copied arrays."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        images=data.images,
        labels=data.labels,
        ids=data.ids,
        class_names=np.array(data.class_names),
    )
    return buffer.getvalue()


def members(npz: bytes | str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(npz) if isinstance(npz, bytes) else npz) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def assert_same_npz(path, expected: bytes) -> None:
    # Member for member and byte for byte (npy header and data) what np.savez writes...
    assert members(str(path)) == members(expected)
    # ...so np.load returns equal arrays of the same dtype and shape.
    with np.load(path, allow_pickle=False) as got, np.load(io.BytesIO(expected)) as want:
        assert got.files == want.files
        for name in want.files:
            assert got[name].dtype == want[name].dtype
            assert got[name].shape == want[name].shape
            np.testing.assert_array_equal(got[name], want[name])


INDEXES = {
    "unsorted": lambda n, rng: rng.permutation(n)[: n * 2 // 3],
    "sorted": lambda n, rng: np.sort(rng.permutation(n)[: n // 2]),
    "repeats": lambda n, rng: rng.integers(0, n, size=n),
    "one-row": lambda n, rng: np.array([n - 1]),
    "empty": lambda n, rng: np.array([], dtype=np.int64),
    "all-rows": lambda n, rng: None,
}


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 2048])
@pytest.mark.parametrize("kind", INDEXES)
def test_chunked_writer_writes_what_savez_writes(tmp_path, monkeypatch, kind, chunk_rows):
    monkeypatch.setattr(arrays, "_CHUNK_ROWS", chunk_rows)
    rng = np.random.default_rng(1)
    data = random_data(150)
    index = INDEXES[kind](150, rng)
    path = tmp_path / "out.npz"
    save_npz(Rows(data, index), path)
    subset = data if index is None else arrays.subset(data, index)
    assert_same_npz(path, savez_bytes(subset))
    loaded = load_npz(path)
    np.testing.assert_array_equal(loaded.images, subset.images)
    assert loaded.class_names == data.class_names


def test_chunked_writer_non_contiguous_input(tmp_path, monkeypatch):
    # The binary layout's images come from a transpose; a strided array must write the same.
    monkeypatch.setattr(arrays, "_CHUNK_ROWS", 16)
    planes = np.random.default_rng(5).integers(0, 256, size=(90, 3, 32, 32), dtype=np.uint8)
    images = planes.transpose(0, 2, 3, 1)
    assert not images.flags.c_contiguous
    data = LabelledImages(images=images, labels=np.arange(90) % 10, ids=np.arange(1, 91))
    index = np.random.default_rng(6).permutation(90)[:50]
    for rows, subset in ((Rows(data), data), (Rows(data, index), arrays.subset(data, index))):
        path = tmp_path / "out.npz"
        save_npz(rows, path)
        assert_same_npz(path, savez_bytes(subset))


def test_save_split_from_rows_equals_save_split_from_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(arrays, "_CHUNK_ROWS", 33)
    data = random_data(400, seed=2)
    train_index, test_index = split_indices(data, 0.2, 42)
    save_split(
        Rows(data, train_index),
        Rows(data, test_index),
        tmp_path / "a" / "train.npz",
        tmp_path / "a" / "test.npz",
    )
    train, test = stratified_split(data, 0.2, 42)
    assert_same_npz(tmp_path / "a" / "train.npz", savez_bytes(train))
    assert_same_npz(tmp_path / "a" / "test.npz", savez_bytes(test))


@pytest.mark.parametrize("failing", ["train", "test"])
def test_failure_midway_leaves_no_file(tmp_path, monkeypatch, failing):
    monkeypatch.setattr(arrays, "_CHUNK_ROWS", 10)
    data = random_data(100)
    good = np.arange(0, 100, 2)
    bad = np.concatenate([np.arange(1, 100, 2), [10_000]])  # out of range in the last chunk
    train_index, test_index = (bad, good) if failing == "train" else (good, bad)
    out = tmp_path / "processed"
    with pytest.raises(IndexError):
        save_split(
            Rows(data, train_index), Rows(data, test_index), out / "train.npz", out / "test.npz"
        )
    assert list(out.iterdir()) == []  # neither file, no temp litter


def test_failure_midway_keeps_the_previous_pair(tmp_path, monkeypatch):
    monkeypatch.setattr(arrays, "_CHUNK_ROWS", 10)
    out = tmp_path / "processed"
    old = random_data(30, seed=9)
    save_split(old, old, out / "train.npz", out / "test.npz")
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    data = random_data(100)
    calls = []
    real_write = arrays._write_npy_rows

    class Boom(RuntimeError):
        pass

    def write_then_fail(member, array, index):  # the test file's images: half written, then fail
        calls.append(array.shape)
        if len(calls) == 4:
            real_write(member, array, None if index is None else index[: len(index) // 2])
            raise Boom
        real_write(member, array, index)

    monkeypatch.setattr(arrays, "_write_npy_rows", write_then_fail)
    with pytest.raises(Boom):
        save_split(
            Rows(data, np.arange(40)),
            Rows(data, np.arange(40, 100)),
            out / "train.npz",
            out / "test.npz",
        )
    assert len(calls) == 4 and calls[3] == (100, 32, 32, 3)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


# --- the preprocess path ----------------------------------------------------------------------


def test_load_split_rows_is_load_split(make_kaggle_dir, tmp_path):
    directory, _, _ = make_kaggle_dir(40)
    split = SplitParams(official_test=False, test_size=0.25, seed=3)
    train_rows, test_rows = load_split_rows(directory, split)
    assert train_rows.data is test_rows.data  # one array of pixels, two indexes into it
    train, test = load_split(directory, split)
    expected = stratified_split(
        load_kaggle_layout(directory / "train.7z", directory / "trainLabels.csv"), 0.25, 3
    )
    for got, want in ((train, expected[0]), (test, expected[1])):
        np.testing.assert_array_equal(got.images, want.images)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.ids, want.ids)
    save_split(train_rows, test_rows, tmp_path / "train.npz", tmp_path / "test.npz")
    assert_same_npz(tmp_path / "train.npz", savez_bytes(expected[0]))
    assert_same_npz(tmp_path / "test.npz", savez_bytes(expected[1]))


def test_preprocess_path_does_not_import_sklearn(make_kaggle_dir, tmp_path):
    # sklearn.model_selection alone is ~130 MiB of RSS: more than a quarter of the stage's budget.
    directory, _, _ = make_kaggle_dir(20)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from cifar10_mlops.data.arrays import save_split\n"
        "from cifar10_mlops.core.params import SplitParams\n"
        "from cifar10_mlops.data.raw_layout import load_split_rows\n"
        f"train, test = load_split_rows(Path({str(directory)!r}), SplitParams(test_size=0.5))\n"
        f"out = Path({str(tmp_path)!r})\n"
        "save_split(train, test, out / 'train.npz', out / 'test.npz')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')], 'sklearn'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "test.npz").is_file()
