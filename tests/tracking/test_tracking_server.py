"""The team setup, for real: `dvc repro` logging to a separate `mlflow server` over HTTP.

A real tracking server runs as a subprocess on 127.0.0.1 (sqlite backend, proxied artifacts
in a local directory standing in for S3), the tiny pipeline runs with MLFLOW_TRACKING_URI
pointing at it, and everything is read back through the server's REST API: the run, its
params, the per-epoch metric history, the final metrics, the reports and plots byte for
byte, and the model, loaded with mlflow.pyfunc and used to predict.

Artifacts are proxied (`--artifacts-destination`, with the default `--serve-artifacts`): the
pipeline never sees the artifact directory, it uploads through the server
(`mlflow-artifacts:/` URIs), exactly as a client does when the destination is s3://... on a
team server. `--default-artifact-root <dir>` would instead make every client write into that
directory itself, which only works when client and server share a disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.pipeline import TINY_PARAMS, VENV_BIN, make_pipeline_repo
from tests.helpers.tracking_server import (
    EXPERIMENT,
    TrackingServer,
    artifact_files,
    run_with_env,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tracking = TrackingServer(tmp_path_factory.mktemp("tracking-server"))
    try:
        tracking.start()
        yield tracking
    finally:
        tracking.stop()


@pytest.fixture(scope="module")
def repo(server, tmp_path_factory):
    root = make_pipeline_repo(tmp_path_factory.mktemp("server-pipeline") / "repo", TINY_PARAMS)
    try:
        result = run_with_env(
            root, str(VENV_BIN / "dvc"), "repro", extra_env={"MLFLOW_TRACKING_URI": server.url}
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\nmlflow server log:\n{server.log_text()}") from None
    assert "Running stage 'evaluate'" in result.stdout
    return root


@pytest.fixture(scope="module")
def logged(server, repo):
    """(client, the run) read back from the server."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no experiment {EXPERIMENT!r} on the server"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    mlrun = runs[0]
    # What came back, for the record (pytest -rA shows it).
    print(
        f"server {server.url}: experiment {EXPERIMENT!r} ({experiment.experiment_id}), run "
        f"{mlrun.info.run_id} {mlrun.info.status}, artifact_uri {mlrun.info.artifact_uri}"
    )
    print(
        "params:",
        {
            k: mlrun.data.params.get(k)
            for k in ("train.epochs", "data.synthetic.count", "model.backbone")
        },
    )
    print("metrics:", {k: round(v, 4) for k, v in sorted(mlrun.data.metrics.items())})
    return client, mlrun


def test_the_run_lands_on_the_server_and_nothing_in_the_repo(server, repo, logged):
    _, mlrun = logged
    run_info = json.loads((repo / "reports/mlflow_run.json").read_text())
    assert mlrun.info.run_id == run_info["run_id"]
    assert run_info.get("tracking_uri", server.url) == server.url
    assert mlrun.info.status == "FINISHED"
    # Proxied artifacts: the run's artifact URI goes through the server, and the files end
    # up in the server's --artifacts-destination, not beside the pipeline.
    assert mlrun.info.artifact_uri.startswith("mlflow-artifacts:"), mlrun.info.artifact_uri
    assert list(server.artifacts.rglob("metrics.json"))
    # Nothing was written to a local store of the pipeline repository.
    assert not (repo / "mlflow.db").exists()
    assert not (repo / "mlartifacts").exists()
    assert not (repo / "mlruns").exists()
    assert not list(repo.rglob("mlflow.db"))


def test_params_and_metrics_read_back_through_the_server(repo, logged):
    client, mlrun = logged
    params = mlrun.data.params
    assert params["train.epochs"] == "2"
    assert params["data.synthetic.count"] == "200"
    assert params["model.backbone"] == TINY_PARAMS["model"]["backbone"]

    history_rows = (repo / "reports/history.csv").read_text().strip().splitlines()[1:]
    assert 1 <= len(history_rows) <= 2  # early stopping may end sooner
    for name in ("val_loss", "loss", "accuracy", "val_accuracy"):
        steps = [m.step for m in client.get_metric_history(mlrun.info.run_id, name)]
        assert sorted(steps) == list(range(len(history_rows))), (name, steps)

    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert mlrun.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert mlrun.data.metrics["test_macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert mlrun.data.metrics["test_loss"] == pytest.approx(metrics["loss"])


def test_reports_and_plots_download_byte_for_byte(repo, logged, tmp_path):
    client, mlrun = logged
    logged_files = artifact_files(client, mlrun.info.run_id, "reports")
    assert "reports/metrics.json" in logged_files
    pngs = [path for path in logged_files if path.endswith(".png")]
    assert any(path.endswith("confusion_matrix.png") for path in pngs), logged_files

    for artifact in ["reports/metrics.json", *pngs]:
        name = Path(artifact).name
        local = [p for p in (repo / "reports").rglob(name) if p.is_file()]
        assert len(local) == 1, (artifact, local)
        downloaded = Path(client.download_artifacts(mlrun.info.run_id, artifact, str(tmp_path)))
        assert downloaded.read_bytes() == local[0].read_bytes(), artifact


def test_the_logged_model_loads_from_the_server_and_predicts(repo, logged, server, monkeypatch):
    """Loaded as a pyfunc through the runs:/ URI, whichever flavour the pipeline logs."""
    import mlflow
    import mlflow.pyfunc

    _, mlrun = logged
    with np.load(repo / "data/processed/test.npz") as test:
        images = test["images"][:5]
    assert images.dtype == np.uint8

    # set_tracking_uri is process-global (it also sets MLFLOW_TRACKING_URI): undo both.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    mlflow.set_tracking_uri(server.url)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{mlrun.info.run_id}/model")
        predictions = model.predict(images)
    finally:
        mlflow.set_tracking_uri(None)
    assert len(predictions) == len(images)  # one row per image (array or DataFrame)
