"""The model card (tracking/model_card.py) of a real run in a real sqlite store: logged as the
run's model_card.md and set as the registered version's description."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import numpy as np

from cifar10_mlops.core.params import Params
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.tracking import serving
from cifar10_mlops.tracking.datasets import log_split
from cifar10_mlops.tracking.model_card import CARD_ARTIFACT, publish_model_card
from cifar10_mlops.tracking.store import configured_mlflow
from tests.helpers.models import tiny_keras_model_file

NAME = "cifar10-card"


def _split(count: int, seed: int) -> LabelledImages:
    rng = np.random.default_rng(seed)
    return LabelledImages(
        images=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
        labels=np.arange(count) % 10,
        ids=np.arange(1, count + 1),
    )


def _reports(folder):
    """per_class.csv and confusion.csv as evaluate writes them: cats taken for dogs most."""
    per_class = folder / "per_class.csv"
    rows = ["class,precision,recall,f1,support"]
    for name, f1 in [("airplane", 0.9), ("cat", 0.41), ("dog", 0.52), ("frog", 0.6)]:
        rows.append(f"{name},{f1},{f1},{f1},10")
    per_class.write_text("\n".join(rows) + "\n")
    confusion = folder / "confusion.csv"
    pairs = [("cat", "dog")] * 4 + [("dog", "cat")] * 2 + [("frog", "bird")] + [("cat", "cat")] * 6
    confusion.write_text("actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in pairs))
    return per_class, confusion


def test_every_registered_version_gets_the_card_as_its_description(store, tmp_path):
    params = Params()
    configured_mlflow()  # this test's store, as evaluate's run has it
    with mlflow.start_run(run_name="resnet50-5ep-synthetic-1200") as run:
        mlflow.set_tags({"data_version": "sha256:00aa", "data_source": "synthetic"})
        mlflow.log_params(
            {
                "model.backbone": "resnet50",
                "model.head": "gap_dense",
                "model.weights": "none",
                "train.epochs": 5,
                "train.learning_rate": 0.003,
                "train.backend": "jax",
                "evaluate.tta": True,
            }
        )
        log_split(params.data, _split(40, 0), "train", "sha256:00aa")
        log_split(params.data, _split(20, 1), "test", "sha256:00aa")
        mlflow.log_metrics({"test_accuracy": 0.625, "test_macro_f1": 0.6, "test_n_test": 20})
        info = serving.log_classifier(tiny_keras_model_file(tmp_path / "model.keras"))
        version = mlflow.register_model(info.model_uri, NAME)
        registration = SimpleNamespace(name=NAME, version=version.version)
        text = publish_model_card(*_reports(tmp_path), registration)

    assert store.get_model_version(NAME, version.version).description == text
    logged = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{CARD_ARTIFACT}")
    assert logged == text
    assert text.startswith(f"# Model card: {NAME} version 1\n")
    for expected in [
        "Test accuracy 0.6250",  # the run's two-line description opens it
        "Trained on: `synthetic-train`, 40 images, digest `sha256:00aa`, source",
        "Tested on: `synthetic-test`, 20 images",
        "cifar10_mlops.data.synthetic",  # the source: the embedded generator
        "Backend: jax; test-time augmentation (evaluate.tta): on",
        "- `train.learning_rate`: 0.003",
        "Accuracy **0.6250**, macro-F1 **0.6000**",
        "| cat | 0.410 | 0.410 | 0.410 | 10 |",
        "Weakest classes: cat (F1 0.410), dog (F1 0.520), frog (F1 0.600).",
        "- cat taken for dog: 4 of 10 cat images (40 %)",
        "- dog taken for cat: 2 of 10 dog images (20 %)",
        "## Intended use",
        "a photo of anything else",
    ]:
        assert expected in text, expected


def test_without_registration_the_card_is_still_logged(store, tmp_path):
    configured_mlflow()
    with mlflow.start_run() as run:
        text = publish_model_card(*_reports(tmp_path))
    assert text.startswith(f"# Model card: {run.info.run_name}\n")
    assert "Trained on: not logged" in text
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{CARD_ARTIFACT}") == text
