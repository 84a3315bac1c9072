"""The MLflow pyfunc classifier (serving.py) and `cifar10-mlops predict` with MLflow models.

A real tiny Keras model is logged with log_classifier into a real sqlite MLflow store in a
temporary directory, registered, aliased, and loaded back through every kind of URI.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from cifar10_mlops.cli.predict import load_image
from cifar10_mlops.data.images import MAX_PICTURE_PIXELS, decode_picture
from cifar10_mlops.tracking import serving
from tests.helpers.cli import one_error_line, read_csv, run_main, write_mixed_folder
from tests.helpers.images import png_header_only
from tests.helpers.model_server import (
    HOSTILE_MESSAGES,
    ModelServer,
    hostile_requests,
    photos_payload,
    predictions,
)
from tests.helpers.models import keras_labels, tiny_keras_model_file

MODEL_NAME = "cifar10-test"
ALIAS = "champion"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The classifier logged into a fresh store, registered as version 1 with an alias."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.create_experiment(
            "serving", artifact_location=(root / "artifacts").as_uri()
        )
        keras_file = tiny_keras_model_file(root / "model.keras")
        images = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        with mlflow.start_run(experiment_id=experiment) as run:
            info = serving.log_classifier(keras_file, input_example=images)
        version = mlflow.register_model(info.model_uri, MODEL_NAME)
        mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, ALIAS, version.version)
        yield SimpleNamespace(
            uri=uri,
            root=root,
            info=info,
            run_id=run.info.run_id,
            keras_file=keras_file,
            images=images,
            version=version.version,
        )
        mlflow.set_tracking_uri(None)


@pytest.fixture
def store_env(logged, monkeypatch):
    """Tests in this module run with the module's store as MLFLOW_TRACKING_URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged.uri)
    return logged


def model_uris(logged) -> dict[str, str]:
    return {
        "runs": f"runs:/{logged.run_id}/model",
        "alias": f"models:/{MODEL_NAME}@{ALIAS}",
        "version": f"models:/{MODEL_NAME}/{logged.version}",
        "model-id": logged.info.model_uri,
    }


def assert_matches_keras(frame: pd.DataFrame, keras_file: Path, images: np.ndarray) -> None:
    assert tuple(frame.columns) == serving.OUTPUT_COLUMNS
    labels, confidences = keras_labels(keras_file, images)
    assert frame["label"].tolist() == labels
    np.testing.assert_allclose(frame["confidence"], confidences, atol=1e-6)
    probabilities = frame[list(serving.PROBABILITY_COLUMNS)].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities.max(axis=1), frame["confidence"])


@pytest.mark.parametrize("kind", ["runs", "alias", "version", "model-id"])
def test_pyfunc_predictions_match_the_keras_model(store_env, kind):
    model = mlflow.pyfunc.load_model(model_uris(store_env)[kind])
    assert_matches_keras(model.predict(store_env.images), store_env.keras_file, store_env.images)


def test_logged_model_has_signature_example_requirements_and_no_pickle(store_env, tmp_path):
    info = mlflow.models.get_model_info(store_env.info.model_uri)
    assert info.run_id == store_env.run_id
    # No input schema (MLflow's would refuse photos or arrays); the metadata says what goes in.
    assert info.signature.inputs is None
    assert info.metadata["input"] == serving.INPUT_DESCRIPTION
    assert tuple(info.signature.outputs.input_names()) == serving.OUTPUT_COLUMNS

    local = Path(
        mlflow.artifacts.download_artifacts(store_env.info.model_uri, dst_path=str(tmp_path))
    )
    requirements = (local / "requirements.txt").read_text().split()
    for name in ("mlflow", "keras", "tensorflow", "pydantic", "pyyaml", "pillow"):
        assert any(line.startswith(f"{name}==") for line in requirements), requirements
    assert (local / "code" / "cifar10_mlops" / "model" / "build.py").is_file()
    assert not list(local.rglob("*.pkl"))  # models from code: nothing to unpickle
    example = json.loads((local / "input_example.json").read_text())
    assert example["columns"] == [serving.IMAGE_COLUMN]  # photo files, base64 PNG
    assert len(example["data"]) == serving.MAX_EXAMPLE_IMAGES
    first = base64.b64decode(example["data"][0][0])
    np.testing.assert_array_equal(decode_picture(first), store_env.images[0])


