"""No credential ever lands in MLflow: params, tags, artifacts, the registry, or the output.

Each test puts unique secrets where a user keeps them (a password in data.cifar10.url, the
Kaggle key in KAGGLE_KEY and kaggle.json, a password in MLFLOW_TRACKING_URI), runs the real
logging path, then reads every byte of the MLflow store back looking for them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from cifar10_mlops.core import config
from cifar10_mlops.core.params import Params
from cifar10_mlops.tracking import epoch_logger, final_results, lifecycle, registry, run_opening
from tests.helpers.models import tiny_keras_model_file
from tests.helpers.pipeline import TINY_PARAMS, deep_update, dvc, make_pipeline_repo
from tests.helpers.tracking_server import TrackingServer

URL_PASSWORD = "s3cr3t-pass"
SECRET_URL = f"https://user:{URL_PASSWORD}@mirror.example/cifar-10-binary.tar.gz"
KAGGLE_KEY = "kaggle-key-3b1f9c0e7d2a4f86"
SECRETS = [URL_PASSWORD, KAGGLE_KEY]


@pytest.fixture
def kaggle_credentials(tmp_path, monkeypatch):
    """The Kaggle key in the environment and in a kaggle.json, as a user would have them."""
    config_dir = tmp_path / "kaggle-config"
    config_dir.mkdir()
    (config_dir / "kaggle.json").write_text(json.dumps({"username": "someone", "key": KAGGLE_KEY}))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", KAGGLE_KEY)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    return config_dir


def files_holding(secrets: list[str], *roots: Path, skip: Path | None = None) -> list[str]:
    """Every file in `roots` (files, or directories walked whole; `skip` aside) whose bytes
    contain one of `secrets`."""
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*"))]
    found = []
    for path in files:
        if path.is_file() and (skip is None or skip not in path.parents):
            data = path.read_bytes()
            found += [f"{path}: {s}" for s in secrets if s.encode() in data]
    return found


def log_train_and_evaluate(tmp_path: Path, params: Params) -> str:
    """What the train and evaluate stages log, through the same calls."""
    with lifecycle.run_lifecycle():
        run_id = run_opening.start_pipeline_run(
            params, "sha256:00000000000000aa", tmp_path / "run.json"
        )
        epoch_logger.EpochMetricsLogger().on_epoch_end(0, {"loss": 2.0, "val_loss": 2.1})
    report = tmp_path / "reports" / "metrics.json"
    report.parent.mkdir(exist_ok=True)
    report.write_text('{"accuracy": 0.5}\n')
    with lifecycle.run_lifecycle():
        run_opening.resume_run(run_id)
        final_results.log_final_results(
            {"accuracy": 0.5, "macro_f1": 0.4},
            [report],
            tiny_keras_model_file(tmp_path / "model.keras"),
            np.zeros((2, 32, 32, 3), np.uint8),
        )
        print(registry.register_run_model(run_id, "secret-check").message())
    run_opening.clear_training_state(run_id)
    return run_id


def test_the_logging_path_stores_no_credential(tmp_path, monkeypatch, kaggle_credentials, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(config, "TRAINING_STATE_DIR", tmp_path / ".training_state")
    params = Params.model_validate({"data": {"cifar10": {"url": SECRET_URL}}})

    run_id = log_train_and_evaluate(tmp_path, params)

    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert (
        run.data.params["data.cifar10.url"] == "https://***@mirror.example/cifar-10-binary.tar.gz"
    )
    assert (tmp_path / "mlartifacts").is_dir()  # the artifacts really are in the scanned tree
    assert files_holding(SECRETS, tmp_path, skip=kaggle_credentials) == []
    output = capfd.readouterr()
    assert not [s for s in SECRETS if s in output.out + output.err]
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real local tracking server; the client reaches it through a URI with a password.
    Yields its port."""
    with TrackingServer(tmp_path) as server:
        yield server.url.rsplit(":", 1)[1]


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_never_printed_or_stored(
    tmp_path, monkeypatch, mlflow_server, capfd
):
    password = "tracking-pw-5e8d1a"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{password}@127.0.0.1:{mlflow_server}")
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    monkeypatch.setattr(config, "TRAINING_STATE_DIR", tmp_path / ".training_state")

    log_train_and_evaluate(tmp_path, Params())

    info = json.loads((tmp_path / "run.json").read_text())
    assert info["tracking_uri"] == f"http://***@127.0.0.1:{mlflow_server}"
    assert files_holding([password], tmp_path) == []  # server store, artifacts, state files
    output = capfd.readouterr()
    assert password not in output.out + output.err  # MLflow's "View run at <URI>" line
    while mlflow.active_run():
        mlflow.end_run()


@pytest.mark.slow
def test_dvc_repro_stores_no_credential(tmp_path, kaggle_credentials):
    changes = deep_update(copy.deepcopy(TINY_PARAMS), {"data": {"cifar10": {"url": SECRET_URL}}})
    repo = make_pipeline_repo(tmp_path / "repo", changes)

    result = dvc(repo, "repro")

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    run_id = json.loads((repo / "reports" / "mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert (
        run.data.params["data.cifar10.url"] == "https://***@mirror.example/cifar-10-binary.tar.gz"
    )
    assert "is the first champion" in result.stdout
    store = [repo / "mlflow.db", repo / "mlartifacts"]
    assert len([p for p in store[1].rglob("*") if p.is_file()]) > 5  # reports, plots, model
    assert files_holding(SECRETS, *store, repo / "reports", repo / "models") == []
    assert not [s for s in SECRETS if s in result.stdout + result.stderr]
