"""Where a run came from: the git commit, the data version and the training digest."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from cifar10_mlops.core.digests import file_hash
from cifar10_mlops.core.params import Params


def git_commit(root: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def data_version(paths: Iterable[Path]) -> str:
    """Content hash of the processed arrays: the same data gives the same version anywhere."""
    digest = hashlib.sha256()
    for path in paths:
        file_hash(path, digest=digest)
    return f"sha256:{digest.hexdigest()[:16]}"


def training_digest(params: Params, data_version_tag: str) -> str:
    """What makes two trainings the same: model and train params, experiment, data version."""
    material = {
        "model": params.model.model_dump(),
        "train": params.train.model_dump(),
        "experiment": params.mlflow.experiment,
        "data_version": data_version_tag,
    }
    text = json.dumps(material, sort_keys=True)
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
