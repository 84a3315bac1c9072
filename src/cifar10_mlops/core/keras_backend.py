"""The Keras backend of a pipeline run: `train.backend` in params.yaml, chosen before Keras is
imported (Keras reads KERAS_BACKEND once, at its import).

The stages call `use_backend_from_params()` before their other imports. It only peeks at the
one key: a params.yaml that does not parse is reported by the stage's own params check, with
its one-line error, not here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from cifar10_mlops.core.config import PARAMS_FILE
from cifar10_mlops.core.errors import PipelineError

BACKENDS = ("tensorflow", "jax")


def use_backend(name: str) -> None:
    """Make `name` the Keras backend of this process; an error if Keras already runs another."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        running = keras.backend.backend()
        if running != name:
            raise PipelineError(
                f"train.backend is {name!r} but Keras was already imported on {running!r}; "
                "choose the backend before importing Keras"
            )
        return
    os.environ["KERAS_BACKEND"] = name


def use_backend_from_params(params_file: Path = PARAMS_FILE) -> None:
    """Set KERAS_BACKEND from params.yaml's train.backend, when the file says one."""
    try:
        with open(params_file, encoding="utf-8") as handle:
            backend = yaml.safe_load(handle)["train"]["backend"]
    except Exception:  # absent, unreadable or malformed: the params check reports it
        return
    if backend in BACKENDS:
        use_backend(backend)
