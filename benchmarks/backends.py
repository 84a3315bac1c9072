"""TensorFlow against JAX as the Keras backend, side by side in one run: the main job and the
real-photos preset, each trained and evaluated by a real `dvc repro` under each backend.

Usage:  python benchmarks/backends.py [--photos DIR] [--preset-epochs 8]

For each job and backend, a throwaway git + DVC copy of this repository gets the job's params
plus `train.backend`, runs download and preprocess (not timed), then `dvc repro` is timed:
train and evaluate. The table gives those seconds, the test accuracy, and JAX's time as a
multiple of TensorFlow's. --photos: a folder in the Kaggle layout (train.7z + trainLabels.csv)
for the preset; without it only the main job runs. The preset runs --preset-epochs epochs (its
own 40 would take most of an hour for both backends on 2 cores): its seconds per epoch are
what to compare.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers.pipeline import dvc, make_pipeline_repo  # noqa: E402

BACKENDS = ("tensorflow", "jax")


def jobs(photos: Path | None, preset_epochs: int) -> dict[str, dict]:
    found = {"main job (committed params.yaml)": {}}
    if photos is not None:
        preset = yaml.safe_load((REPO / "presets/real-photos-cpu.yaml").read_text())
        preset["data"]["path"] = str(photos.resolve())
        preset["train"]["epochs"] = preset_epochs
        found[f"real-photos-cpu, {preset_epochs} epochs"] = preset
    return found


def timed_run(base: Path, name: str, changes: dict, backend: str) -> tuple[float, dict]:
    repo = base / name
    params = json.loads(json.dumps(changes))
    params.setdefault("train", {})["backend"] = backend
    make_pipeline_repo(repo, params)
    dvc(repo, "repro", "preprocess")
    start = time.perf_counter()
    dvc(repo, "repro")
    seconds = time.perf_counter() - start
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    shutil.rmtree(repo, ignore_errors=True)
    return seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--preset-epochs", type=int, default=8)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="backends-") as scratch:
        for index, (job, changes) in enumerate(jobs(args.photos, args.preset_epochs).items()):
            seconds = {}
            for backend in BACKENDS:
                seconds[backend], metrics = timed_run(
                    Path(scratch), f"job{index}-{backend}", changes, backend
                )
                rows.append((job, backend, seconds[backend], metrics))
                print(f"{job} / {backend}: {seconds[backend]:.1f} s, {metrics}", flush=True)
            rows.append((job, "jax / tensorflow", seconds["jax"] / seconds["tensorflow"], None))
    print(f"\n{platform.machine()}, CPU: {_cpu()}")
    print("| job | backend | train + evaluate (s) | accuracy | macro-F1 |")
    print("|---|---|---|---|---|")
    for job, backend, value, metrics in rows:
        if metrics is None:
            print(f"| {job} | {backend} | {value:.2f}x | | |")
        else:
            print(f"| {job} | {backend} | {value:.1f} | {metrics['accuracy']:.4f} | "
                  f"{metrics['macro_f1']:.4f} |")  # fmt: skip


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
