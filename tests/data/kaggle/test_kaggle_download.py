"""data.source: kaggle. The real opendatasets + kaggle client run in the child process against
a local stand-in for Kaggle (see tests/helpers/kaggle.py): no test touches the internet."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import requests

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import KaggleParams
from cifar10_mlops.data.kaggle import competition as kaggle_source
from cifar10_mlops.data.kaggle import opendatasets_fetch
from cifar10_mlops.data.kaggle.competition import fetch_competition, sha256_of
from cifar10_mlops.data.kaggle.train_7z import list_train_7z
from tests.helpers.kaggle import RULES_MESSAGE, KaggleStandIn, build_competition_files

USERNAME = "ada"
KEY = "0123456789abcdef0123456789abcdef"  # the secret that must never be shown
ENV_VARS_TO_CLEAR = (
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
    "no_proxy", "NO_PROXY", "XDG_CONFIG_HOME", "VERBOSE", "VERBOSE_OUTPUT",
)  # fmt: skip
SHORT = KaggleParams(timeout_s=60)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def home(monkeypatch, tmp_path) -> Path:
    """No Kaggle settings from the machine running the tests: empty HOME, no KAGGLE_* or proxy
    variables, and a private temporary directory whose leftovers the tests can see."""
    for name in list(os.environ):
        if name.startswith("KAGGLE_") or name in ENV_VARS_TO_CLEAR:
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return home


@pytest.fixture
def files(tmp_path):
    return build_competition_files(tmp_path / "competition")


@pytest.fixture
def kaggle(home, files, monkeypatch):
    """The stand-in, with the real kaggle client routed to it (see tests/helpers/kaggle.py)."""
    with KaggleStandIn(files.zip_bytes, USERNAME, KEY) as stand_in:
        monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
        monkeypatch.setenv("http_proxy", stand_in.proxy_url)
        yield stand_in


@pytest.fixture
def env_credentials(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KEY)


@pytest.fixture
def staging(tmp_path) -> Path:
    path = tmp_path / "staging"
    path.mkdir()
    return path


@pytest.fixture
def spawned(monkeypatch) -> list[dict]:
    """Records every child process started, with its private directory as it was at start."""
    calls: list[dict] = []
    real_popen = subprocess.Popen

    def spy(command, **kwargs):
        workdir = Path(kwargs["cwd"])
        key_file = workdir / "kaggle.json"
        calls.append(
            {
                "kwargs": kwargs,
                "workdir": workdir,
                "workdir_mode": stat.S_IMODE(workdir.stat().st_mode),
                "key_file_mode": stat.S_IMODE(key_file.stat().st_mode),
                "key_file": json.loads(key_file.read_text()),
            }
        )
        calls[-1]["process"] = real_popen(command, **kwargs)
        return calls[-1]["process"]

    monkeypatch.setattr(subprocess, "Popen", spy)
    return calls


def fetch_error(params: KaggleParams, staging: Path) -> str:
    with pytest.raises(PipelineError) as caught:
        fetch_competition(params, staging)
    message = str(caught.value)
    assert "\n" not in message
    assert KEY not in message
    return message


def staged(staging: Path) -> list[str]:
    return sorted(os.listdir(staging))


# --- success -----------------------------------------------------------------------------


def test_success_stages_only_train_7z_and_labels(kaggle, files, env_credentials, staging, spawned):
    fetch_competition(SHORT, staging)

    assert staged(staging) == [TRAIN_ARCHIVE, LABELS_CSV]
    assert (staging / TRAIN_ARCHIVE).read_bytes() == files.train_7z
    assert (staging / LABELS_CSV).read_bytes() == files.labels
    assert len(list_train_7z(staging / TRAIN_ARCHIVE)) == 30
    # The served test.7z fails its CRC when read: success means it was never extracted.
    assert [method for method, _, _ in kaggle.requests] == ["POST", "GET"]
    assert kaggle.requests[0][2] == kaggle.accepted_auth


def test_the_served_test_7z_really_is_a_trap(files, tmp_path):
    archive = tmp_path / "served.zip"
    archive.write_bytes(files.zip_bytes)
    with zipfile.ZipFile(archive) as zipped, pytest.raises(zipfile.BadZipFile, match="CRC"):
        zipped.read("test.7z")


def test_child_runs_with_stdin_closed_in_a_private_dir_that_is_removed(
    kaggle, env_credentials, staging, spawned, tmp_path
):
    fetch_competition(SHORT, staging)

    (call,) = spawned
    assert call["kwargs"]["stdin"] is subprocess.DEVNULL
    assert call["kwargs"]["start_new_session"] is True
    assert call["workdir_mode"] == 0o700
    assert call["key_file_mode"] == 0o600
    assert call["key_file"] == {"username": USERNAME, "key": KEY}
    assert not call["workdir"].exists()
    assert os.listdir(tmp_path / "tmp") == []


# --- credentials -------------------------------------------------------------------------


def write_kaggle_json(directory: Path, username: str = USERNAME, key: str = KEY) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kaggle.json").write_text(json.dumps({"username": username, "key": key}))


@pytest.mark.parametrize("place", ["home", "KAGGLE_CONFIG_DIR"])
def test_credentials_from_kaggle_json(kaggle, home, staging, monkeypatch, tmp_path, place):
    if place == "home":
        write_kaggle_json(home / ".kaggle")
    else:
        write_kaggle_json(tmp_path / "config")
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "config"))

    fetch_competition(SHORT, staging)

    assert staged(staging) == [TRAIN_ARCHIVE, LABELS_CSV]
    assert kaggle.requests[0][2] == kaggle.accepted_auth


def test_environment_credentials_win_over_kaggle_json(kaggle, home, env_credentials, staging):
    write_kaggle_json(home / ".kaggle", key="an-old-revoked-key")
    fetch_competition(SHORT, staging)
    assert kaggle.requests[0][2] == kaggle.accepted_auth


def test_no_credentials_says_where_to_put_them(kaggle, staging, spawned):
    message = fetch_error(SHORT, staging)

    assert "no Kaggle credentials" in message
    assert "KAGGLE_USERNAME" in message and "~/.kaggle/kaggle.json" in message
    assert spawned == [] and kaggle.requests == []


def test_unusable_kaggle_json_is_named(kaggle, home, staging):
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "kaggle.json").write_text('{"username": "ada"}')
    message = fetch_error(SHORT, staging)
    assert str(home / ".kaggle" / "kaggle.json") in message and '"key"' in message


def test_rejected_credentials(kaggle, monkeypatch, staging, tmp_path):
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", "f" * 32)  # not the key the stand-in accepts
    message = fetch_error(SHORT, staging)

    assert "rejected the credentials" in message and "HTTP 401" in message
    assert "KAGGLE_USERNAME/KAGGLE_KEY" in message and "kaggle.com/settings/api" in message
    assert "f" * 32 not in message
    assert staged(staging) == []
    assert os.listdir(tmp_path / "tmp") == []  # the private dir holding the key is gone


# --- Kaggle's answers --------------------------------------------------------------------


def test_rules_not_accepted_points_at_the_rules_page(kaggle, env_credentials, staging):
    kaggle.rules_accepted = False
    message = fetch_error(SHORT, staging)

    assert "HTTP 403" in message and RULES_MESSAGE in message
    assert "https://www.kaggle.com/competitions/cifar-10/rules" in message
    assert staged(staging) == []


def test_key_echoed_by_the_server_is_scrubbed(kaggle, env_credentials, staging):
    kaggle.rules_accepted = False
    encoded = base64.b64encode(f"{USERNAME}:{KEY}".encode()).decode()
    kaggle.forbidden_message = f"denied for key {KEY} (auth {encoded})"
    message = fetch_error(SHORT, staging)  # asserts KEY is absent
    assert encoded not in message and "denied for key ***" in message


def test_unknown_competition(kaggle, env_credentials, staging):
    message = fetch_error(KaggleParams(competition="no-such-contest", timeout_s=60), staging)
    assert "HTTP 404" in message and "data.kaggle.competition" in message


def test_no_network(home, env_credentials, staging, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port}")

    message = fetch_error(SHORT, staging)

    assert "cannot reach Kaggle" in message and "connection refused" in message
    assert staged(staging) == []


def test_dns_failure_is_named(monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(requests.ConnectionError) as caught:
        requests.post("http://api.kaggle.test/v1/x", timeout=5)
    assert opendatasets_fetch.network_reason(caught.value) == "DNS lookup failed"


def test_timeout_stops_the_download(kaggle, env_credentials, staging, spawned, tmp_path):
    kaggle.hang = True
    started = time.monotonic()
    message = fetch_error(KaggleParams(timeout_s=2), staging)

    # The stand-in never answers, so only the timeout ends the fetch; a generous bound.
    assert time.monotonic() - started < 60
    assert "did not finish within 2 s" in message and "data.kaggle.timeout_s" in message
    assert spawned[0]["process"].poll() is not None  # killed, not left running
    assert staged(staging) == []
    assert os.listdir(tmp_path / "tmp") == []


def test_stdin_is_closed_so_a_prompt_cannot_wait(kaggle, env_credentials, staging, monkeypatch):
    """Make opendatasets prompt (its ./kaggle.json unusable) while this process's stdin is an
    open pipe nobody writes to: an inherited stdin would block until the timeout."""
    monkeypatch.setattr(
        kaggle_source, "_write_kaggle_json", lambda path, credentials: path.write_text("{}")
    )
    read_end, write_end = os.pipe()
    saved_stdin = os.dup(0)
    os.dup2(read_end, 0)
    try:
        started = time.monotonic()
        message = fetch_error(KaggleParams(timeout_s=600), staging)
    finally:
        os.dup2(saved_stdin, 0)
        for descriptor in (saved_stdin, read_end, write_end):
            os.close(descriptor)

    # A prompt waiting on the inherited pipe would last until the 600 s timeout; refusing at
    # once takes seconds. The bound sits far from both.
    assert time.monotonic() - started < 300
    assert "asked for them on the terminal" in message


# --- what arrives ------------------------------------------------------------------------


def test_missing_member_is_refused(kaggle, env_credentials, staging, tmp_path):
    kaggle.zip_bytes = build_competition_files(
        tmp_path / "broken", leave_out=(LABELS_CSV,)
    ).zip_bytes
    message = fetch_error(SHORT, staging)

    assert f"'{LABELS_CSV}' is missing" in message and "data.kaggle.competition" in message
    assert staged(staging) == []


def test_train_7z_that_is_not_7z_is_refused(kaggle, env_credentials, staging, tmp_path):
    bogus = build_competition_files(tmp_path / "bogus", train_7z=b"<html>sign in</html>")
    kaggle.zip_bytes = bogus.zip_bytes
    message = fetch_error(SHORT, staging)
    assert f"{TRAIN_ARCHIVE} that is not a 7z archive" in message


def test_nothing_arriving_is_refused(kaggle, env_credentials, staging, monkeypatch):
    # A child that "succeeds" without downloading, as opendatasets does on a non-empty folder.
    monkeypatch.setattr(
        kaggle_source, "_fetch_command", lambda *args: [sys.executable, "-c", "pass"]
    )
    message = fetch_error(SHORT, staging)
    assert "delivered nothing" in message and "run again" in message


def test_sha256_pins_that_match_are_accepted(kaggle, files, env_credentials, staging, tmp_path):
    (tmp_path / "expected.7z").write_bytes(files.train_7z)
    (tmp_path / "expected.csv").write_bytes(files.labels)
    pinned = KaggleParams(
        train_7z_sha256=sha256_of(tmp_path / "expected.7z"),
        labels_sha256=sha256_of(tmp_path / "expected.csv"),
        timeout_s=60,
    )
    fetch_competition(pinned, staging)
    assert staged(staging) == [TRAIN_ARCHIVE, LABELS_CSV]


def test_sha256_pin_mismatch_names_file_and_both_digests(
    kaggle, files, env_credentials, staging, tmp_path
):
    wrong = "0" * 64
    message = fetch_error(KaggleParams(train_7z_sha256=wrong, timeout_s=60), staging)

    actual = hashlib.sha256(files.train_7z).hexdigest()
    assert TRAIN_ARCHIVE in message and wrong in message and actual in message
    assert "data.kaggle.train_7z_sha256" in message


def test_a_zip_left_unpacked_gives_only_the_two_members(
    kaggle, files, env_credentials, staging, tmp_path, monkeypatch
):
    # An opendatasets that leaves <competition>.zip as downloaded, instead of unpacking it.
    served = tmp_path / "served.zip"
    served.write_bytes(files.zip_bytes)
    leave_zip = (
        "import pathlib, shutil, sys; target = pathlib.Path(sys.argv[1]) / 'cifar-10'; "
        f"target.mkdir(); shutil.copyfile({str(served)!r}, target / 'cifar-10.zip')"
    )
    monkeypatch.setattr(
        kaggle_source,
        "_fetch_command",
        lambda _, download_dir: [sys.executable, "-c", leave_zip, str(download_dir)],
    )
    fetch_competition(SHORT, staging)

    assert staged(staging) == [TRAIN_ARCHIVE, LABELS_CSV]
    assert (staging / TRAIN_ARCHIVE).read_bytes() == files.train_7z
