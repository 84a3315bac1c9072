"""Calibrate the regression gate (.ci/baseline.json): the gate's recipe (presets/ci-gate.yaml)
over seeds x "machines", then broken on purpose.

Usage:
  python benchmarks/gate_calibration.py [--seeds 42 1 2 3 4] [--machines ...] [--no-faults]
                                        [--log results.jsonl]

Writes the recipe's embedded dataset to a temporary directory, splits it as the preprocess
stage does, and trains and scores the recipe with the stages' own functions
(cifar10_mlops.harness.trial), each "machine" in a fresh process:

    default            this CPU's oneDNN kernels (TensorFlow)
    avx2               ONEDNN_MAX_CPU_ISA=AVX2: the kernels of an AVX2-only CPU
    avx512_core        ONEDNN_MAX_CPU_ISA=AVX512_CORE: AVX-512 without VNNI, BF16 or AMX
    eigen              TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's Eigen kernels, no oneDNN
    jax                train.backend jax (XLA's CPU kernels)

then, on the default machine with the recipe's seed, one fault at a time:

    shifted            training labels shifted by one class
    shuffled           training labels shuffled
    no-augmentation    train.augment: false
    no-normalisation   the model's standardisation layer left out
    learning-rate-x10  train.learning_rate times 10
    half-data          half the training images dropped
    bgr                test images with their colour channels swapped (BGR)
    untrained          the architecture as built, never fitted

Prints one JSON line per run (appended to --log), the seeds x machines table of accuracy, the
spread of each gated metric, the suggested baseline (the mean over the matrix; each tolerance
the larger of 3 standard deviations and the distance to the worst run, rounded up to 0.01,
never under 0.02), and whether each fault trips it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MACHINES = {
    "default": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512_core": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "eigen": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "jax": {"KERAS_BACKEND": "jax"},
}
FAULTS = ("shifted", "shuffled", "no-augmentation", "no-normalisation", "learning-rate-x10",
          "half-data", "bgr", "untrained")  # fmt: skip
GATED = {"accuracy": "min", "macro_f1": "min", "loss": "max"}
MIN_TOLERANCE = 0.02


def child(machine: str, seeds: list[int], faults: bool) -> None:
    """In this process (its environment is the machine): train and score each run."""
    from cifar10_mlops.harness.gate_recipe import gate_recipe_data, gate_recipe_params
    from cifar10_mlops.harness.trial import run_trial, score

    train, test = gate_recipe_data(gate_recipe_params(REPO))
    backend = "jax" if machine == "jax" else "tensorflow"
    for seed in seeds:
        trial = run_trial(gate_recipe_params(REPO, seed, backend), train, test)
        _emit({"machine": machine, "run": f"seed {seed}", **trial.metrics,
               "train_seconds": round(trial.train_seconds, 1)})  # fmt: skip
    if not faults:
        return
    params = gate_recipe_params(REPO, seeds[0] if seeds else None)
    for fault in FAULTS:
        metrics = _broken_run(fault, params, train, test, run_trial, score)
        _emit({"machine": machine, "run": fault, **metrics})


def _broken_run(fault, params, train, test, run_trial, score) -> dict:
    from cifar10_mlops.data.arrays import LabelledImages
    from cifar10_mlops.model import build

    def with_train(**changes):
        return params.model_copy(update={"train": params.train.model_copy(update=changes)})

    labels, images = train.labels, train.images
    if fault == "untrained":
        from cifar10_mlops.training.runtime import seed_everything

        seed_everything(params.train)
        return score(build.build_model(params.model, len(test.class_names)), test)
    if fault == "bgr":
        model = run_trial(params, train, test).model
        swapped = LabelledImages(np.ascontiguousarray(test.images[..., ::-1]), test.labels,
                                 test.ids, test.class_names)  # fmt: skip
        return score(model, swapped)
    if fault == "shifted":
        labels = (labels + 1) % len(train.class_names)
    elif fault == "shuffled":
        labels = np.random.default_rng(0).permutation(labels)
    elif fault == "no-augmentation":
        params = with_train(augment=False)
    elif fault == "learning-rate-x10":
        params = with_train(learning_rate=params.train.learning_rate * 10)
    elif fault == "half-data":
        keep = np.random.default_rng(0).permutation(len(labels))[: len(labels) // 2]
        labels, images = labels[keep], images[keep]
    normalize = build._normalize
    if fault == "no-normalisation":
        build._normalize = _unnormalised
    try:
        broken = LabelledImages(images, labels, np.arange(len(labels)), train.class_names)
        return run_trial(params, broken, test).metrics
    finally:
        build._normalize = normalize


def _unnormalised(x, params):
    """The model's input as raw 0-255 floats: its standardisation layer left out."""
    from cifar10_mlops.core.quiet_tensorflow import keras

    return keras.layers.Rescaling(1.0, name="unnormalised")(x)


