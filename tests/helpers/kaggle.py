"""A local stand-in for Kaggle, so the real opendatasets + kaggle + kagglesdk code runs offline.

How the real client is pointed at it: kagglesdk supports KAGGLE_API_ENVIRONMENT=LOCALHOST
(kaggle 2.2.4 passes it on as `--local`), which sends every API call to http://localhost/api/v1
instead of https://api.kaggle.com/v1. That address has a fixed port 80, so the stand-in listens
on an ephemeral port of 127.0.0.1 as the HTTP proxy (`http_proxy`, honoured by requests) and
answers what the client asks for through it, as Kaggle does:

  POST http://localhost/api/v1/competitions.CompetitionApiService/DownloadDataFiles
       {"competitionName": ...} with HTTP Basic username:key
       -> 401 / 403 / 404 JSON {"code", "message"} like Kaggle's, or a 302 to storage
  GET  http://storage.kaggle.test/...cifar-10.zip  -> the zip (no auth, like a signed URL)

Even if the proxy were ignored, the calls would go to localhost, never to the internet.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import json
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.data import synthetic

API_PATH = "/api/v1/competitions.CompetitionApiService/DownloadDataFiles"
STORAGE_HOST = "storage.kaggle.test"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."
# Stored uncompressed, then altered in the finished zip: its CRC no longer matches, so any
# attempt to extract test.7z (as plain opendatasets would) fails the whole download.
TEST_7Z_TRAP = b"test.7z stand-in: reading this member fails its CRC check. " * 8


@dataclasses.dataclass(frozen=True)
class CompetitionFiles:
    train_7z: bytes
    labels: bytes
    zip_bytes: bytes


def build_competition_files(
    directory: Path, *, leave_out: tuple[str, ...] = (), train_7z: bytes | None = None
) -> CompetitionFiles:
    """cifar-10.zip as Kaggle serves it: a real train.7z (30 images) + trainLabels.csv, a
    trapped test.7z and sampleSubmission.csv; `leave_out` drops members by name."""
    synthetic.write_kaggle_layout(directory, count=30, seed=0)
    train_bytes = train_7z if train_7z is not None else (directory / TRAIN_ARCHIVE).read_bytes()
    labels = (directory / LABELS_CSV).read_bytes()
    zip_path = directory / "cifar-10.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        members = {
            TRAIN_ARCHIVE: train_bytes,
            LABELS_CSV: labels,
            "sampleSubmission.csv": b"id,label\n1,cat\n",
        }
        for name, payload in members.items():
            if name not in leave_out:
                zipped.writestr(name, payload)
        zipped.writestr("test.7z", TEST_7Z_TRAP, compress_type=zipfile.ZIP_STORED)
    zip_bytes = zip_path.read_bytes().replace(TEST_7Z_TRAP, TEST_7Z_TRAP.upper())
    return CompetitionFiles(train_bytes, labels, zip_bytes)


def basic_auth(username: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{key}".encode()).decode()


class KaggleStandIn:
    """Kaggle's download API and file storage, served as an HTTP proxy on 127.0.0.1."""

    def __init__(self, zip_bytes: bytes, username: str, key: str) -> None:
        self.zip_bytes = zip_bytes
        self.accepted_auth = basic_auth(username, key)
        self.competitions = {"cifar-10"}
        self.rules_accepted = True
        self.forbidden_message = RULES_MESSAGE
        self.hang = False  # accept the request, never answer
        self.requests: list[tuple[str, str, str | None]] = []  # (method, url, Authorization)
        self._release = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.stand_in = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> KaggleStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer_api(self, competition: str | None, authorization: str | None) -> tuple[int, dict]:
        if self.hang:
            self._release.wait()
            return 0, {}
        if authorization != self.accepted_auth:
            return 401, {"code": 401, "message": "Unauthenticated"}
        if competition not in self.competitions:
            return 404, {"code": 404, "message": "Competition not found"}
        if not self.rules_accepted:
            return 403, {"code": 403, "message": self.forbidden_message}
        return 302, {}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Requests arrive in proxy form: the path is the absolute URL."""

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    @property
    def stand_in(self) -> KaggleStandIn:
        return self.server.stand_in

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        authorization = self.headers.get("Authorization")
        self.stand_in.requests.append(("POST", self.path, authorization))
        if (url.hostname, url.path) != ("localhost", API_PATH):
            self._send_json(404, {"code": 404, "message": "no such endpoint"})
            return
        competition = json.loads(body or b"{}").get("competitionName")
        status, payload = self.stand_in.answer_api(competition, authorization)
        if status == 0:
            return  # hung until the stand-in closed; no answer
        if status == 302:
            self.send_response(302)
            self.send_header(
                "Location", f"http://{STORAGE_HOST}/{competition}/{competition}.zip?sig=x"
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_json(status, payload)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.stand_in.requests.append(("GET", self.path, self.headers.get("Authorization")))
        if url.hostname != STORAGE_HOST or not url.path.endswith(".zip"):
            self._send_json(404, {"code": 404, "message": "no such file"})
            return
        data = self.stand_in.zip_bytes
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
