"""The package's house rules: no import cycles, library code imports no tracker, training and
evaluation do not import each other, and the light commands (registry, presets, gate) start
without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.helpers.imports import imported_modules

PACKAGE_DIR = REPO / "src" / "cifar10_mlops"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}


def _import_graph() -> dict[str, set[str]]:
    return {
        name: {dep for dep in imported_modules(path) if dep in MODULES and dep != name}
        for name, path in MODULES.items()
    }


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    # Function-level imports count: a cycle closed inside a function is still a tangle.
    cycle = _find_cycle(_import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("folder", ["core", "data", "model", "training", "evaluation"])
def test_library_code_imports_no_tracker(folder):
    offenders = {
        str(path.relative_to(PACKAGE_DIR)): sorted(
            name
            for name in imported_modules(path)
            if name.split(".")[0] == "mlflow" or name.startswith("cifar10_mlops.tracking")
        )
        for path in (PACKAGE_DIR / folder).rglob("*.py")
    }
    assert not {path: names for path, names in offenders.items() if names}


@pytest.mark.parametrize(
    ("folder", "other"), [("training", "evaluation"), ("evaluation", "training")]
)
def test_training_and_evaluation_do_not_import_each_other(folder, other):
    # Siblings over model/: a harness that runs both (harness/trial.py) sits above them.
    offenders = sorted(
        str(path.relative_to(PACKAGE_DIR))
        for path in (PACKAGE_DIR / folder).rglob("*.py")
        if any(name.startswith(f"cifar10_mlops.{other}") for name in imported_modules(path))
    )
    assert not offenders


@pytest.mark.parametrize(
    "module",
    [
        "cifar10_mlops.tracking.registry",
        "cifar10_mlops.cli.presets",
        "cifar10_mlops.evaluation.gate",
    ],
)
def test_importing_a_light_module_does_not_load_tensorflow(module):
    probe = f"import sys, {module}; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_nothing_in_the_repository_refers_to_a_file_outside_it():
    outside = ("../" + "shared", "DESIGN" + ".md")  # spelt in pieces so this file does not match
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for name in tracked:
        path = REPO / name
        if (
            path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ""}
            or not path.is_file()
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{name}: {word}" for word in outside if word in text]
    assert not hits
