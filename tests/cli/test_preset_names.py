"""A preset is a name from presets/, never a path (issue 27, item 5): `preset ../../x` read any
YAML file on the machine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cifar10_mlops.cli import presets
from cifar10_mlops.core.errors import PipelineError


@pytest.mark.parametrize(
    "name", ["../../x", "../params", "/etc/passwd", "sub/name", "..", ".hidden", "a\x00b", ""]
)
def test_a_preset_name_that_is_a_path_is_refused_before_any_file_is_read(name, monkeypatch):
    def no_reading(*args, **kwargs):
        raise AssertionError("a file was read")

    monkeypatch.setattr(presets.yaml, "safe_load", no_reading)
    with pytest.raises(PipelineError, match=r"^preset .*: not a preset name; choose one of "):
        presets.load_preset(name)


def test_the_cli_refuses_a_path_in_one_line(tmp_path):
    outside = tmp_path / "x.yaml"
    outside.write_text("train:\n  epochs: 3\n")
    relative = "../" * 12 + str(outside.with_suffix("")).lstrip("/")
    result = subprocess.run(
        [sys.executable, "-m", "cifar10_mlops.cli.main", "preset", relative],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "not a preset name" in result.stderr


def test_the_shipped_presets_still_load():
    for name in presets.available():
        presets.load_preset(name)
