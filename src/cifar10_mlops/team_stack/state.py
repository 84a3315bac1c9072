"""stack.json: the stack's ports, processes, paths and generated secrets (mode 600)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from cifar10_mlops.team_stack.errors import StackError

STATE_FILE = "stack.json"


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def load_state(directory: Path) -> dict[str, Any]:
    try:
        state = json.loads(state_path(directory).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StackError(f"{state_path(directory)} is unreadable ({exc}); delete it") from None
    return state if isinstance(state, dict) else {}


def save_state(directory: Path, state: dict[str, Any]) -> None:
    path = state_path(directory)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (passwords, keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def new_secrets() -> dict[str, str]:
    return {
        "pg_superuser_password": secrets.token_urlsafe(24),
        "pg_password": secrets.token_urlsafe(24),
        # S3 access keys are conventionally upper-case letters and digits.
        "s3_access_key": "TS" + secrets.token_hex(9).upper(),
        "s3_secret_key": secrets.token_urlsafe(30),
    }
