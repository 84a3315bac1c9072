"""`cifar10-mlops predict` against hostile input (issue 15): pictures decoded as training
decodes them, pixel bombs refused before decoding, FIFOs and symlink loops reported in a row,
models that carry code not run unless trusted, bad --output and model URIs in one line."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar10_mlops.cli.predict import find_images
from cifar10_mlops.data.images import MAX_PICTURE_PIXELS, decode_png, read_picture
from tests.helpers.cli import one_error_line, read_csv, run_main
from tests.helpers.images import png_header_only
from tests.helpers.models import tiny_keras_model_file

CLI = [sys.executable, "-m", "cifar10_mlops.cli.main"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_keras_model_file(tmp_path_factory.mktemp("model") / "model.keras")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- one decoder: training and predict give the same pixels ---------------------------------


def test_a_16_bit_grayscale_png_gives_the_same_pixels_in_predict_as_in_training(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).astype(np.uint16).reshape(32, 32)
    data = png_bytes(Image.fromarray(ramp))
    path = tmp_path / "gray16.png"
    path.write_bytes(data)
    trained_on = decode_png(data, "w")
    predicted_on = read_picture(path)
    np.testing.assert_array_equal(predicted_on, trained_on)
    # The high byte of each value, not clipped to white (Pillow's convert("RGB") gave 99.6%).
    np.testing.assert_array_equal(predicted_on[..., 0], (ramp >> 8).astype(np.uint8))
    assert (predicted_on == 255).mean() < 0.01


def test_a_transparent_picture_gets_the_training_paths_reason_in_its_row(tmp_path):
    rgba = np.full((32, 32, 4), 200, dtype=np.uint8)
    rgba[0, 0, 3] = 0
    path = tmp_path / "translucent.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    with pytest.raises(Exception) as error:
        read_picture(path)
    assert str(error.value) == (
        "image has transparent pixels (mode RGBA); CIFAR-10 images are opaque RGB, flatten it "
        "onto a background or remove it"
    )


# --- pixel bombs: the size comes from the header, before decoding ---------------------------


def test_training_refuses_a_huge_png_from_its_header_before_decoding():
    # The header declares 13000x13000 and there are no pixels at all: only a header check
    # can answer with the size (decoding would fail on the missing data instead).
    with pytest.raises(Exception) as error:
        decode_png(png_header_only(13000, 13000), "arch.7z: member 'train/3.png'")
    assert str(error.value) == (
        "arch.7z: member 'train/3.png': image is 13000x13000; CIFAR-10 images are 32x32, "
        "resize it or remove it"
    )


def test_predict_refuses_a_picture_over_the_pixel_cap_before_decoding(tmp_path):
    side = int(MAX_PICTURE_PIXELS**0.5) + 1
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(side, side))  # decoding would fail: no pixel data
    with pytest.raises(Exception) as error:
        read_picture(path)
    assert str(error.value) == (
        f"image is {side}x{side} pixels, above the cap of {MAX_PICTURE_PIXELS} pixels; shrink "
        "it first"
    )


def test_predict_refuses_what_pillow_itself_calls_a_bomb_with_the_same_reason(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))  # 400 MP: above Pillow's own error limit
    with pytest.raises(Exception) as error:
        read_picture(path)
    assert str(error.value) == (
        f"image is too many pixels for Pillow, above the cap of {MAX_PICTURE_PIXELS} pixels; "
        "shrink it first"
    )


# --- not regular files: a row with the reason, never a hang or a silent skip -----------------


@pytest.fixture
def odd_folder(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    return folder


def test_a_fifo_and_a_symlink_loop_in_a_folder_are_found_not_skipped(odd_folder):
    found = find_images([odd_folder])
    assert [path.name for path in found] == ["good.png", "loop.png", "pipe.png"]


def test_predict_gives_a_fifo_and_a_symlink_loop_a_row_with_the_reason(
    tiny_model, odd_folder, capsys
):
    direct_fifo = odd_folder.parent / "direct.jpg"
    os.mkfifo(direct_fifo)
    code, out, err = run_main(
        ["predict", "--model", str(tiny_model), str(odd_folder), str(direct_fifo)], capsys
    )
    assert code == 0, err
    rows = {Path(row["path"]).name: row for row in read_csv(out)}
    assert rows["good.png"]["label"] and not rows["good.png"]["error"]
    assert rows["pipe.png"]["error"] == "a named pipe (FIFO); give image files"
    assert rows["direct.jpg"]["error"] == "a named pipe (FIFO); give image files"
    assert rows["loop.png"]["label"] == ""
    assert rows["loop.png"]["error"].startswith("cannot read the image (OSError: [Errno 40]")


# --- --output and model URIs -------------------------------------------------------------------


def test_output_naming_a_directory_fails_before_any_prediction(tiny_model, odd_folder, tmp_path):
    result = subprocess.run(
        [*CLI, "predict", "--model", str(tiny_model), str(odd_folder / "good.png")]
        + ["--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert one_error_line(result.stderr) == (
        f"error: --output {tmp_path}: is a directory; give a file name for the CSV"
    )


def test_an_http_model_uri_is_refused_in_one_line_and_leaves_no_temporary_directory(
    odd_folder, tmp_path
):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(
        [*CLI, "predict", "--model", "http://127.0.0.1:9/model", str(odd_folder / "good.png")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 2
    assert one_error_line(result.stderr) == (
        "error: 'http://127.0.0.1:9/model': model URIs with scheme 'http:' are not supported; "
        "give a .keras file, an MLflow model directory, models:/<name>@<alias>, "
        "models:/<name>/<version> or runs:/<run id>/model"
    )
    assert list(scratch.iterdir()) == []


# --- models that carry code ----------------------------------------------------------------------


class _RunsCode:
    """Unpickling this runs code: it creates the marker file (what a hostile model would do
    with anything it liked)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickled_python_model(directory: Path, marker: Path) -> Path:
    """An MLflow model directory whose python_model is a pickle that runs code when loaded."""
    directory.mkdir(parents=True)
    (directory / "python_model.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    (directory / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: mlflow.pyfunc.model\n"
        "    python_model: python_model.pkl\n"
        "    python_version: 3.11.7\n"
        "    env:\n"
        "      virtualenv: python_env.yaml\n"
        "mlflow_version: 3.1.0\n"
        "model_uuid: 0123456789abcdef0123456789abcdef\n",
        encoding="utf-8",
    )
    return directory


