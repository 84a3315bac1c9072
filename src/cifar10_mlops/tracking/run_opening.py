"""Opening the pipeline's MLflow run: train opens it (a new run, or the unfinished run of an
earlier attempt at the same training), evaluate reopens it; the stages call runs.py.

The run's id travels in two files, one record written once by train:
- reports/mlflow_run.json, train's output and evaluate's dependency: the hand-off. DVC
  deletes it before train reruns, and restores it with the outputs it belongs to.
- .training_state/mlflow_run.json (outside DVC's outputs), the same record with the digest of
  the training params and the data version: it survives a failed or killed attempt, so the
  next train with the same digest reopens that run when it did not finish (tag
  cifar10_mlops.attempts counts the attempts); evaluate's success clears it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from cifar10_mlops.core import config
from cifar10_mlops.core.atomic import atomic_write_json
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import Params
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.tracking import store
from cifar10_mlops.tracking.datasets import log_split
from cifar10_mlops.tracking.description import write_note
from cifar10_mlops.tracking.naming import base_name, unique_name
from cifar10_mlops.tracking.owners import mark_orphaned_runs_killed, owner_is_gone, owner_tags
from cifar10_mlops.tracking.provenance import git_commit, training_digest
from cifar10_mlops.tracking.secrets import loggable_params, redact_credentials
from cifar10_mlops.tracking.store import configured_mlflow, tracking_uri

STATE_FILE = "mlflow_run.json"  # in config.TRAINING_STATE_DIR
ATTEMPTS_TAG = "cifar10_mlops.attempts"
DIGEST_TAG = "cifar10_mlops.params_digest"


def _state_path(state_path: Path | None) -> Path:
    return Path(state_path) if state_path else config.TRAINING_STATE_DIR / STATE_FILE


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _unfinished_run(mlflow_client, state: dict | None, digest: str, experiment_id: str):
    """The run of an earlier attempt at this same training that did not finish, if any."""
    expected = {
        "digest": digest,
        "experiment_id": experiment_id,
        "tracking_uri": redact_credentials(tracking_uri()),
    }
    if not state or any(state.get(key) != value for key, value in expected.items()):
        return None
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow_client.get_run(state["run_id"])
    except (MlflowException, KeyError):
        return None
    if run.info.lifecycle_stage != "active" or run.info.status == "FINISHED":
        return None
    if run.info.status == "RUNNING" and not owner_is_gone(run.data.tags):
        return None  # a live process is still training it
    return run


def _run_tags(params: Params, data_version_tag: str, digest: str) -> dict[str, str]:
    tags = {
        "mlflow.source.git.commit": git_commit(config.ROOT),
        "data_version": data_version_tag,
        "data_source": params.data.source,
        "pipeline": "dvc repro",
        DIGEST_TAG: digest,
        **owner_tags(),
    }
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        tags["dvc_experiment"] = exp_name
    return tags


def _system_metrics(mlflow, params: Params) -> bool:
    """Whether this run logs system metrics: asked for, and psutil (which MLflow reads them
    with) is installed; MLflow would raise without it."""
    if not params.mlflow.system_metrics:
        return False
    if importlib.util.find_spec("psutil") is None:
        print("mlflow: psutil is not installed, so this run logs no system metrics")
        return False
    mlflow.set_system_metrics_sampling_interval(params.mlflow.system_metrics_interval_s)
    return True


def _reopen(mlflow, previous, tags: dict[str, str], params: dict[str, Any], system: bool):
    # The run keeps its name: a resumed attempt is the same run in the list.
    run = mlflow.start_run(run_id=previous.info.run_id, log_system_metrics=system)
    try:
        attempts = int(previous.data.tags.get(ATTEMPTS_TAG, "1")) + 1
    except ValueError:
        attempts = 2
    mlflow.set_tags({**tags, ATTEMPTS_TAG: str(attempts)})
    # MLflow refuses to change a logged param; only params outside the digest can differ.
    mlflow.log_params({k: v for k, v in params.items() if k not in previous.data.params})
    print(
        f"mlflow: continuing run {previous.info.run_id} (attempt {attempts}; "
        f"the last attempt ended {previous.info.status})"
    )
    return run


def start_pipeline_run(
    params: Params,
    data_version_tag: str,
    run_info_path: Path,
    state_path: Path | None = None,
    train_data: LabelledImages | None = None,
) -> str:
    """Open this pipeline run's MLflow run and write its id to `run_info_path`.

    The run is the unfinished run of an earlier attempt at the same training (same digest,
    found through the state file) or else a new one, named after what it is (naming.py), with
    every param and the tags logged. With `train_data`, the training arrays are logged as its
    `training` dataset. The run's description says what it trains.
    """
    mlflow = configured_mlflow()
    mlflow_client = mlflow.MlflowClient()
    experiment_id = store.experiment_id(mlflow, params.mlflow.experiment)
    mark_orphaned_runs_killed(mlflow_client, experiment_id)
    state_file = _state_path(state_path)
    digest = training_digest(params, data_version_tag)
    tags = _run_tags(params, data_version_tag, digest)
    previous = _unfinished_run(mlflow_client, _read_json(state_file), digest, experiment_id)
    system = _system_metrics(mlflow, params)
    if previous is not None:
        run = _reopen(mlflow, previous, tags, loggable_params(params), system)
    else:
        images = None if train_data is None else len(train_data.labels)
        name = unique_name(
            mlflow_client, experiment_id, base_name(params, images, tags.get("dvc_experiment"))
        )
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=name,
            tags={**tags, ATTEMPTS_TAG: "1"},
            log_system_metrics=system,
        )
        mlflow.log_params(loggable_params(params))
    run_id = run.info.run_id
    if train_data is not None:
        log_split(params.data, train_data, "train", data_version_tag)
    write_note(run_id, mlflow_client)
    record = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "experiment": params.mlflow.experiment,
        "tracking_uri": redact_credentials(tracking_uri()),
    }
    atomic_write_json(run_info_path, record)
    atomic_write_json(state_file, {**record, "digest": digest})
    return run_id


def clear_training_state(run_id: str, state_path: Path | None = None) -> None:
    """The pipeline finished: the next train starts a fresh run. A state file naming another
    run (a newer training) is left alone."""
    path = _state_path(state_path)
    state = _read_json(path)
    if state is not None and state.get("run_id") == run_id:
        path.unlink(missing_ok=True)


def read_run_id(run_info_path: Path) -> str:
    try:
        return json.loads(Path(run_info_path).read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        raise PipelineError(
            f"{run_info_path}: missing or unreadable MLflow run id; run `dvc repro -f train`"
        ) from None


def resume_run(run_id: str):
    """Reopen the pipeline's run, owned by this process from now on. Returns MLflow's
    ActiveRun: use it in `run_lifecycle()`, or as a context manager of its own."""
    from mlflow.exceptions import MlflowException

    mlflow = configured_mlflow()
    mlflow_client = mlflow.MlflowClient()
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException:
        raise PipelineError(
            f"{config.RUN_INFO_JSON}: MLflow run {run_id} is not in "
            f"{redact_credentials(tracking_uri())}; run `dvc repro -f train`"
        ) from None
    mark_orphaned_runs_killed(mlflow_client, run.info.experiment_id)
    active = mlflow.start_run(run_id=run_id)
    mlflow.set_tags(owner_tags())
    return active


def end_run(status: str = "FINISHED") -> None:
    configured_mlflow().end_run(status=status)
