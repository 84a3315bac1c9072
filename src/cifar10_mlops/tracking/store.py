"""Where MLflow keeps runs: the tracking URI, and artifacts beside an sqlite store.

By default an sqlite database at the repository root (an absolute path, so `dvc exp run
--temp` and queued experiments log to the same place); MLFLOW_TRACKING_URI overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cifar10_mlops.core import config
from cifar10_mlops.tracking.secrets import redact_credentials

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def tracking_root() -> Path:
    """The repository that owns the MLflow store.

    DVC sets DVC_ROOT to the parent repository when it runs a queued or `--temp` experiment in
    a copy under .dvc/tmp/exps, so every variant logs to the same database.
    """
    dvc_root = os.environ.get("DVC_ROOT")
    root = Path(dvc_root).resolve() if dvc_root else config.ROOT
    parts = root.parts
    if ".dvc" in parts:  # a copy inside .dvc/tmp/exps without DVC_ROOT: use its owner
        root = Path(*parts[: parts.index(".dvc")])
    return root


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tracking_root() / DB_NAME}"


def configured_mlflow():
    """The mlflow module, pointed at this project's store."""
    import mlflow

    uri = tracking_uri()
    if redact_credentials(uri) != uri:
        # MLflow prints "View run ... at: <tracking URI>/#/..." when a run ends, password and all.
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    mlflow.set_tracking_uri(uri)
    return mlflow


def client():
    """An MlflowClient on this project's tracking (and registry) store."""
    return configured_mlflow().MlflowClient()


def _sqlite_db_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix) :].split("?", 1)[0]
    return Path(path).resolve() if path and path != ":memory:" else None


def artifact_location() -> str | None:
    """Artifacts beside an sqlite database, never in ./mlruns of whichever directory ran."""
    uri = tracking_uri()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return (tracking_root() / ARTIFACTS_DIR).as_uri()
    db_path = _sqlite_db_path(uri)
    return (db_path.parent / ARTIFACTS_DIR).as_uri() if db_path else None  # a server decides


def experiment_id(mlflow, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifact_location())
