"""Extract + preprocess a generated Kaggle-layout set through the real stages, against the naive loop.

Usage:  python benchmarks/extract_preprocess.py [COUNT] [--source DIR]

COUNT defaults to 50,000 (the real CIFAR-10 size). The Kaggle-layout files (train.7z +
trainLabels.csv) are generated from the embedded dataset unless --source names a directory that
holds them (for example a folder of real CIFAR-10 photos in the Kaggle layout). Then, each in a fresh process:
- pipeline: `src/stages/download.py` (data.source: local: copy + check archive names, labels)
  and `src/stages/preprocess.py` (7z in memory -> uint8 arrays -> stratified split -> npz),
  run exactly as DVC runs them, in a throwaway project;
- naive: extract to loose files, PIL loop into a list, float32 / 255.
Prints wall time and peak RSS of each and the naive/pipeline ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from measure import NAIVE_EXTRACT_PREPROCESS, REPO, measured, python_code


def stage(project: Path, name: str) -> tuple[float, float]:
    env = {**os.environ, "CIFAR10_MLOPS_ROOT": str(project)}
    return measured(
        [sys.executable, str(REPO / "src" / "stages" / f"{name}.py")], cwd=project, env=env
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=50_000)
    parser.add_argument("--source", type=Path, help="a directory with train.7z + trainLabels.csv")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-preprocess-"))
    try:
        source = args.source
        if source is None:
            from cifar10_mlops.data.synthetic import write_kaggle_layout

            source = work / "source"
            start = time.perf_counter()
            write_kaggle_layout(source, args.count, seed=0)
            print(f"generated {args.count} images in {time.perf_counter() - start:.1f} s")
        project = work / "project"
        project.mkdir()
        params = {"data": {"source": "local", "path": str(source.resolve())}}
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        download = stage(project, "download")
        preprocess = stage(project, "preprocess")
        naive_out = work / "naive"
        naive_out.mkdir()
        naive = measured(python_code(NAIVE_EXTRACT_PREPROCESS, str(source), str(naive_out)))
        pipeline_s = download[0] + preprocess[0]
        pipeline_mib = max(download[1], preprocess[1])
        print(
            json.dumps(
                {
                    "images": args.count if args.source is None else str(source),
                    "download stage": {
                        "s": round(download[0], 2),
                        "peak RSS MiB": round(download[1]),
                    },
                    "preprocess stage": {
                        "s": round(preprocess[0], 2),
                        "peak RSS MiB": round(preprocess[1]),
                    },
                    "pipeline (both stages)": {
                        "s": round(pipeline_s, 2),
                        "peak RSS MiB": round(pipeline_mib),
                    },
                    "naive loop": {"s": round(naive[0], 2), "peak RSS MiB": round(naive[1])},
                    "time ratio naive/pipeline": round(naive[0] / pipeline_s, 2),
                    "memory ratio naive/pipeline": round(naive[1] / pipeline_mib, 2),
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
