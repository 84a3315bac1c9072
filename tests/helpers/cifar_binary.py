"""Builders for the official CIFAR-10 binary format (real files) and a local HTTP stand-in.

- pixel/record builders: batches of 3073-byte records with deterministic pixels;
- tar builders: cifar-10-binary.tar.gz as the CIFAR site ships it, or with any hostile member
  (links, devices, odd names, wrong sizes);
- ArchiveServer: a real http.server on 127.0.0.1 (ephemeral port, own thread) that serves
  files and can honour or ignore Range, cut the body short, answer 404/500, or hang.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import socket
import tarfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

RECORD_BYTES = 3073
BATCHES_DIR = "cifar-10-batches-bin"
META_TEXT = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n"


# --- records ------------------------------------------------------------------------------------


def image_for(image_id: int) -> np.ndarray:
    """A deterministic uint8 (32, 32, 3) image, different for every id."""
    return np.random.default_rng(image_id).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def label_for(image_id: int) -> int:
    return image_id % 10


def encode_record(label: int, image: np.ndarray) -> bytes:
    """One record as the CIFAR-10 page describes it, written out pixel by pixel: the label
    byte, then all red values row by row, then all green, then all blue."""
    planes = [
        image[row, col, channel] for channel in range(3) for row in range(32) for col in range(32)
    ]
    return bytes([label]) + bytes(int(value) for value in planes)


def make_batch(first_id: int, count: int) -> bytes:
    """`count` records for image ids first_id.. (labels and pixels from the id)."""
    return b"".join(
        encode_record(label_for(i), image_for(i)) for i in range(first_id, first_id + count)
    )


def official_members(
    data_batches: int = 3, per_batch: int = 30, test_count: int = 30
) -> dict[str, bytes]:
    """{member name: bytes} for a small archive laid out like the real one."""
    members = {}
    for number in range(1, data_batches + 1):
        members[f"{BATCHES_DIR}/data_batch_{number}.bin"] = make_batch(
            1 + (number - 1) * per_batch, per_batch
        )
    if test_count:
        members[f"{BATCHES_DIR}/test_batch.bin"] = make_batch(1000, test_count)
    members[f"{BATCHES_DIR}/batches.meta.txt"] = META_TEXT
    members[f"{BATCHES_DIR}/readme.html"] = b"<html>CIFAR-10 binary version</html>\n"
    return members


# --- tar entries --------------------------------------------------------------------------------


@dataclass
class Entry:
    """One tar member: its header and, for regular files, its payload."""

    info: tarfile.TarInfo
    payload: bytes | None = None


def file_entry(name: str, payload: bytes) -> Entry:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    return Entry(info, payload)


def dir_entry(name: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return Entry(info)


def link_entry(name: str, target: str, *, hard: bool = False) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return Entry(info)


def special_entry(name: str, kind: bytes) -> Entry:
    """kind: tarfile.CHRTYPE, BLKTYPE or FIFOTYPE."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return Entry(info)


def official_entries(**kwargs) -> list[Entry]:
    """The directory entry, then every member of official_members(**kwargs)."""
    return [dir_entry(BATCHES_DIR)] + [
        file_entry(n, p) for n, p in official_members(**kwargs).items()
    ]


def write_tar_gz(path: Path, entries: Iterable[Entry]) -> Path:
    """A real gzip-compressed tar (gzip mtime 0, so the same entries give the same bytes)."""
    return write_gzip(path, tar_bytes(entries))


def tar_bytes(entries: Iterable[Entry], tar_format: int = tarfile.GNU_FORMAT) -> bytes:
    """An uncompressed tar of the entries (GNU writes a long-name block for names over 100
    bytes, pax an extended header)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for entry in entries:
            payload = None if entry.payload is None else io.BytesIO(entry.payload)
            tar.addfile(entry.info, payload)
    return buffer.getvalue()


def write_gzip(path: Path, data: bytes) -> Path:
    """data gzip-compressed into path (mtime 0): a tar, or a tar with anything after it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(data)
    return path


def long_name_archive(path: Path, name_bytes: int) -> Path:
    """The official entries with the first data batch renamed to a name of name_bytes bytes
    under cifar-10-batches-bin/ (a GNU long-name block of name_bytes + 1)."""
    entries = official_entries(data_batches=1)
    entries[1].info.name = f"{BATCHES_DIR}/" + "n" * (name_bytes - len(BATCHES_DIR) - 1)
    return write_gzip(path, tar_bytes(entries))


def write_official_archive(path: Path, **kwargs) -> Path:
    return write_tar_gz(path, official_entries(**kwargs))


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_batches_dir(directory: Path, members: dict[str, bytes]) -> Path:
    """Write {member name: bytes} under directory, as extraction would; returns the batches dir."""
    for name, payload in members.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
    return directory / BATCHES_DIR


# --- the HTTP stand-in ------------------------------------------------------------------------


# Behaviours, one per request to a path, the last one repeating:
#   ok        200, or 206 for a Range request (416 when the range starts past the end)
#   no-range  always 200 with the whole file, ignoring Range
#   cut       full Content-Length, but the connection closes half way through the body
#   stall     full Content-Length, half the body, then silence until the test ends
#   hang      reads the request and never answers
#   404, 500  that status
@dataclass
class ArchiveServer:
    files: dict[str, bytes] = field(default_factory=dict)
    behaviours: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def serve(self, path: str, payload: bytes, *behaviours: str) -> str:
        self.files[path] = payload
        self.behaviours[path] = list(behaviours) or ["ok"]
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def next_behaviour(self, path: str) -> str:
        queue = self.behaviours.get(path, ["404"])
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def range_headers(self) -> list[str | None]:
        return [headers.get("Range") for _, headers in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server_version = "ArchiveServer/1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state: ArchiveServer = self.server.state
        state.requests.append((self.path, dict(self.headers)))
        behaviour = state.next_behaviour(self.path)
        payload = state.files.get(self.path)
        if behaviour == "hang":
            state.release.wait(30)
            return
        if payload is None or behaviour in ("404", "500"):
            self.send_error(500 if behaviour == "500" else 404)
            return
        start = self._range_start() if behaviour != "no-range" else 0
        if start >= len(payload) and start > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(payload)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/gzip")
        self.end_headers()
        if behaviour in ("cut", "stall"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if behaviour == "stall":
                state.release.wait(30)
            return  # HTTP/1.0: returning closes the connection, half way through the body
        self.wfile.write(body)

    def _range_start(self) -> int:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        return int(match.group(1)) if match else 0

    def log_message(self, format: str, *args) -> None:  # keep the test output clean
        return None


class running_server:  # noqa: N801 (used like a function: `with running_server() as server`)
    """Start an ArchiveServer on 127.0.0.1:<ephemeral port> in a thread; stop it on exit."""

    def __enter__(self) -> ArchiveServer:
        self.state = ArchiveServer()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.state = self.state
        self.state.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self.state

    def __exit__(self, *exc_info) -> None:
        self.state.release.set()  # let hanging handlers finish
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def unused_port() -> int:
    """A port nothing listens on (bound, then released), for 'connection refused'."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
