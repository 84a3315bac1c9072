"""Test-set metrics from labels and softmax probabilities, and the report files DVC reads.

Pure numpy/scikit-learn: the caller runs model.predict and hands over arrays, which keeps this
module fast to import and trivial to test.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from cifar10_mlops.core.atomic import atomic_write_json, atomic_write_text
from cifar10_mlops.core.errors import PipelineError

# Same epsilon as Keras' sparse_categorical_crossentropy, so the loss here matches what
# model.evaluate reports instead of exploding to inf on a confident wrong answer.
PROBABILITY_EPSILON = 1e-7
# A softmax row sums to 1 up to float rounding; anything further off means the caller passed
# logits or unnormalised scores, and the loss would be meaningless.
ROW_SUM_TOLERANCE = 1e-2
DECIMALS = 6


@dataclass(frozen=True)
class EvaluationResult:
    """Everything evaluate needs to report; arrays are numpy, the rest plain Python."""

    accuracy: float
    loss: float
    macro_f1: float
    predictions: np.ndarray
    per_class: list[dict[str, Any]]
    confusion: np.ndarray
    n_samples: int
    class_names: tuple[str, ...]


def _as_label_vector(y_true: Any, what: str = "y_true") -> np.ndarray:
    labels = np.asarray(y_true)
    # Keras-style (N, 1) label columns are common; flatten them rather than reject them.
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise PipelineError(
            f"{what} must be a 1-D array of integer labels, got shape {labels.shape}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        # Accept 3.0 (a float array from a CSV) but not 2.5 or NaN.
        if (
            not np.issubdtype(labels.dtype, np.number)
            or not np.all(np.isfinite(labels))
            or not np.all(labels == np.round(labels))
        ):
            raise PipelineError(f"{what} must hold integer class labels, got dtype {labels.dtype}")
    return labels.astype(np.int64)


def _check_label_range(labels: np.ndarray, n_classes: int, what: str) -> None:
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise PipelineError(
            f"{what} has {int(bad.sum())} label(s) outside 0..{n_classes - 1} "
            f"(first at index {first}: {int(labels[first])})"
        )


def _validate(
    y_true: Any, probabilities: Any, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    labels = _as_label_vector(y_true)
    probs = np.asarray(probabilities)
    if labels.shape[0] == 0 or (probs.ndim >= 1 and probs.shape[0] == 0):
        raise PipelineError(
            "cannot evaluate an empty test set: y_true or probabilities has no rows"
        )
    if probs.ndim != 2:
        raise PipelineError(
            f"probabilities must be 2-D (samples, classes), got shape {probs.shape}"
        )
    if probs.shape[1] == 0:
        raise PipelineError("probabilities has no class columns")
    if labels.shape[0] != probs.shape[0]:
        raise PipelineError(
            f"y_true has {labels.shape[0]} labels but probabilities has {probs.shape[0]} rows"
        )
    n_classes = probs.shape[1]
    if len(class_names) != n_classes:
        raise PipelineError(
            f"probabilities has {n_classes} columns but {len(class_names)} class names were given"
        )
    if not np.issubdtype(probs.dtype, np.number):
        raise PipelineError(f"probabilities must be numeric, got dtype {probs.dtype}")
    probs = probs.astype(np.float64)
    if not np.all(np.isfinite(probs)):
        raise PipelineError("probabilities contain NaN or infinity (did training diverge?)")
    row_sums = probs.sum(axis=1)
    if probs.min() < 0 or np.any(np.abs(row_sums - 1.0) > ROW_SUM_TOLERANCE):
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        raise PipelineError(
            f"probabilities are not softmax outputs (row {worst} sums to {row_sums[worst]:.4g}, "
            f"min value {probs.min():.4g}); pass model.predict output, not logits"
        )
    _check_label_range(labels, n_classes, "y_true")
    return labels, probs


def _cross_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    # Mirror Keras: renormalise each row, clip to [eps, 1 - eps], then mean negative log.
    normalised = probs / probs.sum(axis=1, keepdims=True)
    true_class_prob = normalised[np.arange(labels.shape[0]), labels]
    clipped = np.clip(true_class_prob, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)
    return float(-np.mean(np.log(clipped)))


def compute_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> EvaluationResult:
    """Accuracy, loss, macro F1, per-class scores and confusion matrix for one test set.

    `y_true` holds integer labels (N,) (an (N, 1) column is accepted), `probabilities` the
    softmax outputs (N, C) with C == len(class_names). Raises PipelineError on bad input.
    """
    labels, probs = _validate(y_true, probabilities, class_names)
    n_classes = probs.shape[1]
    # Pass every label explicitly so a class absent from this test set still gets a row and a
    # column instead of silently shifting the others.
    label_ids = list(range(n_classes))
    predictions = np.argmax(probs, axis=1).astype(np.int64)

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=label_ids, zero_division=0
    )
    per_class = [
        {
            "class": str(class_names[i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in label_ids
    ]
    return EvaluationResult(
        accuracy=float(np.mean(predictions == labels)),
        loss=_cross_entropy(labels, probs),
        macro_f1=float(
            f1_score(labels, predictions, labels=label_ids, average="macro", zero_division=0)
        ),
        predictions=predictions,
        per_class=per_class,
        confusion=confusion_matrix(labels, predictions, labels=label_ids).astype(np.int64),
        n_samples=int(labels.shape[0]),
        class_names=tuple(str(name) for name in class_names),
    )


def metrics_dict(result: EvaluationResult) -> dict[str, float | int]:
    """The top-level metrics for reports/metrics.json, as plain Python numbers."""
    return {
        "accuracy": round(float(result.accuracy), DECIMALS),
        "loss": round(float(result.loss), DECIMALS),
        "macro_f1": round(float(result.macro_f1), DECIMALS),
        "n_test": int(result.n_samples),
    }


def write_metrics_json(result: EvaluationResult, path: str | os.PathLike[str]) -> Path:
    """Write metrics_dict(result) as JSON, atomically."""
    return atomic_write_json(path, metrics_dict(result))


def _csv_text(header: Sequence[str], rows: Any) -> str:
    buffer = io.StringIO()
    # "\n" rather than csv's default "\r\n": these files are diffed in git and read by DVC.
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_confusion_csv(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
) -> Path:
    """One `actual,predicted` row per sample, with class names, for DVC's confusion template."""
    actual = _as_label_vector(y_true, "y_true")
    predicted = _as_label_vector(y_pred, "y_pred")
    if actual.shape[0] != predicted.shape[0]:
        raise PipelineError(
            f"y_true has {actual.shape[0]} labels but y_pred has {predicted.shape[0]}"
        )
    _check_label_range(actual, len(class_names), "y_true")
    _check_label_range(predicted, len(class_names), "y_pred")
    names = [str(name) for name in class_names]
    rows = ((names[a], names[p]) for a, p in zip(actual.tolist(), predicted.tolist(), strict=True))
    return atomic_write_text(path, _csv_text(("actual", "predicted"), rows))


def write_per_class_csv(result: EvaluationResult, path: str | os.PathLike[str]) -> Path:
    """`class,precision,recall,f1,support`, one row per class in label order."""
    rows = (
        (
            row["class"],
            round(row["precision"], DECIMALS),
            round(row["recall"], DECIMALS),
            round(row["f1"], DECIMALS),
            row["support"],
        )
        for row in result.per_class
    )
    return atomic_write_text(
        path, _csv_text(("class", "precision", "recall", "f1", "support"), rows)
    )
