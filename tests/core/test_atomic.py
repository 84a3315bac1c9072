"""Atomic writes: the target is either the old file or the complete new one, never litter."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from cifar10_mlops.core.atomic import atomic_path, atomic_write_json, atomic_write_text


def _litter(directory):
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.exists() and not target.exists()  # nothing visible until the block ends
        tmp.write_text("hello")
    assert target.read_text() == "hello"
    assert not tmp.exists()
    assert _litter(tmp_path) == []


def test_atomic_path_keeps_final_suffix(tmp_path):
    with atomic_path(tmp_path / "model.keras") as tmp:
        assert tmp.name.startswith(".model.keras.tmp-")
        assert tmp.suffix == ".keras"
        tmp.write_bytes(b"x")


def test_atomic_path_creates_parent_directories(tmp_path):
    target = tmp_path / "a" / "b" / "c.json"
    atomic_write_text(target, "{}\n")
    assert target.read_text() == "{}\n"


def test_exception_leaves_old_file_intact_and_no_litter(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _litter(tmp_path) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    target = tmp_path / "x.csv"
    with pytest.raises(KeyboardInterrupt), atomic_path(target):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_failed_json_serialisation_leaves_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"nan": float("nan")})  # NaN is not JSON
    assert target.read_text() == "old"
    assert _litter(tmp_path) == []


def test_atomic_write_json_format_and_numpy_values(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"b": np.int64(3), "a": np.float32(0.5), "c": np.arange(2)})
    text = target.read_text()
    assert text == '{\n  "a": 0.5,\n  "b": 3,\n  "c": [\n    0,\n    1\n  ]\n}\n'
    assert json.loads(text) == {"a": 0.5, "b": 3, "c": [0, 1]}


def test_atomic_write_text_overwrites_and_is_byte_exact(tmp_path):
    target = tmp_path / "t.csv"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "a,b\r\n1,2\n")
    assert target.read_bytes() == b"a,b\r\n1,2\n"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_new_file_mode_follows_umask_and_existing_mode_is_kept(tmp_path):
    old_mask = os.umask(0o022)
    try:
        fresh = atomic_write_text(tmp_path / "fresh.txt", "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # not mkstemp's private 0600
        kept = tmp_path / "kept.txt"
        kept.write_text("x")
        kept.chmod(0o640)
        atomic_write_text(kept, "y")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(old_mask)
