"""The `cifar10-mlops predict` command with a local .keras model, the report writer, and the
one-line error contract. MLflow models (URIs, model directories) are in tests/tracking/test_serving.py.

(The `gate` subcommand is tested in tests/evaluation/test_gate.py.)"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar10_mlops.cli.predict import find_images, load_classifier, load_image, predict_rows
from cifar10_mlops.core.params import EvaluateParams
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.evaluation.reports import evaluate_model
from tests.helpers.cli import one_error_line, read_csv, run_main, write_mixed_folder
from tests.helpers.models import keras_labels, tiny_keras_model_file

CLI = [sys.executable, "-m", "cifar10_mlops.cli.main"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_keras_model_file(tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture
def mixed_folder(tmp_path):
    return tmp_path / "images", *write_mixed_folder(tmp_path / "images")


def test_find_images_walks_directories_and_keeps_given_files(mixed_folder):
    folder, good, bad = mixed_folder
    found = find_images([folder])
    assert sorted(found) == sorted(good + bad)  # by suffix, case-insensitive, recursive
    assert find_images([folder / "notes.txt"]) == [folder / "notes.txt"]  # named: always tried


def test_load_image_gives_32x32_rgb_uint8(mixed_folder):
    folder, good, _ = mixed_folder
    for path in good:
        array = load_image(path)
        assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    np.testing.assert_array_equal(load_image(good[0]), np.asarray(Image.open(good[0])))
    with Image.open(good[3]) as big:  # 64x64: the whole picture resized, not cropped
        expected = np.asarray(big.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(load_image(good[3]), expected)


def test_predict_reports_unreadable_files_and_predicts_the_rest(tiny_model, mixed_folder, tmp_path):
    folder, good, bad = mixed_folder
    output = tmp_path / "out" / "predictions.csv"
    result = subprocess.run(
        [*CLI, "predict", "--model", str(tiny_model), str(folder), "--output", str(output)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert (
        result.stderr.strip().splitlines()[-1]
        == "predict: 5 images, 2 unreadable (see the error column)"
    )
    rows = {Path(row["path"]): row for row in read_csv(output.read_text())}
    assert set(rows) == set(good + bad)

    labels, confidences = keras_labels(tiny_model, np.stack([load_image(p) for p in good]))
    for path, label, confidence in zip(good, labels, confidences, strict=True):
        assert rows[path]["label"] == label and rows[path]["error"] == ""
        assert float(rows[path]["confidence"]) == pytest.approx(confidence, abs=1e-6)
    for path in bad:
        assert rows[path]["label"] == rows[path]["confidence"] == ""
        assert rows[path]["error"] and "\n" not in rows[path]["error"]
    assert "not an image Pillow can read" in rows[bad[1]]["error"]  # text named .png


def test_small_batches_keep_the_input_order_and_write_to_stdout(tiny_model, mixed_folder, capsys):
    folder, good, bad = mixed_folder
    paths = [good[0], bad[0], good[1], good[2], bad[1], good[3]]
    code, out, err = run_main(
        ["predict", "--model", str(tiny_model), "--batch-size", "2", *map(str, paths)], capsys
    )
    assert code == 0, err
    rows = read_csv(out)
    assert [row["path"] for row in rows] == [str(p) for p in paths]
    assert [bool(row["error"]) for row in rows] == [False, True, False, False, True, False]
    labels, _ = keras_labels(tiny_model, np.stack([load_image(p) for p in (good[:4])]))
    assert [row["label"] for row in rows if not row["error"]] == labels
    assert err.strip() == "predict: 4 images, 2 unreadable (see the error column)"


def test_progress_bar_counts_every_file(tiny_model, mixed_folder, capsys):
    folder, good, bad = mixed_folder
    rows = predict_rows(load_classifier(str(tiny_model)), find_images([folder]), 3, progress=True)
    assert len(rows) == len(good + bad)
    assert "7/7" in capsys.readouterr().err  # tqdm's final count, on stderr


def test_quiet_prints_nothing_but_the_csv(tiny_model, mixed_folder, capsys):
    folder, good, _ = mixed_folder
    code, out, err = run_main(
        ["predict", "--quiet", "--model", str(tiny_model), str(good[0])], capsys
    )
    assert code == 0 and err == ""
    assert [row["path"] for row in read_csv(out)] == [str(good[0])]


def test_nothing_readable_fails_with_one_line_and_keeps_the_old_output(
    tiny_model, mixed_folder, tmp_path, capsys
):
    _, _, bad = mixed_folder
    output = tmp_path / "predictions.csv"
    output.write_text("the previous good predictions\n")
    code, out, err = run_main(
        ["predict", "--model", str(tiny_model), *map(str, bad), "--output", str(output)], capsys
    )
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"error: none of the 2 image file(s) could be read (first: {bad[0]}: ")
    assert line.endswith("nothing was predicted")
    assert output.read_text() == "the previous good predictions\n"


def test_empty_directory_fails_with_one_line(tiny_model, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no pictures here")
    code, out, err = run_main(["predict", "--model", str(tiny_model), str(empty)], capsys)
    assert code == 2 and out == ""
    assert one_error_line(err).startswith(
        f"error: no image files found in {empty} (looked for .png"
    )


def test_missing_path_fails_with_one_line(tiny_model, tmp_path, capsys):
    code, _, err = run_main(["predict", "--model", str(tiny_model), str(tmp_path / "nope")], capsys)
    assert code == 2
    assert (
        one_error_line(err)
        == f"error: {tmp_path / 'nope'}: no such file or directory; give image files or directories"
    )


def test_directory_that_is_not_a_model_fails_with_one_line(mixed_folder, tmp_path, capsys):
    folder, good, _ = mixed_folder
    code, _, err = run_main(["predict", "--model", str(tmp_path), str(good[0])], capsys)
    assert code == 2
    assert one_error_line(err).startswith(f"error: {tmp_path}: a directory without an MLmodel file")


def test_batch_size_must_be_positive(tiny_model, mixed_folder, capsys):
    _, good, _ = mixed_folder
    code, _, err = run_main(
        ["predict", "--model", str(tiny_model), "--batch-size", "0", str(good[0])], capsys
    )
    assert code == 2 and "--batch-size: must be 1 or more, got 0" in err


def test_missing_model_names_the_file_and_debug_shows_the_traceback(tmp_path, mixed_folder):
    folder, _, _ = mixed_folder
    missing = tmp_path / "nope.keras"
    plain = subprocess.run(
        [*CLI, "predict", "--model", str(missing), str(folder)], capture_output=True, text=True
    )
    assert plain.returncode == 2
    assert one_error_line(plain.stderr) == (
        f"error: {missing}: model file not found; run `dvc repro` to train one, or give an "
        "MLflow model URI such as models:/<name>@<alias>"
    )
    debug = subprocess.run(
        [*CLI, "predict", "--debug", "--model", str(missing), str(folder)],
        capture_output=True,
        text=True,
    )
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_evaluate_model_writes_every_report(tiny_model, tmp_path):
    from cifar10_mlops.model.build import load_model

    rng = np.random.default_rng(1)
    test = LabelledImages(
        images=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
        labels=np.arange(30) % 10,
        ids=np.arange(1, 31),
    )
    report = evaluate_model(
        load_model(tiny_model), test, tmp_path, EvaluateParams(misclassified_grid=4)
    )
    assert {"accuracy", "loss", "macro_f1", "n_test"} <= set(report.metrics)
    names = {Path(p).name for p in report.files}
    assert {
        "metrics.json",
        "confusion.csv",
        "per_class.csv",
        "confusion_matrix.png",
        "misclassified.png",
    } <= names
    assert all(Path(p).is_file() for p in report.files)
    with open(tmp_path / "confusion.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 30
