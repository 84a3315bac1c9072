"""The CI gate (.ci/baseline.json) passes the gate's recipe on any machine and trips on broken
pipelines.

Live: the gate's recipe (presets/ci-gate.yaml, applied to the committed params) trains once
here, on its embedded images split as the preprocess stage splits them
(cifar10_mlops.harness: the stages' own train and score functions). That fresh run must pass
the committed baseline, and so must the same recipe trained where the kernels differ (oneDNN
capped to AVX2, as on an AVX2-only runner, in a fresh process). Then the pipeline is broken on
purpose, one fault at a time, and `cifar10-mlops gate` must fail each one: faults that every
CIFAR pipeline has met, which leave the code running and the numbers plausible-looking.

How the baseline and its tolerances were set (seeds x machines) and how every other fault fares
against it: benchmarks/gate_calibration.py and docs/training.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cifar10_mlops.data.arrays import LabelledImages
from tests.helpers.pipeline import REPO, VENV_BIN, run

pytestmark = pytest.mark.slow

COMMITTED_BASELINE = REPO / ".ci" / "baseline.json"


def _with_images(test: LabelledImages, images: np.ndarray) -> LabelledImages:
    return LabelledImages(images, test.labels, test.ids, test.class_names)


def _labels_shifted(model, test, params, train):
    shifted = (test.labels + 1) % len(test.class_names)
    return model, LabelledImages(test.images, shifted, test.ids, test.class_names)


def _channels_swapped(model, test, params, train):
    return model, _with_images(test, np.ascontiguousarray(test.images[..., ::-1]))


def _planar_bytes_read_as_pixels(model, test, params, train):
    # The CIFAR binary format stores each image as 3 planes of 32x32 bytes; reading those
    # bytes straight into (32, 32, 3) without the transpose scrambles every image.
    planar = np.ascontiguousarray(test.images.transpose(0, 3, 1, 2))
    return model, _with_images(test, planar.reshape(test.images.shape))


def _training_skipped(model, test, params, train):
    # The architecture as built, never fitted: what a train stage that silently ran zero
    # steps (or saved the wrong checkpoint) hands on.
    from cifar10_mlops.model.build import build_model
    from cifar10_mlops.training.runtime import seed_everything

    seed_everything(params.train)
    return build_model(params.model, len(test.class_names)), test


def _retrained_on(train: LabelledImages, params):
    from cifar10_mlops.harness.trial import run_trial

    return run_trial(params, train, train).model


def _training_labels_shuffled(model, test, params, train):
    shuffled = np.random.default_rng(0).permutation(train.labels)
    return _retrained_on(LabelledImages(train.images, shuffled, train.ids), params), test


def _half_the_training_data_dropped(model, test, params, train):
    keep = np.sort(
        np.random.default_rng(0).permutation(len(train.labels))[: len(train.labels) // 2]
    )
    half = LabelledImages(train.images[keep], train.labels[keep], train.ids[keep])
    return _retrained_on(half, params), test


# Each fault trips the committed baseline in benchmarks/gate_calibration.py's table (with the
# ones it does not: docs/training.md, "The regression gate").
FAULTS = {
    "test labels shifted by one class": _labels_shifted,
    "colour channels swapped (BGR)": _channels_swapped,
    "planar CIFAR bytes read as pixels": _planar_bytes_read_as_pixels,
    "training skipped": _training_skipped,
    "training labels shuffled": _training_labels_shuffled,
    "half the training data dropped": _half_the_training_data_dropped,
}


@pytest.fixture(scope="module")
def committed_trial():
    from cifar10_mlops.harness.gate_recipe import gate_recipe_data, gate_recipe_params
    from cifar10_mlops.harness.trial import run_trial

    params = gate_recipe_params(REPO)
    train, test = gate_recipe_data(params)
    return params, run_trial(params, train, test), test, train


def _gate(metrics: dict, tmp_path, baseline=COMMITTED_BASELINE):
    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(metrics))
    return run(
        REPO,
        str(VENV_BIN / "cifar10-mlops"),
        "gate",
        "--metrics",
        str(metrics_path),
        "--baseline",
        str(baseline),
        "--markdown",
        str(tmp_path / "gate.md"),
        check=False,
    )


def test_the_baseline_gates_accuracy_macro_f1_and_loss_within_five_points():
    gated = json.loads(COMMITTED_BASELINE.read_text())["metrics"]
    assert set(gated) == {"accuracy", "macro_f1", "loss"}
    assert all(bound["tolerance"] <= 0.05 for bound in gated.values()), gated


def test_a_fresh_run_of_the_gate_recipe_passes(committed_trial, tmp_path):
    _, trial, _, _ = committed_trial
    passed = _gate(trial.metrics, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    table = (tmp_path / "gate.md").read_text()
    assert table.count("| pass |") == 3, table


OTHER_MACHINE = r"""
import json, sys
from pathlib import Path
from cifar10_mlops.harness.gate_recipe import gate_recipe_data, gate_recipe_params
from cifar10_mlops.harness.trial import run_trial
params = gate_recipe_params(Path(sys.argv[1]))
train, test = gate_recipe_data(params)
print("METRICS " + json.dumps(run_trial(params, train, test).metrics))
"""


def test_the_recipe_on_another_cpus_kernels_passes_the_same_baseline(tmp_path):
    """oneDNN capped to AVX2: the kernels (and the rounding) of an AVX2-only CI runner."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", OTHER_MACHINE, str(REPO)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.split("METRICS ", 1)[1].splitlines()[0])
    passed = _gate(metrics, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_pipeline_trips_the_gate(committed_trial, fault, tmp_path):
    from cifar10_mlops.harness.trial import score

    params, trial, test, train = committed_trial
    model, broken_test = FAULTS[fault](trial.model, test, params, train)
    broken = score(model, broken_test)
    tripped = _gate(broken, tmp_path)
    assert tripped.returncode == 1, f"{fault}: {broken}\n{tripped.stdout}{tripped.stderr}"
    assert "gate: FAIL" in tripped.stdout