def _emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def suggested_baseline(clean: list[dict]) -> dict:
    metrics = {}
    for name, kind in GATED.items():
        values = [run[name] for run in clean]
        centre = statistics.mean(values)
        worst = min(values) if kind == "min" else max(values)
        spread = 3 * statistics.stdev(values) if len(values) > 1 else 0.0
        tolerance = max(spread, abs(centre - worst), MIN_TOLERANCE)
        metrics[name] = {kind: round(centre, 4), "tolerance": math.ceil(tolerance * 100) / 100}
    return {"metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[42, 1, 2, 3, 4])
    parser.add_argument("--machines", nargs="*", default=list(MACHINES), choices=MACHINES)
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--log", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--faults-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, [] if args.faults_only else args.seeds, args.faults_only)
        return

    from cifar10_mlops.evaluation.gate import check_metrics

    runs: list[dict] = []
    jobs = [(machine, False) for machine in args.machines]
    if not args.no_faults:
        jobs.append(("default", True))
    for machine, faults in jobs:
        env = {**os.environ, **MACHINES[machine], "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, __file__, "--child", machine, "--seeds", *map(str, args.seeds)]
        if faults:
            command[-len(args.seeds) - 1 :] = ["--seeds", str(args.seeds[0]), "--faults-only"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"{machine} failed:\n{result.stderr[-3000:]}")
        for line in result.stdout.splitlines():
            if line.startswith("RESULT "):
                runs.append(json.loads(line[7:]))
                print(line[7:], flush=True)
                if args.log:
                    with open(args.log, "a") as handle:
                        handle.write(line[7:] + "\n")

    clean = [run for run in runs if run["run"].startswith("seed ")]
    baseline = suggested_baseline(clean)
    print("\n| seed | " + " | ".join(args.machines) + " |")
    print("|---|" + "---|" * len(args.machines))
    for seed in args.seeds:
        cells = [
            next((f"{r['accuracy']:.4f}" for r in clean
                  if r["machine"] == m and r["run"] == f"seed {seed}"), "")
            for m in args.machines
        ]  # fmt: skip
        print(f"| {seed} | " + " | ".join(cells) + " |")
    for name in GATED:
        values = [run[name] for run in clean]
        print(f"{name}: min {min(values):.4f}, max {max(values):.4f}, "
              f"spread {max(values) - min(values):.4f}, std {statistics.pstdev(values):.4f}")  # fmt: skip
    print(json.dumps({"suggested_baseline": baseline}))
    print("\n| fault | accuracy | macro-F1 | loss | gate |")
    print("|---|---|---|---|---|")
    for run in runs:
        if run["run"].startswith("seed "):
            continue
        verdict = "trips" if check_metrics(run, baseline) else "passes"
        print(f"| {run['run']} | {run['accuracy']:.4f} | {run['macro_f1']:.4f} | "
              f"{run['loss']:.4f} | {verdict} |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
