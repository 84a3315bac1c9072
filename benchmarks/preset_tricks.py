"""The airbench tricks, each alone against the real-photos preset, then together: one table.

Usage:
  python benchmarks/preset_tricks.py run --data DIR [--epochs 10] [--seeds 42,1,2]
                                         [--only NAME,...] --log results.jsonl
  python benchmarks/preset_tricks.py table --log results.jsonl
  python benchmarks/preset_tricks.py precision [--repeats 2]

Every run is benchmarks/recipe_search.py in its own process (the pipeline's split, the train
stage's train_model, evaluate's metrics with the preset's TTA) with the preset, `--epochs`,
the seed and the variant's keys; runs go one after another, so their seconds compare. `table`
prints the markdown table of docs/training.md from the log: per variant the seeds, accuracy
(mean, min-max), macro-F1 and training seconds (mean), and the change against `preset`.
`precision` times one training step of the preset's network (batch 128) in float32 and in
mixed bfloat16, alternating in one process, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "presets" / "real-photos-cpu.yaml"

# name -> the `-S` keys the variant adds to the preset (airbench's ablation: KellerJordan/
# cifar10-airbench). Each names the keys it was measured with, so the logs keep their meaning
# as the preset moves on: "preset" is the preset before TrivialAugment (64/256/256, 40 epochs,
# train.augment_policy=none), the base each airbench trick was measured against;
# "trivial-augment" is that preset with the policy (the preset of the second round); the
# narrower networks keep the policy and spend the time they save on epochs (the 60-epoch one is
# the preset of today). The CPU's own trick, mixed bfloat16, is timed by `precision` first: it
# buys accuracy only as more epochs in the same time.
ROUND_ONE = ["model.airbench.widths=[64,256,256]", "train.epochs=40"]
WITHOUT_POLICY = [*ROUND_ONE, "train.augment_policy=none"]
VARIANTS: dict[str, list[str]] = {
    "preset": WITHOUT_POLICY,
    "alternating-flips": [*WITHOUT_POLICY, "train.flip=alternate"],
    "norm-bias-lr-x8": [*WITHOUT_POLICY, "train.norm_bias_lr_scale=8"],
    "lookahead-5": [*WITHOUT_POLICY, "train.lookahead_every=5"],
    "whiten-bias-2-epochs": [*WITHOUT_POLICY, "model.airbench.whiten_bias_epochs=2"],
    "all-four-tricks": [
        *WITHOUT_POLICY,
        "train.flip=alternate",
        "train.norm_bias_lr_scale=8",
        "train.lookahead_every=5",
        "model.airbench.whiten_bias_epochs=2",
    ],
    "trivial-augment": [*ROUND_ONE, "train.augment_policy=trivial"],
    "narrower-48-192-192-50-epochs": [
        "model.airbench.widths=[48,192,192]",
        "train.epochs=50",
        "train.augment_policy=trivial",
    ],
    "narrower-48-192-192-60-epochs": [
        "model.airbench.widths=[48,192,192]",
        "train.epochs=60",
        "train.augment_policy=trivial",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--data", type=Path, required=True)
    run.add_argument(
        "--epochs", type=int, help="for every variant (default: the preset's or the variant's)"
    )
    run.add_argument("--seeds", default="42")
    run.add_argument("--only", default="", help="comma-separated variant names")
    run.add_argument("--log", type=Path, required=True)
    table = commands.add_parser("table")
    table.add_argument("--log", type=Path, required=True)
    precision = commands.add_parser("precision")
    precision.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.command == "precision":
        print(json.dumps(_step_seconds_by_precision(args.repeats)))
    elif args.command == "run":
        chosen = [name for name in args.only.split(",") if name] or list(VARIANTS)
        for seed in args.seeds.split(","):  # every variant's first seed before any second
            for name in chosen:
                _run(name, int(seed), args)
    else:
        print(_table([json.loads(line) for line in args.log.read_text().splitlines() if line]))


def _run(name: str, seed: int, args) -> None:
    sets = [*VARIANTS[name], f"train.seed={seed}"]
    if args.epochs:
        sets.append(f"train.epochs={args.epochs}")
    command = [sys.executable, str(REPO / "benchmarks" / "recipe_search.py")]
    command += ["--data", str(args.data), "--preset", str(PRESET), "--name", name]
    command += ["--log", str(args.log), "--verbose", "0"]
    for assignment in sets:
        command += ["--set", assignment]
    subprocess.run(command, check=True)


def _table(rows: list[dict]) -> str:
    by_variant: dict[str, list[dict]] = {}
    for row in rows:
        by_variant.setdefault(row["name"], []).append(row)
    # The change against the preset only where the log holds the preset's own runs.
    base = (
        statistics.mean(r["accuracy"] for r in by_variant["preset"])
        if "preset" in by_variant
        else None
    )
    lines = [
        "| variant | seeds | epochs | accuracy, mean [min-max] | vs preset | macro-F1 | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in by_variant.items():
        accuracy = [r["accuracy"] for r in runs]
        lines.append(
            f"| `{name}` | {', '.join(str(_seed(r)) for r in runs)} | {runs[0]['epochs_run']} "
            f"| {statistics.mean(accuracy):.3f} [{min(accuracy):.3f}-{max(accuracy):.3f}] "
            f"| {'-' if base is None else f'{statistics.mean(accuracy) - base:+.3f}'} "
            f"| {statistics.mean(r['macro_f1'] for r in runs):.3f} "
            f"| {statistics.mean(r['train_seconds'] for r in runs):.0f} |"
        )
    return "\n".join(lines)


def _step_seconds_by_precision(repeats: int) -> dict:
    import time

    import numpy as np
    import yaml

    from cifar10_mlops.cli.presets import apply_overrides
    from cifar10_mlops.core.params import parse_params
    from cifar10_mlops.core.quiet_tensorflow import keras
    from cifar10_mlops.model.build import build_model, set_from_training_images
    from cifar10_mlops.training.optimization import compile_model

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params = parse_params(apply_overrides(raw, yaml.safe_load(PRESET.read_text())), PRESET)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (128, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 128)
    seconds: dict[str, list[float]] = {"float32": [], "mixed_bfloat16": []}
    for _ in range(repeats):
        for policy, times in seconds.items():
            keras.mixed_precision.set_global_policy(policy)
            model = build_model(params.model, num_classes=10)
            set_from_training_images(model, images)
            compile_model(model, params.train)
            for _ in range(2):  # traced and warm
                model.train_on_batch(images, labels)
            start = time.perf_counter()
            for _ in range(3):
                model.train_on_batch(images, labels)
            times.append(round((time.perf_counter() - start) / 3, 3))
    return {
        "seconds_per_step_batch_128": seconds,
        "bfloat16_over_float32": round(min(seconds["mixed_bfloat16"]) / min(seconds["float32"]), 2),
    }


def _seed(row: dict) -> str:
    return next(s.split("=")[1] for s in row["set"] if s.startswith("train.seed="))


if __name__ == "__main__":
    sys.exit(main())
