"""The stack's S3 server: SeaweedFS (`weed mini`) with every port on 127.0.0.1, telemetry and
admin UI off, and one generated access key (without an S3 config it accepts anonymous
requests). Bucket `ml-team`: MLflow's artifacts under mlflow/, a DVC remote under dvc/."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cifar10_mlops.team_stack.ports import HOST
from cifar10_mlops.team_stack.processes import http_ok, start_server
from cifar10_mlops.team_stack.seaweedfs_security import write_security_config
from cifar10_mlops.team_stack.state import write_private

BUCKET = "ml-team"
DVC_REMOTE = f"s3://{BUCKET}/dvc"
# SeaweedFS listens on every one of these (grpc ports default to the http port + 10000, which
# could be taken: each gets a free port of its own).
WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
UNIX_SOCKET_MAX = 100  # sun_path holds 108 bytes


def s3_endpoint(state: dict[str, Any]) -> str:
    return f"http://{HOST}:{state['ports']['s3.port']}"


def s3_client(state: dict[str, Any]):
    """boto3's S3 client on the stack's server, with its key."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint(state),
        aws_access_key_id=state["secrets"]["s3_access_key"],
        aws_secret_access_key=state["secrets"]["s3_secret_key"],
        region_name="us-east-1",
    )


def bucket_ready(state: dict[str, Any]) -> bool:
    if not http_ok(f"{s3_endpoint(state)}/healthz"):
        return False
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client(state).head_bucket(Bucket=BUCKET)
    except (BotoCoreError, ClientError):
        return False
    return True


def _socket_path(directory: Path, name: str) -> Path:
    path = directory / name
    if len(str(path)) > UNIX_SOCKET_MAX:
        path = Path(tempfile.gettempdir()) / f"cifar10-mlops-{os.getpid()}-{name}"
    return path


def start_seaweedfs(directory: Path, state: dict[str, Any], weed: str) -> None:
    data = directory / "seaweedfs"
    data.mkdir(mode=0o700, exist_ok=True)
    config = directory / "s3.json"
    keys = state["secrets"]
    identity = {
        "name": "team",
        "credentials": [{"accessKey": keys["s3_access_key"], "secretKey": keys["s3_secret_key"]}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    write_private(config, json.dumps({"identities": [identity]}, indent=2))
    write_security_config(directory)  # read by weed from its working directory
    sockets = {
        "filer.localSocket": _socket_path(directory, "filer.sock"),
        "s3.localSocket": _socket_path(directory, "s3.sock"),
    }
    state["sockets"] = [str(path) for path in sockets.values()]
    command = [
        weed,
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-bucket={BUCKET}",
        "-disableHttp",  # the master's and filer's HTTP APIs: S3 is the only way in
        *(f"-{name}={state['ports'][name]}" for name in WEED_PORTS),
        *(f"-{name}={path}" for name, path in sockets.items()),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    start_server(
        "seaweedfs",
        command,
        env,
        directory,
        state,
        lambda: bucket_ready(state),
        "SeaweedFS (weed mini)",
        port=state["ports"]["s3.port"],
    )
