"""The `cifar10-mlops predict` command, the report writer, and the one-line error contract.

(The `gate` subcommand is tested in test_gate.py.)"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cifar10_mlops.config import CLASS_NAMES
from cifar10_mlops.dataset import LabelledImages
from cifar10_mlops.params import EvaluateParams
from cifar10_mlops.predict import find_images, load_image
from cifar10_mlops.reporting import evaluate_model

CLI = [sys.executable, "-m", "cifar10_mlops.cli"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real (untrained) Keras model with the product's input and output contract."""
    model = keras.Sequential([
        keras.Input((32, 32, 3), dtype="uint8", name="image"),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(folder / "nested" / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), mode="L").save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image, and not picked up")
    return folder


def test_find_images_walks_directories_and_keeps_files(image_dir):
    found = find_images([image_dir])
    assert sorted(p.name for p in found) == ["a.png", "b.jpg", "c.png"]
    assert len(find_images([image_dir / "a.png", image_dir])) == 4


def test_load_image_gives_32x32_rgb_uint8(image_dir):
    for name in ("a.png", "nested/b.jpg", "c.png"):
        array = load_image(image_dir / name)
        assert array.shape == (32, 32, 3) and array.dtype == np.uint8


def test_predict_writes_the_contract_csv_and_skips_unreadable_files(tiny_model, image_dir, tmp_path):
    (image_dir / "broken.png").write_bytes(b"not a png")
    output = tmp_path / "predictions.csv"
    result = subprocess.run(
        [*CLI, "predict", "--model", str(tiny_model), str(image_dir), "--output", str(output)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "broken.png" in result.stderr and "skipped" in result.stderr
    with open(output) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "confidence"]
    assert len(rows) == 3
    assert all(row["label"] in CLASS_NAMES and 0 < float(row["confidence"]) <= 1 for row in rows)


def test_predict_with_nothing_readable_fails_with_one_line(tiny_model, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    result = subprocess.run([*CLI, "predict", "--model", str(tiny_model), str(tmp_path / "bad.png")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: none of the given images could be read; nothing was predicted"]
    assert "Traceback" not in result.stderr


def test_predict_missing_model_names_the_file_and_debug_shows_the_traceback(tmp_path, image_dir):
    missing = tmp_path / "nope.keras"
    plain = subprocess.run([*CLI, "predict", "--model", str(missing), str(image_dir)],
                           capture_output=True, text=True)
    assert plain.returncode == 2
    assert f"error: {missing}: model file not found" in plain.stderr
    assert "Traceback" not in plain.stderr
    debug = subprocess.run([*CLI, "--debug", "predict", "--model", str(missing), str(image_dir)],
                           capture_output=True, text=True)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_evaluate_model_writes_every_report(tiny_model, tmp_path):
    from cifar10_mlops.model import load_model

    rng = np.random.default_rng(1)
    test = LabelledImages(images=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
                          labels=np.arange(30) % 10, ids=np.arange(1, 31))
    report = evaluate_model(load_model(tiny_model), test, tmp_path, EvaluateParams(misclassified_grid=4))
    assert {"accuracy", "loss", "macro_f1", "n_test"} <= set(report.metrics)
    names = {Path(p).name for p in report.files}
    assert {"metrics.json", "confusion.csv", "per_class.csv", "confusion_matrix.png", "misclassified.png"} <= names
    assert all(Path(p).is_file() for p in report.files)
    with open(tmp_path / "confusion.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 30
