"""MLflow: one run per pipeline run, opened by train and finished by evaluate.

The train stage creates the run and writes its id to reports/mlflow_run.json (a train output
and an evaluate dependency); evaluate reopens that run, so one run holds both. When DVC
restores train and evaluate from its run cache, no stage runs and no new MLflow run is
logged: reports/mlflow_run.json then still names the run that produced the restored outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import keras

from cifar10_mlops import config
from cifar10_mlops.atomic import atomic_write_json
from cifar10_mlops.errors import PipelineError
from cifar10_mlops.params import Params, flatten

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


def _mlflow():
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def _experiment_id(mlflow, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        # Absolute artifact root beside the database, not ./mlruns of whichever copy ran.
        location = (tracking_root() / ARTIFACTS_DIR).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def git_commit(root: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def data_version(paths: Iterable[Path]) -> str:
    """Content hash of the processed arrays: the same data gives the same version anywhere."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def start_pipeline_run(params: Params, data_version_tag: str, run_info_path: Path) -> str:
    """Create the run for this pipeline run, log every param, and write its id to disk."""
    mlflow = _mlflow()
    experiment_id = _experiment_id(mlflow, params.mlflow.experiment)
    tags = {
        "mlflow.source.git.commit": git_commit(config.ROOT),
        "data_version": data_version_tag,
        "data_source": params.data.source,
        "pipeline": "dvc repro",
    }
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        tags["dvc_experiment"] = exp_name
    run = mlflow.start_run(experiment_id=experiment_id, tags=tags)
    # MLflow stores params as strings; spell YAML's null as it is written in params.yaml.
    mlflow.log_params({key: "null" if v is None else v for key, v in flatten(params).items()})
    info = {
        "run_id": run.info.run_id,
        "experiment_id": experiment_id,
        "experiment": params.mlflow.experiment,
        "tracking_uri": _redacted(tracking_uri()),
    }
    atomic_write_json(run_info_path, info)
    return run.info.run_id


def _redacted(uri: str) -> str:
    """Never write a password embedded in a tracking URI to disk."""
    parts = urlsplit(uri)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def read_run_id(run_info_path: Path) -> str:
    try:
        return json.loads(Path(run_info_path).read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        raise PipelineError(
            f"{run_info_path}: missing or unreadable MLflow run id; run `dvc repro -f train`"
        ) from None


def resume_run(run_id: str):
    """Reopen the pipeline's run (a context manager that ends it FINISHED, or FAILED on error)."""
    return _mlflow().start_run(run_id=run_id)


def end_run(status: str = "FINISHED") -> None:
    _mlflow().end_run(status=status)


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs every epoch's Keras metrics (and the learning rate) to MLflow with step=epoch."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import mlflow

        metrics = {key: float(value) for key, value in (logs or {}).items()}
        # Only inside the pipeline's run: never let MLflow start a stray run of its own.
        if metrics and mlflow.active_run() is not None:
            mlflow.log_metrics(metrics, step=epoch)


def log_final_results(
    metrics: dict[str, float],
    artifacts: Iterable[Path],
    model: keras.Model,
    example_images,
) -> None:
    """Final metrics (prefixed test_ so they never collide with the per-epoch series), the
    reports and plots, and the model with a signature and an input example."""
    import mlflow
    import mlflow.keras
    from mlflow.models import infer_signature

    mlflow.log_metrics({f"test_{key}": float(value) for key, value in metrics.items()})
    for path in artifacts:
        if Path(path).is_file():
            mlflow.log_artifact(str(path), artifact_path="reports")
    probabilities = model.predict(example_images, verbose=0)
    with tempfile.TemporaryDirectory() as scratch:
        # mlflow.keras.log_model with an input example fails to create its own directory
        # (mlflow/mlflow#16183); saving into a directory we made, then logging it, works.
        local = Path(scratch) / "model"
        local.mkdir()
        mlflow.keras.save_model(
            model,
            str(local),
            signature=infer_signature(example_images, probabilities),
            input_example=example_images,
            # Listed, not inferred: inference would load the model again in a subprocess.
            pip_requirements=[f"keras=={keras.__version__}", _tensorflow_requirement()],
        )
        mlflow.log_artifacts(str(local), artifact_path="model")


def _tensorflow_requirement() -> str:
    import tensorflow as tf

    return f"tensorflow=={tf.__version__}"
