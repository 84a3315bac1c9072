"""A real `mlflow server` for the tests, and running a pipeline command against one.

TrackingServer: one server as a subprocess on 127.0.0.1 (sqlite backend, proxied artifacts in a
local directory). The team stack (cifar10_mlops.team_stack: PostgreSQL, S3, a server) is
started through `make team-stack` instead (tests/team/conftest.py); both start, wait for and
stop their servers with cifar10_mlops.team_stack.processes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cifar10_mlops.team_stack.errors import StackError
from cifar10_mlops.team_stack.ports import free_ports
from cifar10_mlops.team_stack.processes import (
    http_ok,
    process_record,
    spawn,
    stop_process_group,
    wait_until,
)
from tests.helpers.pipeline import VENV_BIN, pipeline_env

EXPERIMENT = "cifar10-mlops"
STARTUP_TIMEOUT_S = 90  # the first start creates the schema; ~15 s on 2 busy cores
PIPELINE_TIMEOUT_S = 1200


class MlflowProcess:
    """An `mlflow server` or `mlflow ui` on a free port of 127.0.0.1, in its own process group
    (stop() ends uvicorn too). Subclasses give the command's arguments."""

    name = "mlflow"
    log_name = "mlflow.log"
    startup_timeout_s = STARTUP_TIMEOUT_S

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.log = workdir / self.log_name
        self.process: subprocess.Popen | None = None
        self.url = ""

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else "(no log)"

    def start(self, attempts: int = 3) -> str:
        """Start on a free port; retry with a new one if another process took it meanwhile.
        Returns the URL once /health answers."""
        for _ in range(attempts):
            port = free_ports(1)[0]
            self.url = f"http://127.0.0.1:{port}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
            # The server's job runner (a pool of huey consumers for GenAI jobs) is not needed
            # here; without it the server is two processes instead of nine.
            env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
            command = [
                str(VENV_BIN / "mlflow"),
                *self.arguments(),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ]
            # Its own process group, so stop() reaches uvicorn too.
            self.process = spawn(command, self.log, env, self.workdir)
            record = process_record(self.process, self.log)
            try:
                wait_until(
                    lambda: http_ok(f"{self.url}/health"),
                    self.name,
                    record,
                    self.startup_timeout_s,
                    port=port,  # answered by this server, not by a process that took the port
                )
                return self.url
            except StackError:
                pass
            self.stop()
            if "address already in use" not in self.log_text().lower():
                break
        raise RuntimeError(
            f"{self.name} gave no answer on {self.url}/health within {self.startup_timeout_s} s "
            f"(exit code {self.process.returncode if self.process else None}); its log:\n"
            f"{self.log_text()}"
        )

    def stop(self) -> None:
        """SIGTERM the whole process group (the CLI and its uvicorn child), then SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process.pid)
            self.process.wait(timeout=10)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class TrackingServer(MlflowProcess):
    """`mlflow server` with a sqlite backend and proxied artifacts in a local directory."""

    name = "mlflow server"
    log_name = "server.log"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.backend = workdir / "server.db"
        self.artifacts = workdir / "artifacts"

    def arguments(self) -> list[str]:
        return [
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.backend}",
            "--artifacts-destination",
            str(self.artifacts),
        ]


def run_with_env(
    root: Path, *args: str, extra_env: dict[str, str], timeout: int = PIPELINE_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """tests.helpers.pipeline.run strips MLFLOW_* from the environment; this one adds some back."""
    env = {**pipeline_env(root), **extra_env}
    result = subprocess.run(
        args, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout[-4000:]}\n"
            f"stderr:\n{result.stderr[-4000:]}"
        )
    return result


def artifact_files(client, run_id: str, path: str | None = None) -> list[str]:
    """Every artifact file of a run under `path`, listed through the client."""
    files = []
    for item in client.list_artifacts(run_id, path):
        files.extend(artifact_files(client, run_id, item.path) if item.is_dir else [item.path])
    return files
