"""MLflow: one run per pipeline run, opened by train and finished by evaluate.

The train stage opens the run and writes its id to reports/mlflow_run.json (a train output
and an evaluate dependency); evaluate reopens that run, so one run holds both. When DVC
restores train and evaluate from its run cache, no stage runs and no new MLflow run is
logged: reports/mlflow_run.json then still names the run that produced the restored outputs.

Run lifecycle:
- `run_lifecycle()` wraps a stage: it ends the run FINISHED on success, KILLED on Ctrl-C or
  SIGTERM, FAILED on any other exception.
- A process killed outright (SIGKILL, out of memory, power cut) cannot end its run, so every
  run records its owner (tags cifar10_mlops.pid / .host / .pid_start), and each stage start
  marks RUNNING runs whose owner process on this host is gone KILLED.
- Retries continue the same run: .training_state/mlflow_run.json (outside DVC's outputs)
  keeps the run id with a digest of the training params and the data version. When train
  starts again with the same digest and that run did not finish, the run is reopened
  (tag cifar10_mlops.attempts counts the attempts); evaluate's success clears the file.
- No credential reaches MLflow: params are logged with URL user info redacted, environment
  variables are never logged, and MLflow's "View run at <tracking URI>" line is switched off
  when the URI carries a password.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cifar10_mlops import config
from cifar10_mlops.atomic import atomic_write_json
from cifar10_mlops.errors import PipelineError
from cifar10_mlops.params import Params, flatten
from cifar10_mlops.quiet_tensorflow import keras

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
STATE_FILE = "mlflow_run.json"  # in config.TRAINING_STATE_DIR
MODEL_ARTIFACT = "model"

PID_TAG = "cifar10_mlops.pid"
HOST_TAG = "cifar10_mlops.host"
PID_START_TAG = "cifar10_mlops.pid_start"
ATTEMPTS_TAG = "cifar10_mlops.attempts"
DIGEST_TAG = "cifar10_mlops.params_digest"
KILLED_REASON_TAG = "cifar10_mlops.killed_reason"


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


# ---------------------------------------------------------------------------------------------
# Credentials


# scheme://userinfo@host: the greedy run stops at the netloc's end and backs off to its last
# '@', so a raw '@' inside a password is covered too.
_URL_USERINFO = re.compile(r"\b(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def redact_credentials(text: str) -> str:
    """`https://user:pass@host/x` -> `https://***@host/x`, anywhere in `text`. The user name
    goes too: in token URLs (`https://<token>@host`) it is the secret."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


def loggable_params(params: Params) -> dict[str, Any]:
    """Every param, flattened, as MLflow logs it: null spelt as in params.yaml, URL user info
    redacted."""

    def text(value: Any) -> Any:
        if value is None:
            return "null"
        return redact_credentials(value) if isinstance(value, str) else value

    return {key: text(value) for key, value in flatten(params).items()}


def _mlflow():
    import mlflow

    uri = tracking_uri()
    if redact_credentials(uri) != uri:
        # MLflow prints "View run ... at: <tracking URI>/#/..." when a run ends, password and all.
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    mlflow.set_tracking_uri(uri)
    return mlflow


def client():
    """An MlflowClient on this project's tracking (and registry) store."""
    return _mlflow().MlflowClient()


def _sqlite_db_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix):].split("?", 1)[0]
    return Path(path).resolve() if path and path != ":memory:" else None


def _artifact_location() -> str | None:
    """Artifacts beside an sqlite database, never in ./mlruns of whichever directory ran."""
    uri = tracking_uri()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return (tracking_root() / ARTIFACTS_DIR).as_uri()
    db_path = _sqlite_db_path(uri)
    return (db_path.parent / ARTIFACTS_DIR).as_uri() if db_path else None  # a server decides


def _experiment_id(mlflow, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=_artifact_location())


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


def training_digest(params: Params, data_version_tag: str) -> str:
    """What makes two trainings the same: model and train params, experiment, data version."""
    material = {
        "model": params.model.model_dump(),
        "train": params.train.model_dump(),
        "experiment": params.mlflow.experiment,
        "data_version": data_version_tag,
    }
    text = json.dumps(material, sort_keys=True)
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


# ---------------------------------------------------------------------------------------------
# Owners: which process holds a RUNNING run


def _proc_stat(pid: int) -> list[str] | None:
    """Linux /proc/<pid>/stat fields from field 3 (state) on; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # the command name in (...) may hold spaces


def _process_start(pid: int) -> str | None:
    """Start time in clock ticks since boot (field 22): tells a reused pid apart."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def owner_tags() -> dict[str, str]:
    pid = os.getpid()
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    started = _process_start(pid)
    if started:
        tags[PID_START_TAG] = started
    return tags


def owner_is_gone(tags: dict[str, str]) -> bool:
    """True only when sure: the owner ran on this host and its process no longer exists
    (or exited unreaped, or its pid now belongs to a process started later)."""
    if os.name != "posix" or tags.get(HOST_TAG) != socket.gethostname():
        return False  # another machine's process, or no safe probe (os.kill kills on Windows)
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return False  # not a run this project started
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by another user
    fields = _proc_stat(pid)
    if fields is None:
        return False
    recorded_start = tags.get(PID_START_TAG)
    return fields[0] == "Z" or (recorded_start is not None and recorded_start != fields[19])


