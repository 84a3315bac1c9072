"""Presets: named sets of params.yaml keys (presets/<name>.yaml), checked against the schema.

`cifar10-mlops preset NAME` prints them as DVC `-S key=value` arguments, so
`dvc exp run $(cifar10-mlops preset real-photos-cpu)` runs the pipeline with the preset (DVC
writes the values into params.yaml, where they stay for later `dvc repro` runs).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from cifar10_mlops.core import config
from cifar10_mlops.core.errors import PipelineError, quote

PRESETS_DIR = config.project_root() / "presets"
PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def available() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's keys, after checking that params.yaml with them applied is valid."""
    from cifar10_mlops.core.params import parse_params, read_params_yaml

    if not PRESET_NAME.fullmatch(name):  # a name, never a path: `../../x` read any YAML file
        raise PipelineError(
            f"preset {quote(name)}: not a preset name; choose one of {', '.join(available())}"
        )
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise PipelineError(
            f"preset '{name}' not found in {PRESETS_DIR}; choose one of {', '.join(available())}"
        )
    overrides = yaml.safe_load(path.read_text()) or {}
    parse_params(apply_overrides(read_params_yaml(config.PARAMS_FILE), overrides), path)
    return overrides


def apply_overrides(target: dict, overrides: dict) -> dict:
    """Merge nested `overrides` into `target` (in place) and return it."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            apply_overrides(target[key], value)
        else:
            target[key] = value
    return target


def parse_assignment(text: str) -> dict[str, Any]:
    """'train.epochs=30' -> {'train': {'epochs': 30}} (the value read as YAML, like `dvc -S`)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise PipelineError(f"'{text}': expected KEY=VALUE, e.g. train.epochs=30")
    nested: dict[str, Any] = {}
    cursor = nested
    *parents, leaf = key.split(".")
    for part in parents:
        cursor = cursor.setdefault(part, {})
    cursor[leaf] = yaml.safe_load(value)
    return nested


def dvc_set_arguments(overrides: dict, prefix: str = "") -> list[str]:
    """{'train': {'epochs': 30}} -> ['-S', 'train.epochs=30'] (values as YAML reads them)."""
    arguments: list[str] = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            arguments += dvc_set_arguments(value, f"{prefix}{key}.")
        else:
            arguments += ["-S", f"{prefix}{key}={_yaml_scalar(value)}"]
    return arguments


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, str) and value.isidentifier() and yaml.safe_load(value) == value:
        return value
    # No spaces: the arguments are spliced into a shell command, `$(cifar10-mlops preset NAME)`.
    text = json.dumps(value, separators=(",", ":"))
    if isinstance(value, float) and "e" in text and "." not in text:
        text = text.replace("e", ".0e")  # YAML 1.1 reads 2e-05 as a string, 2.0e-05 as a float
    return text
