"""What the pipeline tracks with DVC, and how fast it turns 50,000 PNGs into arrays.

Usage:  python benchmarks/dvc_tracking.py [COUNT]      (default 50000, the real CIFAR-10 size)

1. Generates a COUNT-image Kaggle-layout train.7z + trainLabels.csv (the embedded dataset).
2. Extract + preprocess, each in a fresh child process (time and peak RSS):
   - naive: py7zr extractall to COUNT loose files, then a PIL loop into a Python list,
     then float32 / 255 (what the seed notebooks did);
   - pipeline: the project's load_kaggle_layout (in-memory extraction, uint8) + stratified split.
3. DVC tracking, each in a throwaway git + DVC repository: `dvc add` and a no-op `dvc status`
   for the COUNT loose PNGs against the two archives + two npz arrays the pipeline tracks.
Prints every figure and the ratios naive / pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import BIN, NAIVE_EXTRACT_PREPROCESS, measured, python_code

PIPELINE = r"""
import sys
from pathlib import Path
from cifar10_mlops.data.kaggle.layout import load_kaggle_layout
from cifar10_mlops.data.arrays import save_split
from cifar10_mlops.data.split import stratified_split
raw, out = Path(sys.argv[1]), Path(sys.argv[2])
data = load_kaggle_layout(raw / "train.7z", raw / "trainLabels.csv")
train, test = stratified_split(data, 0.2, 42)
save_split(train, test, out / "train.npz", out / "test.npz")
print(data.images.shape)
"""


def dvc_figures(repo: Path, targets: list[str]) -> dict[str, float]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    quiet = {"cwd": repo, "env": env, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **quiet)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], **quiet)
    start = time.perf_counter()
    subprocess.run([str(BIN / "dvc"), "add", "-q", *targets], **quiet)
    add = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([str(BIN / "dvc"), "status", "-q"], **quiet)
    status = time.perf_counter() - start
    return {"dvc add s": round(add, 2), "no-op dvc status s": round(status, 2)}


def main() -> None:
    from cifar10_mlops.data.synthetic import write_kaggle_layout

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    work = Path(tempfile.mkdtemp(prefix="bench-dvc-"))
    try:
        raw = work / "raw"
        start = time.perf_counter()
        write_kaggle_layout(raw, count, seed=0)
        print(f"generated {count} images in {time.perf_counter() - start:.1f} s")

        naive_dir, pipeline_dir = work / "naive", work / "pipeline"
        naive_dir.mkdir()
        pipeline_dir.mkdir()
        naive_s, naive_mb = measured(
            python_code(NAIVE_EXTRACT_PREPROCESS, str(raw), str(naive_dir))
        )
        pipe_s, pipe_mb = measured(python_code(PIPELINE, str(raw), str(pipeline_dir)))
        results = {
            "extract+preprocess naive": {"s": round(naive_s, 2), "peak RSS MiB": round(naive_mb)},
            "extract+preprocess pipeline": {"s": round(pipe_s, 2), "peak RSS MiB": round(pipe_mb)},
            "time ratio naive/pipeline": round(naive_s / pipe_s, 2),
            "memory ratio naive/pipeline": round(naive_mb / pipe_mb, 2),
        }

        loose = work / "dvc-loose"
        loose.mkdir()
        shutil.move(str(naive_dir / "train"), loose / "train")
        results["DVC on loose PNGs"] = dvc_figures(loose, ["train"])
        tracked = work / "dvc-archives"
        tracked.mkdir()
        for name in ("train.7z", "trainLabels.csv"):
            shutil.copy(raw / name, tracked / name)
        for name in ("train.npz", "test.npz"):
            shutil.copy(pipeline_dir / name, tracked / name)
        results["DVC on archives + arrays"] = dvc_figures(
            tracked, ["train.7z", "trainLabels.csv", "train.npz", "test.npz"]
        )
        for key in ("dvc add s", "no-op dvc status s"):
            results[f"{key} ratio loose/archives"] = round(
                results["DVC on loose PNGs"][key] / results["DVC on archives + arrays"][key], 2
            )
        print(json.dumps({"count": count, **results}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
