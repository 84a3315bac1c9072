"""What a Python file imports, read from its syntax tree (nothing is run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

SRC = REPO / "src"


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports at any depth, function-level imports included.

    `from a import b` counts both `a` and `a.b`: b may be a submodule, not only a name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_file(dotted: str) -> Path | None:
    """The file of a module under src/ (a module file or a package's __init__.py), or None."""
    base = SRC.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def stage_script(stage: dict) -> Path:
    """The script a dvc.yaml stage runs (`python src/stages/<name>.py`)."""
    match = re.search(r"python (\S+\.py)", stage["cmd"])
    assert match, f"cannot find the script in {stage['cmd']!r}"
    return REPO / match.group(1)
