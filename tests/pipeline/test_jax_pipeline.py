"""The whole pipeline on the second Keras backend: `train.backend: jax` through a real
`dvc repro`, then train and evaluate again, byte for byte.

The tiny params of the slow tests with `train.backend: jax`: train and evaluate run on JAX (the
MLflow run records it, and DVC reruns both when it changes), and forcing train and evaluate
to run again on the same machine writes the same reports/metrics.json to the byte. The second
run is those two stages only (`--single-item`): download and preprocess are not on JAX, and
their outputs are the same files either way (DVC's hashes in dvc.lock). The training history
matches to the byte too, epoch by epoch.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers.pipeline import TINY_PARAMS, deep_update, dvc, make_pipeline_repo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    params = deep_update(json.loads(json.dumps(TINY_PARAMS)), {"train": {"backend": "jax"}})
    repo = make_pipeline_repo(tmp_path_factory.mktemp("jax") / "repo", params)
    first = dvc(repo, "repro")
    first_metrics = (repo / "reports/metrics.json").read_bytes()
    first_history = (repo / "reports/history.csv").read_bytes()
    second = dvc(repo, "repro", "--force", "--single-item", "train", "evaluate")
    return repo, first, first_metrics, second, first_history


def test_same_params_on_jax_give_byte_identical_metrics_twice(runs):
    repo, first, first_metrics, second, first_history = runs
    assert "Running stage 'train'" in second.stdout  # really trained again
    assert "Running stage 'evaluate'" in second.stdout  # and evaluated again
    assert (repo / "reports/metrics.json").read_bytes() == first_metrics
    assert (repo / "reports/history.csv").read_bytes() == first_history  # epoch by epoch
    assert 0.0 <= json.loads(first_metrics)["accuracy"] <= 1.0


def test_train_and_evaluate_depend_on_the_backend_and_mlflow_records_it(runs):
    repo = runs[0]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for stage in ("train", "evaluate"):
        recorded = lock[stage]["params"]["params.yaml"]
        # A stage that reads the whole train section records it whole; evaluate only the key.
        backend = recorded.get("train.backend") or recorded.get("train", {}).get("backend")
        assert backend == "jax", stage

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-mlops")
    (latest, *_) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"]
    )
    assert latest.info.status == "FINISHED"
    assert latest.data.params["train.backend"] == "jax"
    assert "test_accuracy" in latest.data.metrics
