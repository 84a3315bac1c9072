"""A DVC stage script run as DVC runs it, for a project copy, outside any DVC run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.helpers import REPO


def run_stage_script(
    root: Path,
    stage: str,
    *,
    timeout: float = 120,
    preexec: Callable[[], None] | None = None,
    **env_changes: str,
) -> subprocess.CompletedProcess:
    """src/stages/<stage>.py for the project at `root`: this package's, DVC's and Kaggle's
    variables of the test run removed, `env_changes` added."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CIFAR10_MLOPS_", "DVC_", "KAGGLE_"))
    }
    env.update(CIFAR10_MLOPS_ROOT=str(root), **env_changes)
    return subprocess.run(
        [sys.executable, str(REPO / "src" / "stages" / f"{stage}.py")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
    )
