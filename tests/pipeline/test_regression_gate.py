"""The CI gate trips when the pipeline is broken: the committed recipe with shuffled labels.

The clean half is the committed run itself: reports/metrics.json is what `dvc repro` with the
committed params gives, and CI's pipeline step (.ci/check.sh pipeline) reproduces it live and
gates it against .ci/baseline.json. Training the committed recipe again here would double the
longest part of CI for the same check.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from cifar10_mlops.data.synthetic import write_kaggle_layout
from tests.helpers.pipeline import REPO, VENV_BIN, dvc, make_pipeline_repo, run

pytestmark = pytest.mark.slow

# The committed recipe on the committed embedded images, read as user files (data.source
# local). The shuffled run differs only by its label column and by stopping after 2 epochs:
# shuffled labels cannot be learnt in any number of epochs, and CI time is better spent.
SHUFFLED_EPOCHS = 2
COMMITTED = yaml.safe_load((REPO / "params.yaml").read_text())
COUNT = COMMITTED["data"]["synthetic"]["count"]
SEED = COMMITTED["data"]["synthetic"]["seed"]
COMMITTED_METRICS = REPO / "reports" / "metrics.json"
COMMITTED_BASELINE = REPO / ".ci" / "baseline.json"


def _shuffle_labels(labels_csv, seed=0):
    with open(labels_csv, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    names = [row[1] for row in body]
    np.random.default_rng(seed).shuffle(names)
    with open(labels_csv, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([row[0], name] for row, name in zip(body, names, strict=True))


@pytest.fixture(scope="module")
def shuffled_metrics(tmp_path_factory):
    base = tmp_path_factory.mktemp("gate")
    source = base / "shuffled-data"
    write_kaggle_layout(source, COUNT, seed=SEED)
    _shuffle_labels(source / "trainLabels.csv")
    root = base / "shuffled"
    make_pipeline_repo(
        root,
        {
            "data": {"source": "local", "path": str(source)},
            "train": {"epochs": SHUFFLED_EPOCHS},
        },
    )
    dvc(root, "repro")
    return root / "reports" / "metrics.json"


def _gate(metrics_path, baseline_path):
    return run(
        REPO,
        str(VENV_BIN / "cifar10-mlops"),
        "gate",
        "--metrics",
        str(metrics_path),
        "--baseline",
        str(baseline_path),
        check=False,
    )


def test_committed_baseline_passes_the_committed_run_and_trips_on_shuffled_labels(
    shuffled_metrics,
):
    committed = json.loads(COMMITTED_METRICS.read_text())
    shuffled = json.loads(shuffled_metrics.read_text())
    assert committed["accuracy"] >= 0.4, committed  # the committed recipe really learns
    assert shuffled["accuracy"] <= 0.2, shuffled  # shuffled labels: about chance (0.1)
    passed = _gate(COMMITTED_METRICS, COMMITTED_BASELINE)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    tripped = _gate(shuffled_metrics, COMMITTED_BASELINE)
    assert tripped.returncode == 1, tripped.stdout + tripped.stderr
    assert "FAIL" in tripped.stdout and "accuracy" in tripped.stdout


def test_a_baseline_recorded_from_the_committed_run_trips_on_shuffled_labels(
    shuffled_metrics, tmp_path
):
    """The committed tolerance is tight enough: recording a new baseline from a good run
    (what a maintainer does after improving the recipe) still catches the broken one."""
    committed = json.loads(COMMITTED_METRICS.read_text())
    tolerance = json.loads(COMMITTED_BASELINE.read_text())["tolerance"]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps(
            {
                "tolerance": tolerance,
                "metrics": {
                    "accuracy": {"min": committed["accuracy"]},
                    "macro_f1": {"min": committed["macro_f1"]},
                },
            }
        )
    )
    assert _gate(COMMITTED_METRICS, baseline).returncode == 0
    tripped = _gate(shuffled_metrics, baseline)
    assert tripped.returncode == 1, tripped.stdout + tripped.stderr
