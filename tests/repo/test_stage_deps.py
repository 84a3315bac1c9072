"""dvc.yaml's deps cover every file each stage's script imports, so no change goes unrerun."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO
from tests.helpers.imports import imported_modules, module_file, stage_script

ROOT = REPO
SRC = ROOT / "src"
PACKAGE = "cifar10_mlops"


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _imported_modules(path: Path) -> set[str]:
    """Every module of the package `path` imports, at any depth (function-level too)."""
    return {name for name in imported_modules(path) if name.split(".")[0] == PACKAGE}


def files_reached(script: Path) -> set[Path]:
    """The script and every package file it reaches, package __init__ files included."""
    reached: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in reached:
            continue
        reached.add(path)
        for module in _imported_modules(path):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
                file = module_file(".".join(parts[:depth]))
                if file is not None:
                    todo.append(file)
    return reached


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(dep) or Path(dep) in rel.parents for dep in deps)


@pytest.mark.parametrize("name", sorted(_stages()))
def test_every_file_a_stage_imports_is_one_of_its_deps(name):
    stage = _stages()[name]
    deps = [dep for dep in stage.get("deps", []) if isinstance(dep, str)]
    missing = sorted(
        str(path.relative_to(ROOT))
        for path in files_reached(stage_script(stage))
        if not _covered(path, deps)
    )
    assert not missing, f"dvc.yaml stage {name!r} misses deps on: {', '.join(missing)}"


def _stages_depending_on(folder: str) -> set[str]:
    files = list((SRC / PACKAGE / folder).rglob("*.py"))
    assert files, f"no package folder {folder}"
    return {
        name
        for name, stage in _stages().items()
        if any(_covered(path, [d for d in stage["deps"] if isinstance(d, str)]) for path in files)
    }


@pytest.mark.parametrize(
    ("folder", "stages"),
    [
        ("data", {"download", "preprocess", "train", "evaluate"}),
        ("training", {"train"}),  # evaluate follows through models/model.keras
        ("evaluation", {"evaluate"}),
        ("cli", set()),  # predict, gate, presets: no stage reruns
        ("harness", set()),  # benchmarks and tests only
    ],
)
def test_a_package_folder_reruns_exactly_the_stages_that_import_it(folder, stages):
    assert _stages_depending_on(folder) == stages


def test_the_import_walk_follows_function_level_and_submodule_imports(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text(
        "from cifar10_mlops.tracking import registry\n"
        "def main():\n"
        "    from cifar10_mlops.cli.presets import load_preset\n",
        encoding="utf-8",
    )
    reached = {str(path.relative_to(SRC)) for path in files_reached(script) if path != script}
    assert {
        "cifar10_mlops/__init__.py",
        "cifar10_mlops/tracking/__init__.py",
        "cifar10_mlops/tracking/registry.py",
        "cifar10_mlops/tracking/run_opening.py",  # registry's own import
        "cifar10_mlops/cli/__init__.py",
        "cifar10_mlops/cli/presets.py",
    } <= reached


def test_dvc_ignores_bytecode_so_folder_deps_change_only_with_the_code():
    ignored = (ROOT / ".dvcignore").read_text(encoding="utf-8").split()
    assert "__pycache__/" in ignored
