"""MLflow tracking against a real sqlite store in a temporary directory."""

from __future__ import annotations

import json

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from cifar10_mlops import config, tracking
from cifar10_mlops.params import Params


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    yield MlflowClient(tracking_uri=uri)
    while mlflow.active_run():
        mlflow.end_run()


def test_default_store_is_sqlite_at_the_repository_root_by_absolute_path(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{config.ROOT / 'mlflow.db'}"
    assert config.ROOT.is_absolute()


def test_experiment_copies_log_to_the_parent_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")
    monkeypatch.setattr(config, "ROOT", tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc")
    assert tracking.tracking_root() == tmp_path


def test_tracking_uri_env_overrides(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"


def test_passwords_in_tracking_uris_are_redacted():
    assert tracking._redacted("postgresql://user:s3cret@db:5432/mlflow") == "postgresql://user:***@db:5432/mlflow"
    assert tracking._redacted("sqlite:////x/mlflow.db") == "sqlite:////x/mlflow.db"


def test_data_version_is_a_content_hash(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert tracking.data_version([a]) == tracking.data_version([b])
    b.write_bytes(b"other")
    assert tracking.data_version([a]) != tracking.data_version([b])


def test_one_run_across_train_and_evaluate(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-demo")
    params = Params()
    info_path = tmp_path / "reports" / "mlflow_run.json"
    run_id = tracking.start_pipeline_run(params, "sha256:0123456789abcdef", info_path)
    tracking.EpochMetricsLogger().on_epoch_end(0, {"loss": 2.0, "val_loss": 2.1})
    tracking.EpochMetricsLogger().on_epoch_end(1, {"loss": 1.5, "val_loss": 1.7})
    tracking.end_run()
    assert json.loads(info_path.read_text())["run_id"] == tracking.read_run_id(info_path) == run_id

    model = keras.Sequential([keras.Input((32, 32, 3), dtype="uint8"), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    report = tmp_path / "reports" / "metrics.json"
    report.write_text('{"accuracy": 0.5}\n')
    with tracking.resume_run(run_id):
        tracking.log_final_results({"accuracy": 0.5, "macro_f1": 0.4}, [report], model,
                                   np.zeros((2, 32, 32, 3), np.uint8))

    run = store.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == str(params.train.epochs)
    assert run.data.params["data.path"] == "null"
    assert run.data.tags["data_version"] == "sha256:0123456789abcdef"
    assert run.data.tags["dvc_experiment"] == "exp-demo"
    assert [m.step for m in store.get_metric_history(run_id, "loss")] == [0, 1]
    assert run.data.metrics["test_accuracy"] == 0.5
    assert [a.path for a in store.list_artifacts(run_id, "reports")] == ["reports/metrics.json"]
    loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert loaded.predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 10)


def test_epoch_logger_never_starts_a_stray_run(store):
    tracking.EpochMetricsLogger().on_epoch_end(0, {"loss": 1.0})
    assert mlflow.active_run() is None
    assert store.search_experiments()[0].name == "Default"
    assert store.search_runs(["0"]) == []
