"""evaluate.tta: evaluate, `cifar10-mlops predict` and the logged MLflow model give the same
answer on the same images (the served model answers what evaluate scored)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.core.params import EvaluateParams
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.evaluation.metrics import compute_metrics, metrics_dict
from cifar10_mlops.evaluation.reports import evaluate_model
from cifar10_mlops.model.build import load_model
from cifar10_mlops.tracking import serving
from tests.helpers.cli import read_csv, run_main
from tests.helpers.models import tiny_keras_model_file

COUNT = 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A real Keras classifier whose answers change with a flip or a shift (so TTA shows), a
    test set, the same images as PNG files, and the model logged with evaluate.tta on."""
    root = tmp_path_factory.mktemp("tta")
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (COUNT, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, COUNT)
    model = load_model(tiny_keras_model_file(root / "model.keras"))
    folder = root / "images"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    test = LabelledImages(images, labels, np.arange(COUNT), CLASS_NAMES)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("tta", artifact_location=(root / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        info = serving.log_classifier(root / "model.keras", input_example=images[:1], tta=True)
    yield root, model, test, folder, uri, info, run.info.run_id
    mlflow.set_tracking_uri(None)


def evaluated(model, test, root: Path, tta: bool) -> dict:
    report = evaluate_model(model, test, root / f"reports-{tta}", EvaluateParams(tta=tta))
    return report.metrics


def test_evaluate_predict_and_the_logged_model_agree_with_tta(setup, capsys, monkeypatch):
    root, model, test, folder, uri, info, run_id = setup
    with_tta = evaluated(model, test, root, tta=True)
    without = evaluated(model, test, root, tta=False)
    assert abs(with_tta["loss"] - without["loss"]) > 1e-4  # TTA really changes the answers

    # The logged model, loaded the MLflow way, predicts with the views evaluate used.
    frame = mlflow.pyfunc.load_model(info.model_uri).predict(test.images)
    probabilities = frame[list(serving.PROBABILITY_COLUMNS)].to_numpy()
    served = metrics_dict(compute_metrics(test.labels, probabilities, CLASS_NAMES))
    for key in ("accuracy", "loss", "macro_f1"):
        assert served[key] == pytest.approx(with_tta[key], abs=1e-6), key

    # predict: the MLflow model's own setting (no flag), and a .keras file with --tta.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    answers = {}
    for name, args in {
        "runs uri": ["--model", f"runs:/{run_id}/model"],
        "keras file --tta": ["--model", str(root / "model.keras"), "--tta"],
    }.items():
        code, out, err = run_main(["predict", *args, "--quiet", str(folder)], capsys)
        assert code == 0, err
        answers[name] = read_csv(out)
    for name, rows in answers.items():
        assert [row["label"] for row in rows] == frame["label"].tolist(), name
        np.testing.assert_allclose(
            [float(row["confidence"]) for row in rows], frame["confidence"], atol=2e-6
        )

    # Without TTA the same file answers like evaluate without it: the flag is not ignored.
    code, out, err = run_main(
        ["predict", "--model", str(root / "model.keras"), "--no-tta", "--quiet", str(folder)],
        capsys,
    )
    plain = model.predict(test.images, verbose=0)
    np.testing.assert_allclose(
        [float(row["confidence"]) for row in read_csv(out)], plain.max(axis=1), atol=2e-6
    )
    assert json.loads((root / "reports-True" / "metrics.json").read_text())[
        "loss"
    ] == pytest.approx(with_tta["loss"])


def test_tta_cannot_be_chosen_for_a_model_whose_code_is_run(setup, capsys, monkeypatch):
    root, _, _, folder, uri, _, run_id = setup
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, _, err = run_main(
        [
            "predict",
            "--model",
            f"runs:/{run_id}/model",
            "--trust-model-code",
            "--no-tta",
            str(folder),
        ],
        capsys,
    )
    assert code != 0
    assert err.strip().splitlines() == [
        "error: --tta/--no-tta: a model loaded with --trust-model-code predicts the way it was "
        "logged (its evaluate.tta); drop the flag, or drop --trust-model-code to choose"
    ]