def test_the_rest_payload_is_answered_like_the_scoring_server_would(store_env, tmp_path):
    """`mlflow models serve` parses requests with the same code as mlflow.models.predict."""
    local = Path(
        mlflow.artifacts.download_artifacts(store_env.info.model_uri, dst_path=str(tmp_path))
    )
    output = tmp_path / "predictions.json"
    mlflow.models.predict(
        model_uri=str(local),
        input_path=str(local / "serving_input_example.json"),
        content_type="json",
        output_path=str(output),
        env_manager="local",
    )
    frame = pd.DataFrame(json.loads(output.read_text())["predictions"])
    assert_matches_keras(
        frame, store_env.keras_file, store_env.images[: serving.MAX_EXAMPLE_IMAGES]
    )


@pytest.fixture(scope="module")
def classifier(logged):
    """The PythonModel itself, with the Keras model handed over directly."""
    return serving.Cifar10Classifier(keras.saving.load_model(logged.keras_file))


def test_predict_accepts_the_shapes_callers_send(classifier, logged):
    images = logged.images[:2]
    expected = classifier.predict(None, images)
    flat = images.reshape(2, -1)
    variants = {
        "nested lists": images.tolist(),
        "one image column": pd.DataFrame({"image": list(images)}),
        "3072 pixel columns": pd.DataFrame(flat),
        "whole-number floats": images.astype(np.float64),
    }
    for name, model_input in variants.items():
        pd.testing.assert_frame_equal(classifier.predict(None, model_input), expected, obj=name)
    single = classifier.predict(None, images[0])
    pd.testing.assert_frame_equal(single, expected.iloc[:1])


