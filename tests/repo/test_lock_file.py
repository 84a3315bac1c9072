"""requirements.lock and pyproject.toml agree: every direct dependency is locked at a version its
range allows, nothing is locked as direct that pyproject.toml does not ask for, and every
locked package carries hashes."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO

LOCK = REPO / "requirements.lock"
PROJECT = REPO / "pyproject.toml"
# pip-compile's note on a package pyproject.toml asks for directly.
DIRECT = "cifar10-mlops (pyproject.toml)"


# The extras `make lock` passes to pip-compile (--extra dev --extra team).
LOCKED_EXTRAS = ("dev", "team")


def direct_requirements(pyproject_text: str) -> dict[str, Requirement]:
    project = tomllib.loads(pyproject_text)["project"]
    extras = project["optional-dependencies"]
    lines = [*project["dependencies"], *(line for extra in LOCKED_EXTRAS for line in extras[extra])]
    return {canonicalize_name(req.name): req for req in map(Requirement, lines)}


def parse_lock(lock_text: str) -> dict[str, dict]:
    """{name: {"version", "hashes", "via"}} from pip-compile's output."""
    entries: dict[str, dict] = {}
    current = None
    for line in lock_text.splitlines():
        pinned = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", line)
        if pinned:
            current = {"version": pinned.group(2), "hashes": 0, "via": set()}
            entries[canonicalize_name(pinned.group(1))] = current
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"] += 1
        elif current is not None and re.match(r"^\s+#\s+(via\s+)?\S", line):
            current["via"].add(re.sub(r"^\s+#\s+(via\s+)?", "", line).strip())
        elif not line.strip():
            current = None
    return entries


def disagreements(pyproject_text: str, lock_text: str) -> list[str]:
    wanted = direct_requirements(pyproject_text)
    locked = parse_lock(lock_text)
    problems = []
    for name, req in sorted(wanted.items()):
        if name not in locked:
            problems.append(f"{name}: in pyproject.toml, not in requirements.lock")
        elif not req.specifier.contains(locked[name]["version"], prereleases=True):
            problems.append(f"{name}=={locked[name]['version']} is outside {req.specifier}")
    for name, entry in sorted(locked.items()):
        if DIRECT in entry["via"] and name not in wanted:
            problems.append(f"{name}: locked as a direct dependency, not in pyproject.toml")
        if not entry["hashes"]:
            problems.append(f"{name}: no hash")
    return problems


def test_the_lock_satisfies_pyproject_and_locks_nothing_else_as_direct():
    problems = disagreements(PROJECT.read_text(encoding="utf-8"), LOCK.read_text(encoding="utf-8"))
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_every_locked_package_is_pinned_with_a_hash():
    locked = parse_lock(LOCK.read_text(encoding="utf-8"))
    assert len(locked) > 100  # tensorflow, mlflow and dvc bring about two hundred
    assert all(entry["hashes"] for entry in locked.values())


def _with_dependency(pyproject_text: str, line: str) -> str:
    return pyproject_text.replace("dependencies = [\n", f"dependencies = [\n    {line!r},\n", 1)


def test_the_check_catches_a_missing_dependency_a_broken_range_and_a_stray_pin():
    pyproject = PROJECT.read_text(encoding="utf-8")
    lock = LOCK.read_text(encoding="utf-8")
    locked = parse_lock(lock)
    assert not disagreements(pyproject, lock)

    added = _with_dependency(pyproject, "left-pad-for-tests>=1")
    assert disagreements(added, lock) == [
        "left-pad-for-tests: in pyproject.toml, not in requirements.lock"
    ]

    tensorflow = locked["tensorflow"]["version"]
    narrowed = pyproject.replace('"tensorflow>=2.18,<2.22"', f'"tensorflow<{tensorflow}"')
    assert disagreements(narrowed, lock) == [f"tensorflow=={tensorflow} is outside <{tensorflow}"]

    dropped = pyproject.replace('    "tqdm>=4.66",', "    ")
    assert "tqdm: locked as a direct dependency, not in pyproject.toml" in disagreements(
        dropped, lock
    )


def test_make_lock_compiles_exactly_the_extras_this_check_reads():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert tuple(re.findall(r"--extra (\w+)", makefile)) == LOCKED_EXTRAS
