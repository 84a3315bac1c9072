"""Putting last good outputs back never writes outside the output (issue 27, item 6): a `.dir`
manifest in the DVC cache, or dvc.lock itself, with an absolute or `..` path wrote wherever it
pointed."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from cifar10_mlops.core import last_good
from tests.helpers.pipeline import VENV_BIN


class FakeCache:
    """DVC's local cache layout: <cache>/<md5[:2]>/<md5[2:]>."""

    def __init__(self, root: Path):
        self.root = root

    def add(self, content: bytes) -> str:
        md5 = hashlib.md5(content).hexdigest()
        path = Path(self.oid_to_path(md5))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return md5

    def oid_to_path(self, oid: str) -> str:
        return str(self.root / oid[:2] / oid[2:])


@pytest.mark.parametrize("relpath", ["../escaped.txt", "sub/../../escaped.txt", "ABSOLUTE"])
def test_a_manifest_path_outside_the_output_is_refused(tmp_path, relpath):
    cache = FakeCache(tmp_path / "cache")
    md5 = cache.add(b"planted")
    target = tmp_path / "repo" / "models" / "out"
    target.mkdir(parents=True)
    (target / "kept.bin").write_bytes(b"current")
    escaped = tmp_path / "repo" / "models" / "escaped.txt"
    if relpath == "ABSOLUTE":
        relpath = str(escaped)
    manifest = [{"relpath": "ok.bin", "md5": cache.add(b"ok")}, {"relpath": relpath, "md5": md5}]

    with pytest.raises(ValueError, match="outside"):
        last_good._restore_dir(target, manifest, cache)
    assert not escaped.exists()
    assert (target / "kept.bin").read_bytes() == b"current"  # nothing deleted either


@pytest.mark.parametrize("path", ["../outside", "ABSOLUTE", "models/../../outside"])
def test_a_dvc_lock_output_outside_the_repository_is_not_touched(tmp_path, monkeypatch, path):
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run([str(VENV_BIN / "dvc"), "init", "-q", "--no-scm"], cwd=root, check=True)
    empty = root / ".dvc" / "cache" / "files" / "md5" / "d4" / "1d8cd98f00b204e9800998ecf8427e"
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")  # in the cache: before the fix, restored over the file outside
    outside = tmp_path / "outside"
    outside.write_text("someone else's file")
    if path == "ABSOLUTE":
        path = str(outside)
    (root / "dvc.lock").write_text(
        f"schema: '2.0'\nstages:\n  train:\n    outs:\n    - path: {path}\n"
        "      md5: d41d8cd98f00b204e9800998ecf8427e\n"
    )
    with pytest.raises(ValueError, match="outside"):
        last_good.restore_stage_outputs(root, "train")
    assert outside.read_text() == "someone else's file"


def test_a_normal_manifest_is_restored(tmp_path):
    cache = FakeCache(tmp_path / "cache")
    manifest = [
        {"relpath": "a.bin", "md5": cache.add(b"a")},
        {"relpath": "sub/b.bin", "md5": cache.add(b"b")},
    ]
    target = tmp_path / "out"
    assert last_good._restore_dir(target, manifest, cache)
    assert (target / "sub" / "b.bin").read_bytes() == b"b"
