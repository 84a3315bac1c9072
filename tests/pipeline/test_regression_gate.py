"""The CI gate (.ci/baseline.json) passes the committed recipe and trips on broken pipelines.

Live: the committed params train once here, on the committed embedded images split as the
preprocess stage splits them (cifar10_mlops.harness.trial: the stages' own train and score
functions). That fresh run must pass the committed baseline, as must the committed
reports/metrics.json (which CI's pipeline step reproduces with `make repro` and gates again).
Then the pipeline is broken on purpose, one fault at a time, around that trained model, and
`cifar10-mlops gate` must fail each one: faults that every CIFAR pipeline has met, which leave
the code running and the numbers plausible-looking.

How the baseline's tolerances were set (the spread over seeds) and how training-time faults
(shuffled or shifted labels, normalisation or augmentation off) fare against it:
benchmarks/gate_calibration.py and docs/training.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from cifar10_mlops.data.arrays import LabelledImages
from tests.helpers.pipeline import REPO, VENV_BIN, run

pytestmark = pytest.mark.slow

COMMITTED_PARAMS = REPO / "params.yaml"
COMMITTED_METRICS = REPO / "reports" / "metrics.json"
COMMITTED_BASELINE = REPO / ".ci" / "baseline.json"


def _with_images(test: LabelledImages, images: np.ndarray) -> LabelledImages:
    return LabelledImages(images, test.labels, test.ids, test.class_names)


def _labels_shifted(model, test, params):
    shifted = (test.labels + 1) % len(test.class_names)
    return model, LabelledImages(test.images, shifted, test.ids, test.class_names)


def _channels_swapped(model, test, params):
    return model, _with_images(test, np.ascontiguousarray(test.images[..., ::-1]))


def _planar_bytes_read_as_pixels(model, test, params):
    # The CIFAR binary format stores each image as 3 planes of 32x32 bytes; reading those
    # bytes straight into (32, 32, 3) without the transpose scrambles every image.
    planar = np.ascontiguousarray(test.images.transpose(0, 3, 1, 2))
    return model, _with_images(test, planar.reshape(test.images.shape))


def _training_skipped(model, test, params):
    # The architecture as built, never fitted: what a train stage that silently ran zero
    # steps (or saved the wrong checkpoint) hands on.
    from cifar10_mlops.model.build import build_model
    from cifar10_mlops.training.runtime import seed_everything

    seed_everything(params.train)
    return build_model(params.model, len(test.class_names)), test


FAULTS = {
    "test labels shifted by one class": _labels_shifted,
    "colour channels swapped (BGR)": _channels_swapped,
    "planar CIFAR bytes read as pixels": _planar_bytes_read_as_pixels,
    "training skipped": _training_skipped,
}


@pytest.fixture(scope="module")
def committed_trial(tmp_path_factory):
    from cifar10_mlops.core.params import parse_params
    from cifar10_mlops.data.raw_layout import load_split
    from cifar10_mlops.data.synthetic import write_kaggle_layout
    from cifar10_mlops.harness.trial import run_trial

    params = parse_params(yaml.safe_load(COMMITTED_PARAMS.read_text()), COMMITTED_PARAMS)
    data_dir = tmp_path_factory.mktemp("embedded")
    write_kaggle_layout(data_dir, params.data.synthetic.count, params.data.synthetic.seed)
    train, test = load_split(data_dir, params.split)
    return params, run_trial(params, train, test), test


def _gate(metrics: dict | None, tmp_path, baseline=COMMITTED_BASELINE):
    metrics_path = COMMITTED_METRICS
    if metrics is not None:
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
        check=False,
    )


def test_the_committed_run_passes_the_committed_baseline(tmp_path):
    passed = _gate(None, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    gated = json.loads(COMMITTED_BASELINE.read_text())["metrics"]
    assert {"accuracy", "macro_f1", "loss"} <= set(gated)  # the loss is gated too


def test_a_fresh_run_of_the_committed_recipe_passes(committed_trial, tmp_path):
    _, trial, _ = committed_trial
    assert trial.metrics["accuracy"] >= 0.3, trial.metrics  # it really learns (chance: 0.1)
    passed = _gate(trial.metrics, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_pipeline_trips_the_gate(committed_trial, fault, tmp_path):
    from cifar10_mlops.harness.trial import score

    params, trial, test = committed_trial
    model, broken_test = FAULTS[fault](trial.model, test, params)
    broken = score(model, broken_test)
    tripped = _gate(broken, tmp_path)
    assert tripped.returncode == 1, f"{fault}: {broken}\n{tripped.stdout}{tripped.stderr}"
    assert "gate: FAIL" in tripped.stdout
