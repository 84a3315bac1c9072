"""One recipe trained and scored in one process: the train and evaluate stages' own functions
(train_model, compute_metrics) without DVC or MLflow.

For comparing recipes and calibrating the regression gate (benchmarks/), and for the gate's
test, which breaks the pipeline on purpose and checks the gate notices. The numbers are the
ones `dvc repro` writes to reports/metrics.json for the same params and data.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cifar10_mlops.core.params import Params
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.evaluation.metrics import compute_metrics, metrics_dict
from cifar10_mlops.model.tta import predict_probabilities
from cifar10_mlops.training.fit import train_model


@dataclass(frozen=True)
class Trial:
    model: keras.Model
    metrics: dict[str, float | int]  # what reports/metrics.json holds
    train_seconds: float
    epochs_run: int
    best_epoch: int  # 1-based


def score(model: keras.Model, test: LabelledImages, tta: bool = False) -> dict[str, float | int]:
    """The evaluate stage's metrics of `model` on `test` (with `evaluate.tta`'s views if tta)."""
    probabilities = predict_probabilities(model.predict_on_batch, test.images, tta)
    return metrics_dict(compute_metrics(test.labels, probabilities, test.class_names))


def run_trial(
    params: Params, train: LabelledImages, test: LabelledImages, verbose: int = 0
) -> Trial:
    """Train on `train` exactly as the train stage does, then score on `test`."""
    with tempfile.TemporaryDirectory(prefix="trial-") as scratch:
        work = Path(scratch)
        start = time.perf_counter()
        outcome = train_model(
            params,
            train,
            work / "model.keras",
            work / "history.csv",
            work / "state",
            verbose=verbose,
        )
        seconds = time.perf_counter() - start
    return Trial(
        model=outcome.model,
        metrics=score(outcome.model, test, params.evaluate.tta),
        train_seconds=seconds,
        epochs_run=outcome.epochs_run,
        best_epoch=outcome.best_epoch + 1,
    )
