"""download_verified against a real HTTP server on 127.0.0.1: full downloads, reuse, resume
after a cut, checksum failures, HTTP errors, timeouts and refused connections."""

from __future__ import annotations

import hashlib
import time

import pytest

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.http_download import download_verified, split_credentials
from tests.helpers.cifar_binary import unused_port

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, so a cut lands mid-body
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
WRONG_MD5 = "0" * 32


@pytest.fixture
def target(tmp_path):
    return tmp_path / "downloads" / "archive.tar.gz"


def part_of(target):
    return target.with_name(target.name + ".part")


def one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


# --- success --------------------------------------------------------------------------------


def test_full_download_is_verified_and_moved_into_place(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD)
    assert download_verified(url, target, PAYLOAD_MD5, timeout_s=10) == target
    assert target.read_bytes() == PAYLOAD
    assert not part_of(target).exists()
    assert archive_server.range_headers() == [None]


def test_a_verified_file_is_reused_without_any_request(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD)
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    assert download_verified(url, target, PAYLOAD_MD5, timeout_s=10) == target
    assert archive_server.requests == []


def test_a_present_file_with_the_wrong_md5_is_downloaded_again(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"an older, different file")
    download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    assert target.read_bytes() == PAYLOAD
    assert len(archive_server.requests) == 1


def test_uppercase_md5_is_accepted(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD)
    download_verified(url, target, PAYLOAD_MD5.upper(), timeout_s=10)
    assert target.read_bytes() == PAYLOAD


# --- cut off half way, then resumed ---------------------------------------------------------


def test_cut_off_download_keeps_the_part_and_resumes(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD, "cut", "ok")
    with pytest.raises(PipelineError) as info:
        download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    message = one_line(info)
    assert url in message
    assert f"of {len(PAYLOAD)} bytes" in message
    assert "resume" in message
    assert not target.exists()
    kept = part_of(target).read_bytes()
    assert 0 < len(kept) < len(PAYLOAD)
    assert PAYLOAD.startswith(kept)

    download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    assert target.read_bytes() == PAYLOAD
    assert not part_of(target).exists()
    assert archive_server.range_headers() == [None, f"bytes={len(kept)}-"]


def test_resume_answered_with_the_whole_file_starts_again(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD, "cut", "no-range")
    with pytest.raises(PipelineError):
        download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    assert target.read_bytes() == PAYLOAD  # not the kept half plus the whole file
    assert archive_server.range_headers()[1] is not None


def test_a_complete_part_is_finished_when_the_server_answers_416(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD)
    target.parent.mkdir(parents=True)
    part_of(target).write_bytes(PAYLOAD)  # e.g. interrupted between the last byte and the rename
    download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    assert target.read_bytes() == PAYLOAD
    assert archive_server.range_headers() == [f"bytes={len(PAYLOAD)}-"]


def test_a_stall_mid_body_times_out_and_keeps_the_part(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD, "stall", "ok")
    with pytest.raises(PipelineError) as info:
        download_verified(url, target, PAYLOAD_MD5, timeout_s=1)
    message = one_line(info)
    assert url in message and "1 s" in message and "resume" in message
    assert 0 < part_of(target).stat().st_size < len(PAYLOAD)
    download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    assert target.read_bytes() == PAYLOAD


# --- checksum -------------------------------------------------------------------------------


def test_md5_mismatch_deletes_the_download(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD)
    with pytest.raises(PipelineError) as info:
        download_verified(url, target, WRONG_MD5, timeout_s=10)
    message = one_line(info)
    assert url in message
    assert WRONG_MD5 in message and PAYLOAD_MD5 in message
    assert "data.cifar10.md5" in message
    assert not target.exists()
    assert not part_of(target).exists()


def test_a_resumed_part_with_wrong_bytes_fails_the_md5_and_is_deleted(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD)
    target.parent.mkdir(parents=True)
    part_of(target).write_bytes(b"X" * 1000)  # not a prefix of the real file
    with pytest.raises(PipelineError, match="MD5"):
        download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    assert not part_of(target).exists() and not target.exists()
    download_verified(url, target, PAYLOAD_MD5, timeout_s=10)  # the next run starts clean
    assert target.read_bytes() == PAYLOAD


# --- HTTP errors, timeouts, no network ------------------------------------------------------


@pytest.mark.parametrize("status", ["404", "500"])
def test_http_errors_name_the_url_and_status(archive_server, target, status):
    url = archive_server.serve("/a.tar.gz", PAYLOAD, status)
    with pytest.raises(PipelineError) as info:
        download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    message = one_line(info)
    assert url in message and f"HTTP {status}" in message
    assert not target.exists() and not part_of(target).exists()


def test_a_server_that_never_answers_times_out(archive_server, target):
    url = archive_server.serve("/a.tar.gz", PAYLOAD, "hang")
    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        download_verified(url, target, PAYLOAD_MD5, timeout_s=1)
    # The server never answers, so only the timeout ends the call; the bound is generous
    # (60x the timeout) for a busy shared machine.
    assert time.monotonic() - started < 60
    message = one_line(info)
    assert url in message and "1 s" in message and "data.cifar10.timeout_s" in message
    assert not target.exists() and not part_of(target).exists()


def test_connection_refused_suggests_the_network_or_a_local_archive(target):
    url = f"http://127.0.0.1:{unused_port()}/cifar-10-binary.tar.gz"
    with pytest.raises(PipelineError) as info:
        download_verified(url, target, PAYLOAD_MD5, timeout_s=5)
    message = one_line(info)
    assert url in message
    assert "connection refused" in message
    assert "data.source: local" in message
    assert not target.parent.exists()  # nothing created on failure


def test_credentials_in_the_url_are_sent_but_never_printed(archive_server, target):
    archive_server.serve("/a.tar.gz", PAYLOAD, "404")
    url = f"http://alice:s3cret@127.0.0.1:{archive_server.port}/a.tar.gz"
    with pytest.raises(PipelineError) as info:
        download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    message = one_line(info)
    assert "s3cret" not in message and "alice" not in message
    assert archive_server.url("/a.tar.gz") in message
    _, headers = archive_server.requests[0]
    assert headers["Authorization"] == split_credentials(url)[1]


def test_split_credentials():
    assert split_credentials("https://h.example/x") == ("https://h.example/x", None)
    clean, auth = split_credentials("https://u:p%40ss@h.example:8443/x?y=1")
    assert clean == "https://h.example:8443/x?y=1"
    assert auth == "Basic dTpwQHNz"  # base64("u:p@ss")


def test_a_server_chosen_reason_phrase_is_quoted_as_a_short_prefix(target, monkeypatch):
    # The status line's reason phrase is the server's to choose; http.client takes 64 KiB.
    import socket
    import threading

    for name in ("no_proxy", "NO_PROXY"):  # a proxy must not intercept the local server
        monkeypatch.setenv(name, "127.0.0.1,localhost")

    listener = socket.create_server(("127.0.0.1", 0))
    reason = "R" * 60_000

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(f"HTTP/1.1 500 {reason}\r\nContent-Length: 0\r\n\r\n".encode())

    server = threading.Thread(target=answer, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/a.tar.gz"
    try:
        with pytest.raises(PipelineError) as info:
            download_verified(url, target, PAYLOAD_MD5, timeout_s=10)
    finally:
        server.join(10)
        listener.close()
    message = one_line(info)
    assert message.startswith(f"{url}: HTTP 500 {'R' * 100}; the server failed")
    assert len(message) < 400
