"""The team stack for tests/team, started once for all its modules with `make team-stack` (as
CI must start its services itself, and as docs/team-setup.md shows), stopped and deleted with
`make team-stack-down PURGE=1`."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cifar10_mlops.team_stack import postgres, seaweedfs
from cifar10_mlops.team_stack.stack import exports
from cifar10_mlops.team_stack.state import load_state
from tests.helpers import REPO
from tests.helpers.pipeline import VENV_BIN, pipeline_env

MAKE_TIMEOUT_S = 600


def make(*args: str) -> subprocess.CompletedProcess:
    """`make -s ARGS` in this repository, with the environment a pipeline run gets."""
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), *args],
        env=pipeline_env(REPO),
        capture_output=True,
        text=True,
        timeout=MAKE_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def parse_exports(text: str) -> dict[str, str]:
    """{NAME: value} from the `export NAME=value` lines `make team-stack` prints."""
    exports = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            exports[name] = value
    return exports


@dataclass
class Stack:
    directory: Path
    env: dict[str, str]  # what a client exports
    up_output: str

    @property
    def state(self) -> dict[str, Any]:
        return load_state(self.directory)

    @property
    def tracking_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def s3_keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix` in the bucket, listed with boto3."""
        s3 = seaweedfs.s3_client(self.state)
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=seaweedfs.BUCKET, Prefix=prefix
        ):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Rows straight from MLflow's PostgreSQL database."""
        with postgres.connect(self.state) as connection, connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall()

    def log(self, name: str) -> str:
        path = self.directory / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


# One stack for every module of tests/team that asks for it: each start costs ~30 s of CI.
@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("team-stack")
    up = make("team-stack", f"TEAM_STACK_DIR={directory}")
    try:
        assert up.returncode == 0, f"make team-stack failed:\n{up.stdout}\n{up.stderr}"
        env = parse_exports(up.stdout)
        assert set(env) == set(exports(load_state(directory))), up.stdout
        # What the docs have a shell eval: the same exports.
        again = subprocess.run(
            [str(VENV_BIN / "cifar10-mlops"), "team-stack", "env", "--dir", str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert parse_exports(again.stdout) == env, again.stderr
        yield Stack(directory, env, up.stderr + up.stdout)
    finally:
        down = make("team-stack-down", f"TEAM_STACK_DIR={directory}", "PURGE=1")
        assert down.returncode == 0, f"make team-stack-down failed:\n{down.stderr}"
