"""The newcomer's loop from a fresh clone: install, the main job, a no-op rerun, the tests.

Usage:  python benchmarks/fresh_clone.py [--skip-tests] [--keep] [--rev HEAD]

Clones this repository (the committed state of --rev, nothing uncommitted) into a temporary
directory and times, one after the other, with nothing else running:

1. `make install`            the locked environment (pip's download cache stays warm)
2. `dvc repro --force`       the main job: all four stages with the committed params
3. `dvc repro`               again: nothing changed, so no stage may run
4. `make test`               the whole suite, slow tests included (skipped with --skip-tests)

Prints each step's seconds against the project's goal for it (2 min, 3 min, -, 10 min) and the
no-op rerun as a share of the full one, then whether the main job reproduced the committed
reports/metrics.json byte for byte (it does on the machine that committed it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAN = re.compile(r"Running stage '([^']+)'")
GOALS_S = {"install": 120, "repro": 180, "noop": None, "test": 600}


def timed(name: str, args: list[str], cwd: Path) -> tuple[float, str]:
    print(f"[{name}] {' '.join(args)}", flush=True)
    # As the Makefile's targets run: the venv's python first, and Python keeps the bytecode
    # it compiles (the venv is installed without it).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"{name} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return seconds, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the clone (its path is printed)")
    parser.add_argument("--rev", default="HEAD")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="fresh-clone-"))
    clone = scratch / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", args.rev], check=True)
    dvc = str(clone / ".venv" / "bin" / "dvc")
    rows: dict[str, float] = {}
    try:
        rows["install"], _ = timed("install", ["make", "install"], clone)
        rows["repro"], out = timed("repro", [dvc, "repro", "--force"], clone)
        print(f"  stages run: {', '.join(RAN.findall(out))}")
        rows["noop"], out = timed("noop", [dvc, "repro"], clone)
        assert not RAN.findall(out), f"the no-op repro ran stages:\n{out}"
        same = (clone / "reports/metrics.json").read_bytes() == (
            REPO / "reports/metrics.json"
        ).read_bytes()
        if not args.skip_tests:
            rows["test"], out = timed("test", ["make", "test"], clone)
            print("  " + out.strip().splitlines()[-1])
    finally:
        if args.keep:
            print(f"clone kept at {clone}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n{'step':<10}{'seconds':>9}  {'goal':>6}")
    for name, seconds in rows.items():
        goal = GOALS_S[name]
        verdict = "" if goal is None else f"{goal:>6}  {'met' if seconds <= goal else 'MISSED'}"
        print(f"{name:<10}{seconds:>9.1f}  {verdict}")
    print(f"no-op repro / full repro: {rows['noop'] / rows['repro']:.3f}")
    print(f"reports/metrics.json identical to the committed one: {same}")


if __name__ == "__main__":
    sys.exit(main())
