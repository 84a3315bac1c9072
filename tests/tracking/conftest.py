"""The tracking tests' store: a fresh sqlite MLflow store per test, as MLFLOW_TRACKING_URI."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from cifar10_mlops.core import config


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setattr(config, "TRAINING_STATE_DIR", tmp_path / ".training_state")
    yield MlflowClient(tracking_uri=uri)
    while mlflow.active_run():
        mlflow.end_run()
