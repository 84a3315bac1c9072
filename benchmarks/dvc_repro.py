"""What `dvc repro` costs, and what it skips, in a throwaway git + DVC copy of this repository.

Usage:  python benchmarks/dvc_repro.py [--keep]

With the tests' tiny params (tests/helpers/pipeline.py's TINY_PARAMS: 200 synthetic images,
the smallest compact backbone, 2 epochs), times
1. a full `dvc repro` (every stage runs: the baseline of the ratios),
2. a no-op `dvc repro`, three times (nothing changed, so no stage may run),
3. `dvc repro` after changing only train.epochs (only train and evaluate may run),
and prints a table: seconds, the stages that ran, and the share of the full run.
--keep leaves the copy in place (its path is printed).
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers.pipeline import (  # noqa: E402
    TINY_PARAMS,
    dvc,
    make_pipeline_repo,
    write_params,
)

STAGES = ("download", "preprocess", "train", "evaluate")
RAN = re.compile(r"Running stage '([^']+)'")


def timed_repro(repo: Path) -> tuple[float, list[str]]:
    """(seconds, stages that ran) of one `dvc repro`."""
    start = time.perf_counter()
    result = dvc(repo, "repro")
    return time.perf_counter() - start, RAN.findall(result.stdout)


def epochs_changed(params: dict) -> dict:
    changed = copy.deepcopy(params)
    changed["train"]["epochs"] = params["train"]["epochs"] + 1
    return changed


def measure(repo: Path) -> list[tuple[str, float, list[str], list[str]]]:
    """Rows of (what, seconds, stages that ran, stages expected to run)."""
    rows = [("full dvc repro", *timed_repro(repo), list(STAGES))]
    for attempt in (1, 2, 3):
        rows.append((f"no-op dvc repro #{attempt}", *timed_repro(repo), []))
    changed = epochs_changed(TINY_PARAMS)
    write_params(repo, changed)
    label = f"train.epochs {TINY_PARAMS['train']['epochs']} -> {changed['train']['epochs']}"
    rows.append((label, *timed_repro(repo), ["train", "evaluate"]))
    return rows


def print_table(rows: list[tuple[str, float, list[str], list[str]]]) -> None:
    full = rows[0][1]
    print(f"{'what':<26} {'seconds':>8} {'of full':>8}  stages that ran")
    for what, seconds, ran, expected in rows:
        verdict = "as expected" if ran == expected else f"EXPECTED {', '.join(expected) or 'none'}"
        stages = ", ".join(ran) or "none"
        print(f"{what:<26} {seconds:8.2f} {seconds / full:8.1%}  {stages} ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the throwaway repository")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dvc-repro-"))
    try:
        repo = make_pipeline_repo(work / "repo", TINY_PARAMS)
        print(f"params: {TINY_PARAMS}")
        print_table(measure(repo))
    finally:
        if args.keep:
            print(f"kept: {work / 'repo'}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
