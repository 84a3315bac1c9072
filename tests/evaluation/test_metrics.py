"""Metrics and report files from labels and probabilities, checked against hand computations."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.evaluation.metrics import (
    EvaluationResult,
    compute_metrics,
    metrics_dict,
    write_confusion_csv,
    write_metrics_json,
    write_per_class_csv,
)

NAMES3 = ("cat", "dog", "bird")
# Six samples, three classes: true 0 0 1 1 2 2, predicted 0 1 1 1 2 0.
SMALL_Y = np.array([0, 0, 1, 1, 2, 2])
SMALL_PRED = np.array([0, 1, 1, 1, 2, 0])


def _probs_predicting(predicted, n_classes, top=0.7):
    """Rows that put `top` on the predicted class and spread the rest evenly."""
    probs = np.full((len(predicted), n_classes), (1.0 - top) / (n_classes - 1))
    probs[np.arange(len(predicted)), predicted] = top
    return probs


def test_perfect_predictions():
    y = np.arange(10).repeat(3)
    result = compute_metrics(y, np.eye(10)[y], CLASS_NAMES)
    assert isinstance(result, EvaluationResult)
    assert result.accuracy == 1.0
    assert result.macro_f1 == 1.0
    assert 0.0 <= result.loss < 1e-6  # clipped, so ~1e-7 rather than exactly 0
    np.testing.assert_array_equal(result.confusion, np.diag(np.full(10, 3)))
    assert result.n_samples == 30


def test_small_example_against_hand_computation():
    result = compute_metrics(SMALL_Y, _probs_predicting(SMALL_PRED, 3), NAMES3)

    np.testing.assert_array_equal(result.predictions, SMALL_PRED)
    np.testing.assert_array_equal(result.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert result.confusion.dtype.kind == "i"
    assert result.accuracy == pytest.approx(4 / 6)
    # p(true class) is 0.7 for the four hits and 0.15 for the two misses.
    assert result.loss == pytest.approx(-(4 * math.log(0.7) + 2 * math.log(0.15)) / 6)
    # precision 1/2, 2/3, 1; recall 1/2, 1, 1/2; f1 1/2, 4/5, 2/3.
    expected = [
        {"class": "cat", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        {"class": "dog", "precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2},
        {"class": "bird", "precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2},
    ]
    assert result.per_class == [pytest.approx(row) for row in expected]
    assert result.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_absent_class_still_gets_a_row_and_zero_scores():
    # Class 2 never occurs and is never predicted: zero_division=0, not a warning or a shift.
    y = np.array([0, 1, 1])
    result = compute_metrics(y, _probs_predicting([0, 1, 0], 3), NAMES3)
    assert result.confusion.shape == (3, 3)
    assert result.per_class[2] == {
        "class": "bird",
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }
    assert result.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_random_probabilities_give_chance_accuracy():
    rng = np.random.default_rng(1234)
    y = rng.integers(0, 10, size=1000)
    probs = rng.dirichlet(np.ones(10), size=1000).astype(np.float32)
    result = compute_metrics(y, probs, CLASS_NAMES)
    # Multi-class accuracy, not a per-output binary one (which would sit near 0.9).
    assert 0.06 < result.accuracy < 0.14
    assert result.accuracy == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    expected_loss = -np.mean(np.log(probs[np.arange(1000), y].astype(np.float64)))
    assert result.loss == pytest.approx(expected_loss, rel=1e-4)
    assert result.confusion.sum() == 1000


def test_confident_wrong_answer_gives_finite_loss():
    result = compute_metrics([1], [[1.0, 0.0]], ("a", "b"))
    assert result.loss == pytest.approx(-math.log(1e-7))
    assert result.accuracy == 0.0


def test_accepts_label_column_and_integral_floats():
    result = compute_metrics(np.array([[0.0], [1.0]]), np.eye(2), ("a", "b"))
    assert result.accuracy == 1.0


@pytest.mark.parametrize(
    ("y_true", "probabilities", "names", "message"),
    [
        ([0, 1, 2], np.eye(3)[:2], NAMES3, "3 labels but probabilities has 2 rows"),
        ([0, 1], np.array([0.5, 0.5]), ("a", "b"), "must be 2-D"),
        ([0, 3], np.eye(3)[:2], NAMES3, r"outside 0\.\.2 \(first at index 1: 3\)"),
        ([-1, 0], np.eye(3)[:2], NAMES3, "outside 0..2"),
        ([], np.empty((0, 3)), NAMES3, "empty"),
        ([], [], NAMES3, "empty"),
        ([0, 1], np.eye(3)[:2], ("a", "b"), "3 columns but 2 class names"),
        ([0.5, 1], np.eye(2), ("a", "b"), "integer class labels"),
        ([0, 1], [[2.0, -1.0], [0.0, 1.0]], ("a", "b"), "not softmax outputs"),
        ([0, 1], [[np.nan, 1.0], [0.0, 1.0]], ("a", "b"), "NaN"),
    ],
)
def test_bad_input_raises_pipeline_error(y_true, probabilities, names, message):
    with pytest.raises(PipelineError, match=message) as info:
        compute_metrics(np.asarray(y_true), probabilities, names)
    assert "\n" not in str(info.value)


def test_metrics_dict_and_json(tmp_path):
    result = compute_metrics(SMALL_Y, _probs_predicting(SMALL_PRED, 3), NAMES3)
    metrics = metrics_dict(result)
    assert metrics == {
        "accuracy": 0.666667,
        "loss": round(-(4 * math.log(0.7) + 2 * math.log(0.15)) / 6, 6),
        "macro_f1": 0.655556,
        "n_test": 6,
    }
    assert all(type(v) in (float, int) for v in metrics.values())

    target = tmp_path / "reports" / "metrics.json"
    assert write_metrics_json(result, target) == target
    text = target.read_text()
    assert json.loads(text) == metrics
    assert text.endswith("}\n") and list(json.loads(text)) == sorted(metrics)


def test_confusion_csv_has_one_named_row_per_sample(tmp_path):
    target = tmp_path / "confusion.csv"
    write_confusion_csv(SMALL_Y, SMALL_PRED, NAMES3, target)
    lines = target.read_text().splitlines()
    assert lines == [
        "actual,predicted",
        "cat,cat",
        "cat,dog",
        "dog,dog",
        "dog,dog",
        "bird,bird",
        "bird,cat",
    ]


def test_confusion_csv_quotes_awkward_names_and_validates(tmp_path):
    target = tmp_path / "confusion.csv"
    write_confusion_csv([0, 1], [1, 1], ("a,b", "c"), target)
    with open(target, newline="") as handle:
        assert list(csv.reader(handle)) == [["actual", "predicted"], ["a,b", "c"], ["c", "c"]]
    with pytest.raises(PipelineError, match="y_pred has labels? outside|y_pred has 1 label"):
        write_confusion_csv([0, 1], [0, 2], ("a", "b"), target)
    with pytest.raises(PipelineError, match="2 labels but y_pred has 1"):
        write_confusion_csv([0, 1], [0], ("a", "b"), target)
    # The failed calls left the earlier file alone.
    assert target.read_text().startswith("actual,predicted\n")


def test_per_class_csv(tmp_path):
    result = compute_metrics(SMALL_Y, _probs_predicting(SMALL_PRED, 3), NAMES3)
    target = tmp_path / "per_class.csv"
    write_per_class_csv(result, target)
    with open(target, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["class", "precision", "recall", "f1", "support"]
    assert [r["class"] for r in rows] == list(NAMES3)
    assert rows[1] == {
        "class": "dog",
        "precision": "0.666667",
        "recall": "1.0",
        "f1": "0.8",
        "support": "2",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["per_class.csv"]  # no temp litter
