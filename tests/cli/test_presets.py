"""Presets: every presets/*.yaml is valid params, and `cifar10-mlops preset` prints it exactly."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from cifar10_mlops.cli import presets
from cifar10_mlops.core.errors import PipelineError


def test_the_documented_presets_ship():
    assert {
        "real-photos-cpu",
        "cifar10-gpu-imagenet",
        "seed-kaggle-upsample",
        "seed-vgg16-residual-sepconv",
        "seed-frozen-transfer",
    } <= set(presets.available())


@pytest.mark.parametrize("name", presets.available())
def test_each_preset_is_valid_and_its_dvc_arguments_rebuild_it(name):
    overrides = presets.load_preset(name)  # raises on a key or value params.py refuses
    arguments = presets.dvc_set_arguments(overrides)
    assert arguments[::2] == ["-S"] * (len(arguments) // 2)
    rebuilt: dict = {}
    for assignment in arguments[1::2]:
        presets.apply_overrides(rebuilt, presets.parse_assignment(assignment))
    assert rebuilt == overrides


def test_the_cli_prints_arguments_a_shell_can_pass_to_dvc():
    result = subprocess.run(
        [sys.executable, "-m", "cifar10_mlops.cli.main", "preset", "seed-kaggle-upsample"],
        capture_output=True,
        text=True,
        check=True,
    )
    words = shlex.split(result.stdout)
    assert "model.head=upsample_dense" in words and "train.learning_rate=2.0e-05" in words


def test_an_unknown_preset_is_a_one_line_error():
    result = subprocess.run(
        [sys.executable, "-m", "cifar10_mlops.cli.main", "preset", "fast-and-good"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: preset 'fast-and-good' not found in ")
    assert "real-photos-cpu" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_preset_with_a_wrong_key_names_the_file_and_the_key(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump({"train": {"epoch": 3}}))
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    with pytest.raises(PipelineError, match=r"broken.yaml: unknown key 'train.epoch'"):
        presets.load_preset("broken")


def test_a_malformed_assignment_says_what_is_expected():
    with pytest.raises(PipelineError, match="expected KEY=VALUE"):
        presets.parse_assignment("train.epochs")
    assert presets.parse_assignment("a.b.c=null") == {"a": {"b": {"c": None}}}


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in tree.items():
        keys |= _leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


@pytest.mark.parametrize("name", presets.available())
def test_every_key_a_preset_sets_is_already_in_params_yaml(name):
    # `dvc exp run -S key=value` can only override keys params.yaml has (new ones need '+').
    committed = _leaf_keys(yaml.safe_load((presets.config.PARAMS_FILE).read_text()))
    assert _leaf_keys(presets.load_preset(name)) <= committed
