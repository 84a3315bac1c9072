"""Put a failed stage's last good outputs back.

`dvc repro` deletes a stage's outputs before it runs the command, so a stage that then stops
on bad input would leave the project without its model or arrays. dvc.lock still records the
outputs of the last successful run, and DVC's cache holds their content: when a stage run by
DVC fails, every output is put back from there (metrics kept in git with `cache: false` come
back from the last commit when that copy is the one dvc.lock records).

(`persist: true` would stop the deletion instead, but it also switches off DVC's run cache,
which restores old results instantly when a param is set back.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from cifar10_mlops.core.atomic import atomic_path
from cifar10_mlops.core.digests import file_hash

DVC_STAGE_ENV = "DVC_STAGE"


def restore_after_failure(root: Path) -> list[str]:
    """Called on a failed stage: restore its outputs when DVC is running it."""
    stage = os.environ.get(DVC_STAGE_ENV)
    if not stage:
        return []
    try:
        return restore_stage_outputs(root, stage)
    except Exception:  # never hide the stage's own error behind a restore problem
        return []


def restore_stage_outputs(root: Path, stage: str) -> list[str]:
    """Make every output of `stage` match dvc.lock again; return the paths rewritten."""
    lock_file = root / "dvc.lock"
    if not lock_file.is_file():
        return []
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    outs = (lock.get("stages") or {}).get(stage, {}).get("outs", [])
    if not outs:
        return []
    from dvc.repo import Repo  # only on the failure path: importing DVC costs ~0.4 s

    for out in outs:  # dvc.lock is a tracked file anyone can edit in a pull request
        _inside(root, out["path"], "dvc.lock")
    cache = Repo(str(root)).cache.local
    restored = []
    for out in outs:
        target = root / out["path"]
        if out["md5"].endswith(".dir"):
            manifest = json.loads(Path(cache.oid_to_path(out["md5"])).read_text(encoding="utf-8"))
            if _restore_dir(target, manifest, cache):
                restored.append(out["path"])
        elif _restore_file(target, out["md5"], cache, root, out["path"]):
            restored.append(out["path"])
    return restored


def _md5(path: Path) -> str:
    return file_hash(path, "md5").hexdigest()


def _restore_file(target: Path, md5: str, cache, root: Path, rel_path: str) -> bool:
    if target.is_file() and _md5(target) == md5:
        return False
    cached = Path(cache.oid_to_path(md5))
    with atomic_path(target) as tmp:
        if cached.is_file():
            shutil.copyfile(cached, tmp)
        else:  # `cache: false` outputs (metrics.json) live in git instead
            committed = subprocess.run(
                ["git", "show", f"HEAD:{rel_path}"], cwd=root, capture_output=True, check=True
            ).stdout
            if hashlib.md5(committed).hexdigest() != md5:
                raise FileNotFoundError(rel_path)
            tmp.write_bytes(committed)
    return True


def _inside(folder: Path, relpath: str, source: str) -> Path:
    """folder/relpath, refused when relpath is absolute or climbs out with `..`."""
    path = folder / relpath
    if Path(relpath).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{source}: path {relpath!r} lies outside {folder}; not restored")
    return path


def _restore_dir(target: Path, manifest: list[dict], cache) -> bool:
    wanted = {entry["relpath"]: entry["md5"] for entry in manifest}
    for rel in wanted:  # checked before anything is written or deleted
        _inside(target, rel, "the DVC cache's .dir manifest")
    if target.is_dir():
        present = {str(path.relative_to(target)) for path in target.rglob("*") if path.is_file()}
        if present == set(wanted) and all(_md5(target / rel) == md5 for rel, md5 in wanted.items()):
            return False
    staging = target.with_name(f".{target.name}.restore")
    shutil.rmtree(staging, ignore_errors=True)
    for rel, md5 in wanted.items():
        destination = staging / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache.oid_to_path(md5), destination)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return True