def test_an_mlflow_model_carrying_code_is_not_loaded_without_trust(tmp_path, capsys):
    marker = tmp_path / "the-model-ran-its-code"
    model = pickled_python_model(tmp_path / "hostile-model", marker)
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(picture)
    code, out, err = run_main(["predict", "--model", str(model), str(picture)], capsys)
    assert code == 2 and out == ""
    assert one_error_line(err) == (
        f"error: {model}: an MLflow model with no model.keras file of this project "
        "(artifacts/*.keras); loading another kind of MLflow model runs the code it carries; "
        "pass --trust-model-code only if you trust its source"
    )
    assert not marker.exists()


@pytest.mark.slow  # imports MLflow's pyfunc machinery (~10 s)
def test_trust_model_code_loads_it_the_mlflow_way_and_its_code_runs(tmp_path, capsys):
    # The counterpart of the test above: the same model does run its code once trusted, so
    # the refusal above is what kept the marker away.
    marker = tmp_path / "the-model-ran-its-code"
    model = pickled_python_model(tmp_path / "hostile-model", marker)
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(picture)
    run_main(["predict", "--trust-model-code", "--model", str(model), str(picture)], capsys)
    assert marker.exists()


def test_a_keras_file_carrying_python_code_is_refused_by_safe_mode(tmp_path, capsys):
    # A Lambda layer stores Python bytecode in the .keras file; Keras' safe mode refuses it.
    from cifar10_mlops.core.quiet_tensorflow import keras

    model = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.Flatten()]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(picture)
    code, out, err = run_main(["predict", "--model", str(path), str(picture)], capsys)
    assert code == 2 and out == ""
    assert one_error_line(err) == f"error: {path}: cannot load the model (ValueError); retrain it"
    # The file itself is sound: without safe mode Keras loads it (and would run its code).
    assert keras.saving.load_model(path, compile=False, safe_mode=False) is not None


@pytest.mark.parametrize(
    "mlmodel", ["- a list\n", "flavors: [python_function]\n", "flavors:\n  python_function: 3\n"]
)
def test_an_mlmodel_file_of_any_shape_does_not_end_in_a_traceback(
    tiny_model, tmp_path, capsys, mlmodel
):
    model = tmp_path / "model-dir"
    (model / "artifacts").mkdir(parents=True)
    (model / "artifacts" / "model.keras").write_bytes(tiny_model.read_bytes())
    (model / "MLmodel").write_text(mlmodel, encoding="utf-8")
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(picture)
    code, out, err = run_main(["predict", "--model", str(model), str(picture)], capsys)
    assert code == 0, err
    assert read_csv(out)[0]["label"]
