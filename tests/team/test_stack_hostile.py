"""The team stack against hostile input and neighbours (issue 27, items 2 and 6): purge deletes
only a stack, a copied stack never touches the original's cluster, a lost cluster is not
silently replaced, a squatter on a port is not taken for the server, nothing is reachable
without a key, and nothing in the stack directory is readable by other users."""

from __future__ import annotations

import http.server
import json
import shutil
import stat
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from cifar10_mlops.team_stack import cli, mlflow_server, postgres, seaweedfs
from cifar10_mlops.team_stack import stack as team_stack
from cifar10_mlops.team_stack.errors import StackError
from cifar10_mlops.team_stack.ports import free_ports
from cifar10_mlops.team_stack.processes import spawn, stop_recorded
from cifar10_mlops.team_stack.state import STATE_FILE, load_state, new_secrets, save_state
from tests.helpers.pipeline import VENV_BIN


def _fake_stack(directory: Path, **state) -> Path:
    """A stack directory as `up` leaves it, without starting anything."""
    (directory / "postgres" / "data").mkdir(parents=True)
    (directory / "postgres" / "data" / "PG_VERSION").write_text("15\n")
    (directory / "logs").mkdir()
    save_state(
        directory,
        {
            "directory": str(directory),
            "pg_root": str(directory / "postgres"),
            "postgres_data": str(directory / "postgres" / "data"),
            "processes": {},
            **state,
        },
    )
    return directory


def test_purge_refuses_a_directory_that_is_not_a_stack(tmp_path, capsys):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["down", "--purge", "--dir", str(precious)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {precious} holds no team stack ({STATE_FILE} missing); nothing deleted. "
        "Give --dir the directory `up` was given\n"
    )
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_purge_deletes_what_the_stack_made_and_nothing_else(tmp_path):
    directory = _fake_stack(tmp_path / "stack")
    (directory / "notes.txt").write_text("mine")
    team_stack.down(directory, purge=True)
    assert sorted(path.name for path in directory.iterdir()) == ["notes.txt"]


def test_purging_a_copied_stack_leaves_the_original_cluster(tmp_path):
    original = _fake_stack(tmp_path / "original")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)  # as `cp -a` does: stack.json names original
    team_stack.down(copy, purge=True)
    assert not copy.exists()
    assert (original / "postgres" / "data" / "PG_VERSION").is_file()
    assert load_state(original)["pg_root"] == str(original / "postgres")


