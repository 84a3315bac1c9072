"""The stack's `mlflow server`: PostgreSQL as backend store (given through
MLFLOW_BACKEND_STORE_URI, not on the command line where `ps` shows it) and proxied artifacts in
s3://ml-team/mlflow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cifar10_mlops.team_stack.ports import HOST
from cifar10_mlops.team_stack.postgres import backend_store_uri
from cifar10_mlops.team_stack.processes import http_ok, start_server
from cifar10_mlops.team_stack.seaweedfs import BUCKET, s3_endpoint

MLFLOW_ARTIFACTS = f"s3://{BUCKET}/mlflow"
MLFLOW_WORKERS = 2


def tracking_uri(state: dict[str, Any]) -> str:
    return f"http://{HOST}:{state['ports']['mlflow']}"


def mlflow_answers(state: dict[str, Any]) -> bool:
    return http_ok(f"{tracking_uri(state)}/health")


def start_mlflow(directory: Path, state: dict[str, Any], mlflow: str) -> None:
    keys = state["secrets"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(
        {
            # Read by `mlflow server` itself: the password stays off the command line.
            "MLFLOW_BACKEND_STORE_URI": backend_store_uri(state),
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint(state),
            "AWS_ACCESS_KEY_ID": keys["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": keys["s3_secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            # The job runner (huey consumers for GenAI jobs) is not needed to track runs.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    command = [
        mlflow,
        "server",
        "--artifacts-destination",
        MLFLOW_ARTIFACTS,
        "--host",
        HOST,
        "--port",
        str(state["ports"]["mlflow"]),
        "--workers",
        str(MLFLOW_WORKERS),
    ]
    start_server(
        "mlflow",
        command,
        env,
        directory,
        state,
        lambda: mlflow_answers(state),
        "mlflow server",
        port=state["ports"]["mlflow"],
    )
