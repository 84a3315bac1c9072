"""A real `mlflow models serve` on 127.0.0.1, and a small HTTP client for it: what the serving
tests and benchmarks/serving_load.py send requests to."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

from tests.helpers.images import png_header_only
from tests.helpers.pipeline import VENV_BIN

STARTUP_TIMEOUT_S = 180  # loading TensorFlow and the model; ~20 s on 2 idle cores


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ModelServer:
    """`mlflow models serve -m MODEL --env-manager local` in its own process group."""

    def __init__(self, model_uri: str, workdir: Path, env: dict[str, str] | None = None):
        self.model_uri = model_uri
        self.log = workdir / "model-server.log"
        # The CLI runs `uvicorn` by name: the virtualenv's bin/ must be on PATH, as when it
        # is activated.
        path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "PATH": path, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> ModelServer:
        self.port = free_port()
        command = [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            self.model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # stop() reaches the uvicorn worker too
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.request("GET", "/ping", timeout=5)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow models serve did not answer /ping; its log:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else "(no log)"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 120,
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def invoke(self, payload: dict | bytes, timeout: float = 120) -> tuple[int, bytes]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", "/invocations", body, timeout=timeout)

    def rss_mib(self) -> float:
        """Resident memory of the server's whole process group (CLI, uvicorn, workers)."""
        assert self.process is not None
        total_kib = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) != self.process.pid:
                    continue
                status = (entry / "status").read_text()
            except (OSError, ProcessLookupError):
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        return total_kib / 1024

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def photos_payload(files: list[bytes]) -> dict:
    """Photo files as MLflow's binary-column request: base64 in `dataframe_split`."""
    rows = [[base64.b64encode(data).decode("ascii")] for data in files]
    return {"dataframe_split": {"columns": ["image"], "data": rows}}


def predictions(body: bytes) -> list[dict]:
    return json.loads(body)["predictions"]


def _json(value) -> bytes:
    return json.dumps(value).encode()


def hostile_requests() -> dict[str, bytes]:
    """Requests a careless or hostile client sends, built for real."""
    one_photo = base64.b64encode(png_header_only(32, 32)).decode()  # header only: refused
    bomb = base64.b64encode(png_header_only(10_000, 10_000)).decode()
    hundred_mb = 100 * 1024 * 1024
    return {
        "wrong shape": _json({"inputs": np.zeros((2, 28, 28, 3), np.uint8).tolist()}),
        "wrong dtype": _json({"inputs": np.full((1, 32, 32, 3), 0.5).tolist()}),
        "not JSON": b"this is not JSON {",
        "broken base64": _json({"dataframe_split": {"columns": ["image"], "data": [["iVBOR!"]]}}),
        "not a picture": _json({"dataframe_split": {"columns": ["image"], "data": [[one_photo]]}}),
        "decompression bomb": _json({"dataframe_split": {"columns": ["image"], "data": [[bomb]]}}),
        # one 100 MB "photo" of base64 text: a body the size of a big upload
        "100 MB body": _json(
            {"dataframe_split": {"columns": ["image"], "data": [["A" * hundred_mb]]}}
        ),
        "10,000 images": _json(
            {"dataframe_split": {"columns": ["image"], "data": [[one_photo]] * 10_000}}
        ),
    }


HOSTILE_MESSAGES = {
    "wrong shape": "expected images of shape (N, 32, 32, 3), got shape (2, 28, 28, 3)",
    "wrong dtype": "pixel values must be whole numbers in 0..255",
    "not JSON": "Ensure that input is a valid JSON formatted string",
    "broken base64": "row 0: not valid base64",
    "not a picture": "row 0: not a picture Pillow can read",
    "decompression bomb": "row 0: image is 10000x10000 pixels, above the cap",
    "100 MB body": "row 0: not a picture Pillow can read",
    "10,000 images": "10000 images in one request, at most 1024; send them in several requests",
}