def test_a_copied_stack_uses_its_own_copied_cluster(tmp_path):
    original = _fake_stack(tmp_path / "original")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)
    state = team_stack.own_state(copy)
    assert state["pg_root"] == str(copy / "postgres")
    assert state["postgres_data"] == str(copy / "postgres" / "data")
    assert state["processes"] == {}  # the original's servers are not the copy's to stop
    status = subprocess.run(
        [str(VENV_BIN / "cifar10-mlops"), "team-stack", "status", "--dir", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 1 and status.stdout.count(": down") == 3


def test_a_lost_cluster_is_an_error_not_a_new_empty_database(tmp_path, monkeypatch, capsys):
    directory = _fake_stack(tmp_path / "stack")
    shutil.rmtree(directory / "postgres")  # e.g. deleted by purging a copy, before the fix

    def start_postgres(*args):
        raise AssertionError("a new, empty cluster would be made")

    monkeypatch.setattr(postgres, "start_postgres", start_postgres)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["up", "--dir", str(directory)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    data = directory / "postgres" / "data"
    assert err.startswith(f"error: the PostgreSQL cluster {data} that ")
    assert "is gone, and MLflow's runs with it" in err


class _AlwaysOk(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


def test_a_squatter_answering_on_the_port_is_not_taken_for_the_server(tmp_path):
    squatter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysOk)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    fake_mlflow = tmp_path / "mlflow"
    fake_mlflow.write_text("#!/bin/sh\nexec sleep 60\n")  # starts, never binds
    fake_mlflow.chmod(0o755)
    (tmp_path / "logs").mkdir()
    postgres_port, s3_port = free_ports(2)
    state = {
        "secrets": new_secrets(),
        "ports": {"postgres": postgres_port, "s3.port": s3_port, "mlflow": squatter.server_port},
    }
    try:
        with pytest.raises(StackError, match="answers, but not from the process started here"):
            mlflow_server.start_mlflow(tmp_path, state, str(fake_mlflow))
    finally:
        squatter.shutdown()
        stop_recorded([state["processes"]["mlflow"]])


def test_a_server_log_is_private(tmp_path):
    log = tmp_path / "server.log"
    spawn(["true"], log, {}, tmp_path).wait()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


# ------------------------------------------------------------ against the running stack


def _request(method: str, url: str, body: bytes = b"", headers: dict | None = None):
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return "refused"


def _multipart(name: str, content: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.slow
def test_no_port_of_the_s3_server_takes_an_anonymous_upload(stack, tmp_path):
    ports = stack.state["ports"]
    before = set(stack.s3_keys(""))
    body, headers = _multipart("planted.txt", b"planted")
    host = "http://127.0.0.1"
    bucket = f"buckets/{seaweedfs.BUCKET}"
    answers = {
        "filer POST": _request(
            "POST", f"{host}:{ports['filer.port']}/{bucket}/p1.txt", body, headers
        ),
        "filer PUT": _request("PUT", f"{host}:{ports['filer.port']}/{bucket}/p2.txt", b"planted"),
        "filer GET": _request("GET", f"{host}:{ports['filer.port']}/{bucket}/"),
        "master submit": _request("POST", f"{host}:{ports['master.port']}/submit", body, headers),
        "master assign": _request("GET", f"{host}:{ports['master.port']}/dir/assign"),
        "volume POST": _request(
            "POST", f"{host}:{ports['volume.port']}/1,0123456789", body, headers
        ),
        "s3 PUT": _request("PUT", f"{host}:{ports['s3.port']}/{seaweedfs.BUCKET}/p3.txt", b"x"),
        "volume DELETE": _request("DELETE", f"{host}:{ports['volume.port']}/1,01637037d6"),
        "master delete collection": _request(
            "GET", f"{host}:{ports['master.port']}/col/delete?collection={seaweedfs.BUCKET}"
        ),
    }
    assert not [what for what, status in answers.items() if status in (200, 201, 202, 204)], answers
    # The filer's gRPC port, as `weed filer.copy` uses it, with no certificate of the stack.
    planted = tmp_path / "grpc-planted.txt"
    planted.write_text("planted")
    copy = subprocess.run(
        [
            str(VENV_BIN / "weed"),
            "filer.copy",
            str(planted),
            f"http://127.0.0.1:{ports['filer.port']}.{ports['filer.port.grpc']}/{bucket}/",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert copy.returncode != 0, copy.stdout + copy.stderr
    assert set(stack.s3_keys("")) == before  # nothing planted for key holders to download


@pytest.mark.slow
def test_nothing_in_the_stack_directory_is_readable_by_other_users(stack):
    # As root the directory is 711 (the postgres user passes through to its cluster): what is
    # in it must then keep other users out itself.
    top = stat.S_IMODE(stack.directory.stat().st_mode)
    assert top in (0o700, 0o711), oct(top)
    exposed = {
        path.name: oct(stat.S_IMODE(path.lstat().st_mode))
        for path in stack.directory.iterdir()
        if not path.is_socket() and stat.S_IMODE(path.lstat().st_mode) & 0o077
    }
    assert not exposed
    logs = {
        path.name: oct(stat.S_IMODE(path.stat().st_mode))
        for path in (stack.directory / "logs").iterdir()
    }
    assert set(logs.values()) == {"0o600"}, logs
    assert json.loads((stack.directory / STATE_FILE).read_text())["directory"] == str(
        stack.directory
    )
