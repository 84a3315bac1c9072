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

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pytest

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from tests.helpers import archives
from tests.helpers.archives import default_labels, encode_png, random_image

# JAX's persistent compilation cache for the whole session, shared by both xdist workers and
# every process the tests start (dvc repro, the multi-worker cluster, the backends' children
# inherit the environment): the tiny JAX pipelines compile the same programs again and again
# (a fresh process compiles every initializer and step: ~30 s of a JAX evaluate on 2 busy
# cores). The programs and their results are the same; only the compiling is done once. A
# size limit turns on JAX's file lock, so concurrent processes never read half-written entries.
JAX_CACHE_ENV = {
    "JAX_COMPILATION_CACHE_DIR": "",  # set in pytest_configure
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    "JAX_COMPILATION_CACHE_MAX_SIZE": str(4 << 30),
}


def pytest_configure(config):
    # The controller makes the directory before it starts the xdist workers, which inherit it;
    # a cache directory chosen by the caller (JAX_COMPILATION_CACHE_DIR already set) is kept.
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    directory = tempfile.mkdtemp(prefix="cifar10-mlops-jax-cache-")
    config._jax_cache = (directory, [name for name in JAX_CACHE_ENV if name not in os.environ])
    for name in config._jax_cache[1]:
        os.environ[name] = JAX_CACHE_ENV[name] or directory


def pytest_unconfigure(config):
    if hasattr(config, "_jax_cache"):
        directory, names = config._jax_cache
        shutil.rmtree(directory, ignore_errors=True)
        for name in names:
            os.environ.pop(name, None)


# How `make test` shares the tests between its two workers (`--dist loadfile`): each file is
# one unit (its module fixtures are built once), tests/team is one unit (its package-scoped
# stack is started once, not once per worker or per interruption), and the units go out
# heaviest first, so a long file never starts last while the other worker idles (xdist's own
# order is by test count, which puts the files with one costly fixture and few tests at the
# end). The seconds are a loaded 2-core run's; only their order matters, and a file not listed
# comes after these (files with slow tests first). (xdist's loadgroup would do the grouping,
# but under pytest 9 it leaves the group out of the ids it schedules by, so it groups nothing.)
SHARED_UNITS = ("tests/team/",)
HEAVIEST_FIRST = {
    "tests/team/": 450,
    "tests/pipeline/test_pipeline.py": 350,
    "tests/training/test_multi_worker.py": 290,
    "tests/pipeline/test_regression_gate.py": 250,
    "tests/tracking/test_mlflow_ui.py": 180,
    "tests/pipeline/test_jax_pipeline.py": 175,
    "tests/training/test_resume.py": 150,
    "tests/training/test_backends.py": 145,
    "tests/training/test_training.py": 110,
    "tests/tracking/test_secrets.py": 110,
    "tests/tracking/test_mlflow_lifecycle.py": 100,
    "tests/tracking/test_serving.py": 90,
}


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or the shared folder it is in."""
    path = nodeid.split("::", 1)[0]
    return next((shared for shared in SHARED_UNITS if path.startswith(shared)), path)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # xdist's hook: unknown without it
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class UnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # the workers' order below, not by test count
    return UnitScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # an xdist worker: its order is the schedule's
        return
    slow_units = {work_unit(item.nodeid) for item in items if item.get_closest_marker("slow")}
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(work_unit(item.nodeid), len(first_seen))

    def order(item: pytest.Item) -> tuple:
        unit = work_unit(item.nodeid)
        return (-HEAVIEST_FIRST.get(unit, 0), unit not in slow_units, first_seen[unit])

    items.sort(key=order)  # stable: a unit's own tests keep their order


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
