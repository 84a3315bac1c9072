"""The download stage's core: every source ends as train.7z + trainLabels.csv in raw_dir,
swapped in only when complete; failures leave the previous files untouched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import DataParams
from cifar10_mlops.data.acquire import acquire
from cifar10_mlops.data.kaggle.labels_csv import read_labels_csv
from cifar10_mlops.data.kaggle.layout import load_kaggle_layout
from cifar10_mlops.data.kaggle.train_7z import list_train_7z
from tests.helpers import REPO
from tests.helpers.stages import run_stage_script

KAGGLE_FILES = sorted([TRAIN_ARCHIVE, LABELS_CSV])


def local(path: Path | str | None) -> DataParams:
    return DataParams(source="local", path=None if path is None else str(path))


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.fixture
def raw_dir(tmp_path) -> Path:
    # data/raw inside an otherwise empty data/, so any leftover sibling shows up.
    return tmp_path / "project" / "data" / "raw"


# --- synthetic ------------------------------------------------------------------------------


def test_synthetic_writes_the_kaggle_layout_and_nothing_else(raw_dir):
    acquire(DataParams(source="synthetic", synthetic={"count": 60, "seed": 3}), raw_dir)
    assert listing(raw_dir) == KAGGLE_FILES
    assert listing(raw_dir.parent) == ["raw"]  # no staging or backup dirs left behind
    assert len(list_train_7z(raw_dir / TRAIN_ARCHIVE)) == 60
    assert len(read_labels_csv(raw_dir / LABELS_CSV)) == 60
    data = load_kaggle_layout(raw_dir / TRAIN_ARCHIVE, raw_dir / LABELS_CSV)
    assert data.images.shape == (60, 32, 32, 3)


# --- local: a directory with the two files ---------------------------------------------------


def test_local_directory_with_train_7z_and_labels(raw_dir, make_kaggle_dir):
    source, images, _ = make_kaggle_dir(20)
    source_before = file_bytes(source)
    acquire(local(source), raw_dir)
    assert listing(raw_dir) == KAGGLE_FILES
    assert listing(raw_dir.parent) == ["raw"]
    for name in KAGGLE_FILES:
        assert (raw_dir / name).read_bytes() == source_before[name]
    assert file_bytes(source) == source_before  # the user's files are copied, not moved


def test_local_replaces_previous_raw_contents(raw_dir, make_kaggle_dir):
    raw_dir.mkdir(parents=True)
    (raw_dir / "stale.txt").write_text("old")
    source, _, _ = make_kaggle_dir(20)
    acquire(local(source), raw_dir)
    assert listing(raw_dir) == KAGGLE_FILES
    assert listing(raw_dir.parent) == ["raw"]


# --- local: Kaggle's cifar-10.zip -------------------------------------------------------------


def test_local_kaggle_zip_file(raw_dir, make_kaggle_zip):
    archive = make_kaggle_zip()
    acquire(local(archive), raw_dir)
    # test.7z and sampleSubmission.csv are in the zip but must not be copied.
    assert listing(raw_dir) == KAGGLE_FILES
    assert listing(raw_dir.parent) == ["raw"]
    assert len(load_kaggle_layout(raw_dir / TRAIN_ARCHIVE, raw_dir / LABELS_CSV).ids) == 20


def test_local_directory_holding_the_kaggle_zip(raw_dir, make_kaggle_zip):
    archive = make_kaggle_zip()
    assert listing(archive.parent) == ["cifar-10.zip"]
    acquire(local(archive.parent), raw_dir)
    assert listing(raw_dir) == KAGGLE_FILES
    assert listing(raw_dir.parent) == ["raw"]


def test_local_path_with_tilde_is_expanded(raw_dir, make_kaggle_dir, tmp_path, monkeypatch):
    source, _, _ = make_kaggle_dir(20)
    monkeypatch.setenv("HOME", str(source.parent))
    acquire(local(f"~/{source.name}"), raw_dir)
    assert listing(raw_dir) == KAGGLE_FILES


# --- local: bad data.path -------------------------------------------------------------------


@pytest.mark.parametrize("path", [None, ""])
def test_local_without_path(raw_dir, path):
    with pytest.raises(PipelineError) as info:
        acquire(local(path), raw_dir)
    assert "data.path" in str(info.value)
    assert not raw_dir.exists()
    assert listing(raw_dir.parent) == []


def _nowhere(tmp_path):
    return tmp_path / "nowhere"


def _half_of_the_pair(tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / TRAIN_ARCHIVE).write_bytes(b"only half of the pair")
    return folder


@pytest.mark.parametrize(
    "make_path", [_nowhere, _half_of_the_pair], ids=["nonexistent", "without-the-files"]
)
def test_local_bad_path_names_data_path_and_writes_nothing(raw_dir, tmp_path, make_path):
    path = make_path(tmp_path)
    with pytest.raises(PipelineError) as info:
        acquire(local(path), raw_dir)
    assert "data.path" in str(info.value)
    assert str(path) in str(info.value)
    assert listing(raw_dir.parent) == []


def test_local_unsupported_file(raw_dir, make_kaggle_dir):
    source, _, _ = make_kaggle_dir(20)
    with pytest.raises(PipelineError) as info:
        acquire(local(source / TRAIN_ARCHIVE), raw_dir)
    assert "data.path" in str(info.value)
    assert "unsupported file" in str(info.value)


# --- failures leave the previous raw dir alone ----------------------------------------------


@pytest.fixture
def previous_raw(raw_dir, make_kaggle_dir):
    """A complete, good raw dir from an earlier run; returns its file contents."""
    make_kaggle_dir(20, directory=raw_dir)
    return file_bytes(raw_dir)


def corrupt_source(make_kaggle_dir, what: str) -> Path:
    source, _, _ = make_kaggle_dir(20)
    if what == "random-7z":
        (source / TRAIN_ARCHIVE).write_bytes(os.urandom(3000))
    elif what == "truncated-7z":
        data = (source / TRAIN_ARCHIVE).read_bytes()
        (source / TRAIN_ARCHIVE).write_bytes(data[: len(data) // 2])
    elif what == "bad-labels":
        (source / LABELS_CSV).write_text("id,label\n1,kitten\n")
    return source


@pytest.mark.parametrize("what", ["random-7z", "truncated-7z", "bad-labels"])
def test_failed_acquire_leaves_previous_raw_intact(raw_dir, previous_raw, make_kaggle_dir, what):
    source = corrupt_source(make_kaggle_dir, what)
    with pytest.raises(PipelineError) as info:
        acquire(local(source), raw_dir)
    bad_file = LABELS_CSV if what == "bad-labels" else TRAIN_ARCHIVE
    assert bad_file in str(info.value)  # names the file (in the staging copy)
    assert file_bytes(raw_dir) == previous_raw
    assert listing(raw_dir.parent) == ["raw"]  # the staging dir was removed


def test_failed_zip_acquire_leaves_previous_raw_intact(raw_dir, previous_raw, tmp_path):
    bad_zip = tmp_path / "dl" / "cifar-10.zip"
    bad_zip.parent.mkdir()
    bad_zip.write_bytes(b"<html>404</html>")
    with pytest.raises(PipelineError, match="not a readable zip"):
        acquire(local(bad_zip), raw_dir)
    assert file_bytes(raw_dir) == previous_raw
    assert listing(raw_dir.parent) == ["raw"]


# --- the stage scripts' error contract ------------------------------------------------------


@pytest.fixture
def broken_project(tmp_path, make_kaggle_dir):
    """A tmp project root: dvc.yaml, the repo's params.yaml, data/raw with a corrupt train.7z
    (and a good trainLabels.csv, so the error is about the archive)."""
    root = tmp_path / "proj"
    raw = root / "data" / "raw"
    make_kaggle_dir(20, directory=raw)
    (raw / TRAIN_ARCHIVE).write_bytes(os.urandom(2048))
    (root / "dvc.yaml").write_text("")
    shutil.copyfile(REPO / "params.yaml", root / "params.yaml")
    return root


def test_preprocess_stage_fails_with_one_error_line(broken_project):
    result = run_stage_script(broken_project, "preprocess")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert str(broken_project / "data" / "raw" / TRAIN_ARCHIVE) in lines[0]
    assert "Traceback" not in result.stderr
    assert not (broken_project / "data" / "processed").exists()


def test_preprocess_stage_debug_shows_the_traceback(broken_project):
    result = run_stage_script(broken_project, "preprocess", CIFAR10_MLOPS_DEBUG="1")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "PipelineError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


# --- hostile local files (issue 15) ------------------------------------------------------------


def test_data_raw_gets_a_directorys_usual_mode_not_the_staging_dirs_0700(raw_dir):
    umask = os.umask(0o022)
    try:
        acquire(DataParams(source="synthetic", synthetic={"count": 20, "seed": 0}), raw_dir)
    finally:
        os.umask(umask)
    assert raw_dir.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("name", [TRAIN_ARCHIVE, LABELS_CSV, "cifar-10.zip"])
def test_a_fifo_among_the_data_set_files_is_refused_by_name_without_blocking(
    raw_dir, make_kaggle_dir, name
):
    source, _, _ = make_kaggle_dir(20)
    (source / name).unlink(missing_ok=True)
    os.mkfifo(source / name)
    with pytest.raises(PipelineError) as info:
        acquire(local(source), raw_dir)
    assert str(info.value) == (
        f"data.path: '{source / name}' is not a regular file (a directory, FIFO, device or "
        "socket); put the data set file itself there"
    )
    assert listing(raw_dir.parent) == []  # the staging directory is gone too


def test_a_labels_file_above_its_cap_is_refused_before_it_is_copied(
    raw_dir, make_kaggle_dir, monkeypatch
):
    from cifar10_mlops.data import acquire as acquire_module

    source, _, _ = make_kaggle_dir(20)
    size = (source / LABELS_CSV).stat().st_size
    monkeypatch.setattr(acquire_module, "MAX_LABELS_BYTES", size - 1)  # the cap, made small
    with pytest.raises(PipelineError) as info:
        acquire(local(source), raw_dir)
    assert str(info.value) == (
        f"{source / LABELS_CSV}: {size} bytes, above the cap of {size - 1} for this file; this "
        "is not the CIFAR-10 data set, check data.path"
    )
    assert listing(raw_dir.parent) == []
