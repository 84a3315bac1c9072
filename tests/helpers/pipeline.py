"""Shared by the slow tests: a temporary git + DVC copy of this repository and tiny params."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cifar10_mlops.cli.presets import apply_overrides
from tests.helpers import REPO
from tests.helpers.models import SMALL_BACKBONE

VENV_BIN = Path(sys.executable).parent
# What a pipeline run needs from the repository: the same files a fresh clone has.
PIPELINE_FILES = [
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".gitignore",
    "src",
]

# What the slow tests run: the real pipeline on 200 images with the smallest backbone, so a
# whole `dvc repro` takes seconds, not minutes. None of them is about ResNet50 itself: the
# model tests build it, and CI's pipeline step and the regression-gate test train the
# committed ResNet50 recipe.
TINY_PARAMS = {
    "data": {"synthetic": {"count": 200}},
    "model": SMALL_BACKBONE,
    "train": {"epochs": 2, "batch_size": 32, "validation_split": 0.1},
    "evaluate": {"misclassified_grid": 9},
}


# Nested params changes merged in place, the way presets are applied.
deep_update = apply_overrides


def pipeline_env(root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "CIFAR10_MLOPS_", "DVC_"))
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def run(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, cwd=root, env=pipeline_env(root), capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout[-4000:]}\n"
            f"stderr:\n{result.stderr[-4000:]}"
        )
    return result


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(root, str(VENV_BIN / "dvc"), *args, check=check)


def make_pipeline_repo(root: Path, params_changes: dict) -> Path:
    """A git repository holding a copy of the pipeline, with params.yaml edited, committed."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        source = REPO / name
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, target)
    write_params(root, params_changes)
    run(root, "git", "init", "-q")
    # A repository-local identity: `dvc exp run` commits too, and CI may have no global one.
    run(root, "git", "config", "user.name", "pipeline test")
    run(root, "git", "config", "user.email", "pipeline-test@example.invalid")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "pipeline copy")
    return root


def write_params(root: Path, changes: dict) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    deep_update(params, changes)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