def mark_orphaned_runs_killed(mlflow_client, experiment_id: str) -> list[str]:
    """RUNNING runs whose owner process is gone can never end themselves: mark them KILLED."""
    running = mlflow_client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    orphans = [run for run in running if owner_is_gone(run.data.tags)]
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for run in orphans:
        tags = run.data.tags
        reason = (
            f"owner process {tags[PID_TAG]} on {tags[HOST_TAG]} no longer existed at {now}; "
            f"marked KILLED by process {os.getpid()}"
        )
        mlflow_client.set_tag(run.info.run_id, KILLED_REASON_TAG, reason)
        mlflow_client.set_terminated(run.info.run_id, "KILLED")
    if orphans:
        ids = ", ".join(run.info.run_id for run in orphans)
        print(f"mlflow: marked KILLED (their process had died): {ids}")
    return [run.info.run_id for run in orphans]


# ---------------------------------------------------------------------------------------------
# Opening runs


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


def _reopen(mlflow, previous, tags: dict[str, str], params: dict[str, Any]):
    run = mlflow.start_run(run_id=previous.info.run_id)
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
    params: Params, data_version_tag: str, run_info_path: Path, state_path: Path | None = None
) -> str:
    """Open this pipeline run's MLflow run and write its id to `run_info_path`.

    The run is the unfinished run of an earlier attempt at the same training (same digest,
    found through the state file) or else a new one, with every param and the tags logged.
    """
    mlflow = _mlflow()
    mlflow_client = mlflow.MlflowClient()
    experiment_id = _experiment_id(mlflow, params.mlflow.experiment)
    mark_orphaned_runs_killed(mlflow_client, experiment_id)
    state_file = _state_path(state_path)
    digest = training_digest(params, data_version_tag)
    tags = _run_tags(params, data_version_tag, digest)
    previous = _unfinished_run(mlflow_client, _read_json(state_file), digest, experiment_id)
    if previous is not None:
        run = _reopen(mlflow, previous, tags, loggable_params(params))
    else:
        run = mlflow.start_run(experiment_id=experiment_id, tags={**tags, ATTEMPTS_TAG: "1"})
        mlflow.log_params(loggable_params(params))
    run_id = run.info.run_id
    uri = redact_credentials(tracking_uri())
    atomic_write_json(
        run_info_path,
        {"run_id": run_id, "experiment_id": experiment_id,
         "experiment": params.mlflow.experiment, "tracking_uri": uri},
    )
    atomic_write_json(
        state_file,
        {"run_id": run_id, "experiment_id": experiment_id, "digest": digest, "tracking_uri": uri},
    )
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

    mlflow = _mlflow()
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
    _mlflow().end_run(status=status)


# ---------------------------------------------------------------------------------------------
# Lifecycle


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that a stopped stage takes the same way out."""


@contextlib.contextmanager
def _sigterm_raises_terminated() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)
    restore = previous if previous is not None else signal.SIG_DFL

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, restore)  # a second SIGTERM is not caught again
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, restore)


@contextlib.contextmanager
def run_lifecycle() -> Iterator[None]:
    """End the active run (if one was opened inside) by how the block ends: FINISHED,
    KILLED (Ctrl-C, SIGTERM) or FAILED (any other exception). SIGTERM then exits 143."""
    with _sigterm_raises_terminated():
        try:
            yield
        except Terminated:
            end_run("KILLED")
            raise SystemExit(128 + signal.SIGTERM) from None
        except KeyboardInterrupt:
            end_run("KILLED")
            raise
        except BaseException:
            end_run("FAILED")
            raise
    end_run("FINISHED")


# ---------------------------------------------------------------------------------------------
# Logging


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs every epoch's Keras metrics (and the learning rate) to MLflow with step=epoch.

    Keras numbers epochs from `initial_epoch`, so a fit resumed inside a reopened run
    continues the earlier attempt's series instead of writing over its steps."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import mlflow

        metrics = {key: float(value) for key, value in (logs or {}).items()}
        # Only inside the pipeline's run: never let MLflow start a stray run of its own.
        if metrics and mlflow.active_run() is not None:
            mlflow.log_metrics(metrics, step=epoch)


def log_final_results(
    metrics: dict[str, float],
    artifacts: Iterable[Path],
    model_file: Path,
    example_images,
):
    """Final metrics (prefixed test_ so they never collide with the per-epoch series), the
    reports and plots, and the model as the pyfunc classifier (serving.py) with a signature
    and an input example. Returns MLflow's ModelInfo of the logged model."""
    import mlflow

    from cifar10_mlops.serving import log_classifier

    mlflow.log_metrics({f"test_{key}": float(value) for key, value in metrics.items()})
    for path in artifacts:
        if Path(path).is_file():
            mlflow.log_artifact(str(path), artifact_path="reports")
    return log_classifier(Path(model_file), MODEL_ARTIFACT, input_example=example_images)


