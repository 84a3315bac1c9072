"""The CI gate trips when the pipeline is broken: the same run with shuffled labels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from pipeline_helpers import REPO, VENV_BIN, dvc, make_pipeline_repo, run

from cifar10_mlops.synthetic import write_kaggle_layout

pytestmark = pytest.mark.slow

# The committed recipe on the committed embedded images, read as user files (data.source
# local). The shuffled run differs only by its label column and by stopping after 2 epochs:
# shuffled labels cannot be learnt in any number of epochs, and CI time is better spent.
SHUFFLED_EPOCHS = 2
COMMITTED = yaml.safe_load((REPO / "params.yaml").read_text())
COUNT = COMMITTED["data"]["synthetic"]["count"]
SEED = COMMITTED["data"]["synthetic"]["seed"]


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


def _pipeline_accuracy(root, source_dir, **train):
    make_pipeline_repo(root, {"data": {"source": "local", "path": str(source_dir)}, "train": train})
    dvc(root, "repro")
    return root / "reports" / "metrics.json"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("gate")
    clean, shuffled = base / "clean-data", base / "shuffled-data"
    write_kaggle_layout(clean, COUNT, seed=SEED)
    write_kaggle_layout(shuffled, COUNT, seed=SEED)
    _shuffle_labels(shuffled / "trainLabels.csv")
    return {
        "clean": _pipeline_accuracy(base / "clean", clean),
        "shuffled": _pipeline_accuracy(base / "shuffled", shuffled, epochs=SHUFFLED_EPOCHS),
        "base": base,
    }


def _gate(metrics_path, baseline_path):
    return run(REPO, str(VENV_BIN / "cifar10-mlops"), "gate", "--metrics", str(metrics_path),
               "--baseline", str(baseline_path), check=False)


def test_gate_passes_the_clean_run_and_trips_on_shuffled_labels(runs):
    clean = json.loads(runs["clean"].read_text())
    shuffled = json.loads(runs["shuffled"].read_text())
    assert clean["accuracy"] >= 0.4, clean  # the clean run really learns
    assert shuffled["accuracy"] <= 0.2, shuffled  # shuffled labels: about chance (0.1)

    # A baseline recorded from the clean run, with the committed tolerance.
    committed = json.loads((REPO / ".ci" / "baseline.json").read_text())
    baseline = runs["base"] / "baseline.json"
    baseline.write_text(json.dumps({
        "tolerance": committed["tolerance"],
        "metrics": {"accuracy": {"min": clean["accuracy"]}, "macro_f1": {"min": clean["macro_f1"]}},
    }))
    passed = _gate(runs["clean"], baseline)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    tripped = _gate(runs["shuffled"], baseline)
    assert tripped.returncode == 1, tripped.stdout + tripped.stderr
    assert "FAIL" in tripped.stdout and "accuracy" in tripped.stdout


def test_committed_baseline_passes_the_clean_run_and_trips_on_shuffled_labels(runs):
    committed = REPO / ".ci" / "baseline.json"
    passed = _gate(runs["clean"], committed)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    tripped = _gate(runs["shuffled"], committed)
    assert tripped.returncode == 1, tripped.stdout + tripped.stderr
