"""The stack's PostgreSQL: a cluster of its own on 127.0.0.1 (TCP only, password logins only)
with a role and a database `mlflow` for the tracking server. PostgreSQL refuses to run as root,
so as root its tools run as the `postgres` user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cifar10_mlops.team_stack.errors import StackError
from cifar10_mlops.team_stack.ports import HOST
from cifar10_mlops.team_stack.processes import READY_TIMEOUT_S, is_root, run_tool
from cifar10_mlops.team_stack.state import write_private

POSTGRES_LIB = Path("/usr/lib/postgresql")  # Debian's: <version>/bin/initdb
PG_DATABASE = PG_USER = "mlflow"
PG_SUPERUSER = "postgres"


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


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the postgres user."""
    if not is_root():
        return command
    postgres_ids()
    runuser = shutil.which("runuser")
    if not runuser:
        raise StackError("running as root needs `runuser` (util-linux) to start PostgreSQL")
    return [runuser, "-u", PG_SUPERUSER, "--", *command]


def postgres_ids() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(PG_SUPERUSER)
    except KeyError:
        raise StackError(
            "running as root, but there is no `postgres` user to run PostgreSQL as (it refuses "
            "to run as root); apt-get install postgresql creates it, or run as another user"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _pg_root(directory: Path, state: dict[str, Any]) -> Path:
    """The directory holding the cluster (data/) and its log, owned by the postgres user."""
    if state.get("pg_root") and Path(state["pg_root"]).is_dir():
        return Path(state["pg_root"])
    root = directory / "postgres"
    root.mkdir(mode=0o700, exist_ok=True)
    if is_root():
        uid, gid = postgres_ids()
        os.chown(root, uid, gid)
        directory.chmod(0o711)  # the postgres user may pass through (not list) to its own
        reachable = subprocess.run(as_postgres(["test", "-w", str(root)]), check=False)
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
        _initdb(root, data, state, pg_bin)
    state["postgres_data"] = str(data)
    copied_lock = _lock_file_data_dir(data)
    if copied_lock is not None and not _same_path(copied_lock, str(data)):  # copied along
        (data / "postmaster.pid").unlink()
    run_tool(
        as_postgres(
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
    run_tool(
        [str(pg_bin / "pg_isready"), "-h", HOST, "-p", str(state["ports"]["postgres"])],
        "PostgreSQL readiness (pg_isready)",
        log=log,
    )
    _ensure_mlflow_database(state)


def _initdb(root: Path, data: Path, state: dict[str, Any], pg_bin: Path) -> None:
    password_file = root / "superuser.pw"
    write_private(password_file, state["secrets"]["pg_superuser_password"] + "\n")
    if is_root():
        os.chown(password_file, *postgres_ids())
    try:
        run_tool(
            as_postgres(
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


def postgres_running(state: dict[str, Any]) -> bool:
    """The cluster's lock file is there and is its own: a copied cluster (`cp -a` of a stack)
    holds the original's, whose pid `pg_ctl stop` would signal."""
    data = state.get("postgres_data")
    return isinstance(data, str) and _same_path(_lock_file_data_dir(Path(data)), data)


def _same_path(a: str | None, b: str) -> bool:
    return a is not None and os.path.realpath(a) == os.path.realpath(b)


def _lock_file_data_dir(data: Path) -> str | None:
    """Line 2 of postmaster.pid: the data directory of the postmaster that wrote it."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return lines[1] if len(lines) > 1 else None


def check_cluster_kept(state: dict[str, Any], state_file: Path) -> None:
    """A cluster once made must still be there: starting anew would silently give MLflow an
    empty database (its runs gone) under the same stack."""
    data = state.get("postgres_data")
    if data and not Path(data, "PG_VERSION").is_file():
        raise StackError(
            f"the PostgreSQL cluster {data} that {state_file} records is gone, and MLflow's "
            f"runs with it; restore it from a backup, or delete {state_file} to start with an "
            "empty database"
        )


def stop_postgres(state: dict[str, Any]) -> None:
    if not postgres_running(state):
        return
    data = state["postgres_data"]
    run_tool(
        as_postgres(
            [str(postgres_bin() / "pg_ctl"), f"--pgdata={data}", "--mode=fast", "--wait", "stop"]
        ),
        "PostgreSQL stop (pg_ctl stop)",
        log=Path(state.get("postgres_log", data)),
        cwd=Path(data).parent,
    )