@pytest.mark.parametrize(
    "model_input, message",
    [
        (
            np.zeros((2, 28, 28, 3), np.uint8),
            "expected images of shape (N, 32, 32, 3), got shape (2, 28, 28, 3)",
        ),
        (np.zeros((0, 32, 32, 3), np.uint8), "got shape (0, 32, 32, 3)"),
        (np.full((1, 32, 32, 3), 0.5), "whole numbers in 0..255 (raw uint8 RGB, not scaled)"),
        (np.full((1, 32, 32, 3), 256), "whole numbers in 0..255"),
        (np.full((1, 32, 32, 3), "x"), "pixel values must be numbers"),
        (pd.DataFrame(np.zeros((1, 10))), "1 image column or 3072 pixel columns, got 10"),
        (
            pd.DataFrame({"image": ["iVBORw0KGgo!!"]}),
            "row 0: not valid base64 (13 characters); send each photo file base64-encoded",
        ),
        (
            pd.DataFrame({"image": [b"GIF89a but not really"]}),
            "row 0: not a picture Pillow can read (UnidentifiedImageError)",
        ),
        (
            pd.DataFrame({"image": [png_header_only(10_000, 10_000)]}),  # a decompression bomb
            f"row 0: image is 10000x10000 pixels, above the cap of {MAX_PICTURE_PIXELS} pixels",
        ),
        (
            np.zeros((serving.MAX_IMAGES_PER_REQUEST + 1, 32, 32, 3), np.uint8),
            f"1025 images in one request, at most {serving.MAX_IMAGES_PER_REQUEST}; send them in",
        ),
        (
            pd.DataFrame({"image": [b"\x89PNG", np.zeros((32, 32, 3), np.uint8)]}),
            "mixed cells",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(classifier, model_input, message):
    with pytest.raises(MlflowException, match="^cifar10 classifier input: ") as caught:
        classifier.predict(None, model_input)
    assert message in caught.value.message
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"  # the server answers 400


def test_photo_files_are_read_as_predict_reads_them(classifier, folder):
    """PNG, JPEG, grayscale, 64x64 and opaque RGBA files, as bytes and as base64 text: the same
    pixels as `cifar10-mlops predict`'s reader, so the same answers."""
    files = [path.read_bytes() for path in folder.good]
    expected = classifier.predict(None, np.stack([load_image(path) for path in folder.good]))
    as_bytes = classifier.predict(None, pd.DataFrame({"image": files}))
    pd.testing.assert_frame_equal(as_bytes, expected)
    # as MLflow writes base64 (lines of 76 characters) and as one line
    wrapped = [base64.encodebytes(data).decode() for data in files]
    one_line = [base64.b64encode(data).decode() for data in files]
    for name, cells in {"wrapped": wrapped, "one line": one_line, "list": files}.items():
        frame = pd.DataFrame({"image": cells}) if name != "list" else cells
        pd.testing.assert_frame_equal(classifier.predict(None, frame), expected, obj=name)


def test_log_classifier_needs_an_active_run(logged):
    assert mlflow.active_run() is None
    with pytest.raises(RuntimeError, match="needs an active MLflow run"):
        serving.log_classifier(logged.keras_file)


FRESH_INTERPRETER = textwrap.dedent("""
    import json, sys
    # As on a serving machine without this project: drop the editable install's src/ entry.
    sys.path = [p for p in sys.path if p != {src!r}]
    import mlflow.pyfunc, numpy as np
    model = mlflow.pyfunc.load_model({model!r})
    import cifar10_mlops
    frame = model.predict(np.load({images!r}))
    print(json.dumps({{"package": cifar10_mlops.__file__, "labels": frame["label"].tolist()}}))
""")


def test_a_saved_classifier_loads_where_the_package_is_not_installed(logged, tmp_path):
    saved = serving.save_classifier(logged.keras_file, tmp_path / "saved", logged.images[:1])
    np.save(tmp_path / "images.npy", logged.images)
    src = str(Path(serving.__file__).parents[2])
    script = FRESH_INTERPRETER.format(
        src=src, model=str(saved), images=str(tmp_path / "images.npy")
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(answer["package"]).is_relative_to(saved / "code")
    assert answer["labels"] == keras_labels(logged.keras_file, logged.images)[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    good, bad = write_mixed_folder(root / "images")
    return SimpleNamespace(path=root / "images", good=good, bad=bad)


@pytest.mark.parametrize("kind", ["alias", "version", "runs", "directory"])
def test_predict_cli_with_an_mlflow_model(store_env, folder, kind, tmp_path, capsys):
    if kind == "directory":
        saved = serving.save_classifier(
            store_env.keras_file, tmp_path / "saved", store_env.images[:1]
        )
        model = str(saved)
    else:
        model = model_uris(store_env)[kind]
    code, out, err = run_main(["predict", "--model", model, str(folder.path)], capsys)
    assert code == 0, err
    rows = {Path(row["path"]): row for row in read_csv(out)}
    assert {path for path, row in rows.items() if row["error"]} == set(folder.bad)
    labels, confidences = keras_labels(
        store_env.keras_file, np.stack([load_image(p) for p in folder.good])
    )
    assert [rows[p]["label"] for p in folder.good] == labels
    np.testing.assert_allclose(
        [float(rows[p]["confidence"]) for p in folder.good], confidences, atol=1e-6
    )
    assert err.strip().splitlines()[-1] == "predict: 5 images, 2 unreadable (see the error column)"


def test_predict_cli_reads_models_logged_with_the_keras_flavour(logged, folder, tmp_path, capsys):
    """Runs logged before the pyfunc classifier hold mlflow.keras models: their pyfunc returns
    bare probabilities and Keras prints a progress bar, which must stay out of the CSV."""
    import mlflow.keras

    legacy = tmp_path / "legacy"
    mlflow.keras.save_model(keras.saving.load_model(logged.keras_file), str(legacy))
    code, out, err = run_main(["predict", "--model", str(legacy), *map(str, folder.good)], capsys)
    assert code == 0, err
    labels, _ = keras_labels(logged.keras_file, np.stack([load_image(p) for p in folder.good]))
    assert [row["label"] for row in read_csv(out)] == labels


@pytest.mark.parametrize(
    "uri, reason",
    [
        (f"models:/{MODEL_NAME}@no-such-alias", "MlflowException"),
        ("models:/no-such-model/1", "MlflowException"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "MlflowException"),
    ],
)
def test_predict_cli_with_a_bad_uri_fails_with_one_line(store_env, folder, uri, reason, capsys):
    code, out, err = run_main(["predict", "--model", uri, str(folder.good[0])], capsys)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"error: {uri}: cannot load the MLflow model ({reason}: ")
    assert line.endswith(f"and the tracking store {store_env.uri}")


def test_predict_cli_without_a_store_says_where_it_looked(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # the project's default store: <root>/mlflow.db
    code, _, err = run_main(
        ["predict", "--model", f"models:/{MODEL_NAME}@{ALIAS}", str(folder.good[0])], capsys
    )
    assert code == 2
    assert one_error_line(err) == (
        f"error: models:/{MODEL_NAME}@{ALIAS}: no MLflow store at {tmp_path / 'mlflow.db'}; run "
        "`dvc repro` to log a model, or set MLFLOW_TRACKING_URI to the store that holds it"
    )
    assert not (tmp_path / "mlflow.db").exists()  # nothing created by looking


# --- a real `mlflow models serve` on the champion, over HTTP -------------------------------


@pytest.fixture(scope="module")
def server(logged, tmp_path_factory):
    """One server per module, on models:/<name>@champion of the module's store."""
    workdir = tmp_path_factory.mktemp("model-server")
    env = {"MLFLOW_TRACKING_URI": logged.uri, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with ModelServer(f"models:/{MODEL_NAME}@{ALIAS}", workdir, env) as running:
        yield running


def predict_cli_labels(store_env, paths, capsys) -> list[str]:
    code, out, err = run_main(
        ["predict", "--quiet", "--model", f"models:/{MODEL_NAME}@{ALIAS}", *map(str, paths)],
        capsys,
    )
    assert code == 0, err
    return [row["label"] for row in read_csv(out)]


@pytest.mark.slow
def test_the_served_champion_labels_photos_as_predict_does(server, store_env, folder, capsys):
    files = [path.read_bytes() for path in folder.good]  # PNG, JPEG, grayscale, 64x64, RGBA
    status, body = server.invoke(photos_payload(files))
    assert status == 200, body[:2000]
    served = predictions(body)
    assert [row["label"] for row in served] == predict_cli_labels(store_env, folder.good, capsys)
    # uint8 arrays (`inputs`: nested lists) give the same answer as the same pixels as files
    pixels = np.stack([load_image(path) for path in folder.good])
    status, body = server.invoke({"inputs": pixels.tolist()})
    assert status == 200, body[:2000]
    assert [row["confidence"] for row in predictions(body)] == pytest.approx(
        [row["confidence"] for row in served], abs=1e-6
    )
    # and concurrent requests (coalesced into shared model calls) each get their own answer
    with ThreadPoolExecutor(max_workers=4) as pool:
        singles = list(pool.map(lambda data: server.invoke(photos_payload([data])), files))
    assert [predictions(body)[0]["label"] for _, body in singles] == [r["label"] for r in served]


@pytest.mark.slow
def test_hostile_requests_get_a_4xx_with_a_message_and_the_server_stays_up(server):
    healthy = photos_payload([_tiny_png()])
    rss_before = server.rss_mib()
    answers = {}
    for case, body in hostile_requests().items():
        status, answer = server.invoke(body, timeout=600)
        answers[case] = (status, len(answer))
        assert 400 <= status < 500, (case, status, answer[:500])
        message = json.loads(answer)["message"]
        assert HOSTILE_MESSAGES[case] in message, (case, message[:1000])
        assert len(answer) < 20_000, (case, len(answer))  # the body is not echoed back
        status, _ = server.invoke(healthy)
        assert status == 200, case  # the next good request is answered
    # Memory stays bounded: the 100 MB body and its decoding are not kept.
    assert server.rss_mib() < rss_before + 1024, (rss_before, server.rss_mib(), answers)
    assert server.alive()


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
