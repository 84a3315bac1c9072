"""MLflow tracking against a real sqlite store in a temporary directory."""

from __future__ import annotations

import hashlib
import json
import os

import mlflow
import numpy as np
import pytest

from cifar10_mlops.core import config
from cifar10_mlops.core.params import Params
from cifar10_mlops.tracking import (
    epoch_logger,
    final_results,
    owners,
    provenance,
    run_opening,
    secrets,
)
from cifar10_mlops.tracking import store as tracking_store
from tests.helpers.models import tiny_keras_model_file


def test_default_store_is_sqlite_at_the_repository_root_by_absolute_path(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_store.tracking_uri() == f"sqlite:///{config.ROOT / 'mlflow.db'}"
    assert config.ROOT.is_absolute()


def test_experiment_copies_log_to_the_parent_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_store.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")
    monkeypatch.setattr(config, "ROOT", tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc")
    assert tracking_store.tracking_root() == tmp_path


def test_tracking_uri_env_overrides(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_store.tracking_uri() == "http://127.0.0.1:5999"


@pytest.mark.parametrize(
    "text, redacted",
    [
        ("postgresql://user:s3cret@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("https://ghp_token123@host/x.tar.gz", "https://***@host/x.tar.gz"),
        ("https://user:p@ss@host/x?a=b@c", "https://***@host/x?a=b@c"),  # raw '@' in a password
        ("see https://u:p@a/x and s3://k:s@b/y", "see https://***@a/x and s3://***@b/y"),
        ("sqlite:////x/mlflow.db", "sqlite:////x/mlflow.db"),
        ("https://host/@scope/pkg", "https://host/@scope/pkg"),  # '@' in the path is no user
        ("none", "none"),
    ],
)
def test_credentials_in_urls_are_redacted(text, redacted):
    assert secrets.redact_credentials(text) == redacted


def test_loggable_params_redact_url_user_info_and_spell_null():
    params = Params.model_validate(
        {"data": {"cifar10": {"url": "https://user:s3cr3t-pass@mirror.example/c.tar.gz"}}}
    )
    logged = secrets.loggable_params(params)
    assert logged["data.cifar10.url"] == "https://***@mirror.example/c.tar.gz"
    assert logged["data.path"] == "null"
    assert logged["train.epochs"] == params.train.epochs
    assert "s3cr3t" not in json.dumps(logged)


def test_a_password_in_the_tracking_uri_switches_off_mlflows_run_url_line(monkeypatch):
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:pw@mlflow.example")
    tracking_store.client()
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


def test_artifacts_live_beside_an_sqlite_store_given_by_uri(store, tmp_path):
    run_id = run_opening.start_pipeline_run(Params(), "sha256:0", tmp_path / "run.json")
    run_opening.end_run()
    assert store.get_run(run_id).info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())


def test_training_digest_follows_training_params_and_data_only():
    base = provenance.training_digest(Params(), "sha256:a")
    assert provenance.training_digest(Params(), "sha256:a") == base
    assert provenance.training_digest(Params(), "sha256:b") != base
    assert (
        provenance.training_digest(Params.model_validate({"train": {"epochs": 3}}), "sha256:a")
        != base
    )
    assert (
        provenance.training_digest(
            Params.model_validate({"evaluate": {"misclassified_grid": 0}}), "sha256:a"
        )
        == base
    )


def test_data_version_is_a_content_hash(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert provenance.data_version([a]) == provenance.data_version([b])
    b.write_bytes(b"other")
    assert provenance.data_version([a]) != provenance.data_version([b])
    # Both files as one stream: the value MLflow runs have been tagged with all along.
    assert (
        provenance.data_version([a, b]) == "sha256:" + hashlib.sha256(b"sameother").hexdigest()[:16]
    )


def test_one_run_across_train_and_evaluate(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-demo")
    params = Params()
    info_path = tmp_path / "reports" / "mlflow_run.json"
    run_id = run_opening.start_pipeline_run(params, "sha256:0123456789abcdef", info_path)
    epoch_logger.EpochMetricsLogger().on_epoch_end(0, {"loss": 2.0, "val_loss": 2.1})
    epoch_logger.EpochMetricsLogger().on_epoch_end(1, {"loss": 1.5, "val_loss": 1.7})
    run_opening.end_run()
    assert (
        json.loads(info_path.read_text())["run_id"] == run_opening.read_run_id(info_path) == run_id
    )

    model = tiny_keras_model_file(tmp_path / "model.keras")
    report = tmp_path / "reports" / "metrics.json"
    report.write_text('{"accuracy": 0.5}\n')
    with run_opening.resume_run(run_id):
        final_results.log_final_results(
            {"accuracy": 0.5, "macro_f1": 0.4}, [report], model, np.zeros((2, 32, 32, 3), np.uint8)
        )

    run = store.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == str(params.train.epochs)
    assert run.data.params["data.path"] == "null"
    assert run.data.tags["data_version"] == "sha256:0123456789abcdef"
    assert run.data.tags["dvc_experiment"] == "exp-demo"
    assert run.data.tags[owners.PID_TAG] == str(os.getpid())
    assert run.data.tags[run_opening.ATTEMPTS_TAG] == "1"
    assert [m.step for m in store.get_metric_history(run_id, "loss")] == [0, 1]
    assert run.data.metrics["test_accuracy"] == 0.5
    assert [a.path for a in store.list_artifacts(run_id, "reports")] == ["reports/metrics.json"]
    loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert loaded.predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 12)


def test_epoch_logger_never_starts_a_stray_run(store):
    epoch_logger.EpochMetricsLogger().on_epoch_end(0, {"loss": 1.0})
    assert mlflow.active_run() is None
    assert store.search_experiments()[0].name == "Default"
    assert store.search_runs(["0"]) == []
