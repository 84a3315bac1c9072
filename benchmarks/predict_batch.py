"""`cifar10-mlops predict` over a folder of PNG files against a naive loop (decode one
picture, `model.predict` one picture), in the same run on the same model; and predict's peak
RSS for two folder sizes (flat in the number of files when it streams).

The model: the main job's architecture (params.yaml's model section: ResNet50 at 32 px),
untrained (the same work per picture as a trained one), saved as a .keras file; TTA off
(--tta for on). Each figure comes from a fresh process (benchmarks/measure.py: wall time and
the child's own peak RSS); the naive loop runs over the first --naive files only.

Usage:  python benchmarks/predict_batch.py [--files 10000] [--small 2000] [--naive 300]
            [--tta] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.measure import BIN, measured  # noqa: E402

# Decode one, predict one: what a first script does (the same decoder and model as predict).
NAIVE_LOOP = r"""
import sys, time
from pathlib import Path
from cifar10_mlops.data.images import read_picture
from cifar10_mlops.model.build import load_model
model = load_model(Path(sys.argv[1]))
files = sorted(Path(sys.argv[2]).glob("*.png"))[: int(sys.argv[3])]
model.predict(read_picture(files[0])[None], verbose=0)  # warm-up, as predict's first batch
start = time.perf_counter()
for path in files:
    model.predict(read_picture(path)[None], verbose=0)
Path(sys.argv[4]).write_text(f"{len(files) / (time.perf_counter() - start):.3f}")
"""


def write_pngs(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"{index:06d}.png")


def main_job_model(path: Path) -> Path:
    from cifar10_mlops.core.config import CLASS_NAMES
    from cifar10_mlops.core.params import ModelParams, read_params_yaml
    from cifar10_mlops.model.build import build_model

    model_params = ModelParams.model_validate(read_params_yaml(REPO / "params.yaml")["model"])
    build_model(model_params, len(CLASS_NAMES)).save(path)
    return path


def predict_run(model: Path, folder: Path, output: Path, tta: bool, cwd: Path) -> dict:
    args = [str(BIN / "cifar10-mlops"), "predict", "--quiet", "--model", str(model)]
    args += ["--tta" if tta else "--no-tta", str(folder), "--output", str(output)]
    seconds, peak_mib = measured(args, cwd=cwd)
    rows = output.read_text().count("\n") - 1
    return {"files": rows, "seconds": round(seconds, 1), "peak_rss_mib": round(peak_mib)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--naive", type=int, default=300)
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="predict-batch-") as scratch:
        root = Path(scratch)
        model = main_job_model(root / "model.keras")
        big, small = root / "big", root / "small"
        write_pngs(big, args.files)
        write_pngs(small, args.small)
        full = predict_run(model, big, root / "big.csv", args.tta, root)
        few = predict_run(model, small, root / "small.csv", args.tta, root)
        rate_file = root / "naive-rate.txt"
        naive_seconds, naive_mib = measured(
            [
                sys.executable,
                "-c",
                NAIVE_LOOP,
                str(model),
                str(big),
                str(args.naive),
                str(rate_file),
            ],
            cwd=root,
        )
        naive_rate = float(rate_file.read_text())  # start-up and model loading excluded
    # predict's own rate without its start-up (importing Keras, loading the model): the
    # difference between the two folder sizes.
    marginal = (full["files"] - few["files"]) / (full["seconds"] - few["seconds"])
    figures = {
        "model": "untrained main-job ResNet50 (.keras)",
        "tta": args.tta,
        "predict": {**full, "images_per_s_with_startup": round(full["files"] / full["seconds"], 1)},
        "predict_small": few,
        "predict_images_per_s": round(marginal, 1),
        "naive_loop": {
            "files": args.naive,
            "images_per_s": round(naive_rate, 1),
            "peak_rss_mib": round(naive_mib),
        },
        "speedup": round(marginal / naive_rate, 1),
        "peak_rss_ratio_big_to_small": round(full["peak_rss_mib"] / few["peak_rss_mib"], 2),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
