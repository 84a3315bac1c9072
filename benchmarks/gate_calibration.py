"""Calibrate the regression gate (.ci/baseline.json) for the committed recipe.

Usage:
  python benchmarks/gate_calibration.py [--seeds 1 2 3] [--faults shuffled shifted ...]
                                        [--log results.jsonl]

Writes the committed embedded dataset (params.yaml's data.synthetic count and seed) to a
temporary directory, splits it as the preprocess stage does, and trains and scores the
committed params in one process (cifar10_mlops.harness.trial, the stages' own functions):

- clean: train.seed = the committed seed and each of --seeds;
- broken on purpose, with the committed seed, one fault each:
    shuffled          training labels shuffled (a labels file that no longer matches its images)
    shifted           training labels shifted by one class (an off-by-one in a label mapping)
    no-normalisation  the model's standardisation layer left out
    no-augmentation   train.augment: false

Prints one JSON line per run (appended to --log), then the tolerances the seeds give: for
accuracy and macro-F1 (min bounds) and the loss (max bound), 3 x the standard deviation over
the clean runs, rounded up to 0.01 and never less than the distance from the committed run to
the worst seed, so every measured seed passes; and whether each fault trips that gate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
FAULTS = ("shuffled", "shifted", "no-normalisation", "no-augmentation")
GATED = {"accuracy": "min", "macro_f1": "min", "loss": "max"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--faults", nargs="*", default=list(FAULTS), choices=FAULTS)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()

    from cifar10_mlops.core.params import parse_params
    from cifar10_mlops.data.raw_layout import load_split
    from cifar10_mlops.data.synthetic import write_kaggle_layout

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params = parse_params(raw, REPO / "params.yaml")
    committed_seed = params.train.seed
    with tempfile.TemporaryDirectory(prefix="gate-calibration-") as scratch:
        data_dir = Path(scratch)
        write_kaggle_layout(data_dir, params.data.synthetic.count, params.data.synthetic.seed)
        train, test = load_split(data_dir, params.split)

    runs: list[dict] = []
    for seed in [committed_seed, *[s for s in args.seeds if s != committed_seed]]:
        seeded = params.model_copy(update={"train": params.train.model_copy(update={"seed": seed})})
        runs.append(_run(f"seed {seed}", seeded, train, test, args.log))
    clean = runs[:]
    for fault in args.faults:
        with _broken(fault, params, train) as (broken_params, broken_train):
            runs.append(_run(fault, broken_params, broken_train, test, args.log))

    bounds = _tolerances(clean)
    print(json.dumps({"suggested_baseline": bounds}, indent=2))
    for run in runs:
        verdict = "trips" if _trips(run, bounds) else "passes"
        print(
            f"{run['name']:<18} accuracy {run['accuracy']:.4f}  loss {run['loss']:.4f}  {verdict}"
        )


def _run(name, params, train, test, log: Path | None) -> dict:
    from cifar10_mlops.harness.trial import run_trial

    trial = run_trial(params, train, test)
    result = {
        "name": name,
        **trial.metrics,
        "best_epoch": trial.best_epoch,
        "train_seconds": round(trial.train_seconds, 1),
    }
    line = json.dumps(result)
    print(line, flush=True)
    if log:
        with open(log, "a") as handle:
            handle.write(line + "\n")
    return result


@contextlib.contextmanager
def _broken(fault: str, params, train):
    """(params, training data) with one fault, undone on exit; the test set is never touched."""
    from cifar10_mlops.data.arrays import LabelledImages
    from cifar10_mlops.model import build

    labels = train.labels
    normalize = build._normalize
    if fault == "shuffled":
        labels = np.random.default_rng(0).permutation(labels)
    elif fault == "shifted":
        labels = (labels + 1) % len(train.class_names)
    elif fault == "no-normalisation":
        build._normalize = _unnormalised
    else:  # no-augmentation
        params = params.model_copy(
            update={"train": params.train.model_copy(update={"augment": False})}
        )
    try:
        yield params, LabelledImages(train.images, labels, train.ids, train.class_names)
    finally:
        build._normalize = normalize


def _unnormalised(x, params):
    """The model's input as raw 0-255 floats: its standardisation layer left out."""
    from cifar10_mlops.core.quiet_tensorflow import keras

    return keras.layers.Rescaling(1.0, name="unnormalised")(x)


def _tolerances(clean: list[dict]) -> dict:
    committed = clean[0]
    metrics = {}
    for name, kind in GATED.items():
        values = [run[name] for run in clean]
        spread = 3 * statistics.stdev(values) if len(values) > 1 else 0.0
        worst = min(values) if kind == "min" else max(values)
        tolerance = max(spread, abs(committed[name] - worst))
        metrics[name] = {kind: committed[name], "tolerance": math.ceil(tolerance * 100) / 100}
    return {"metrics": metrics}


def _trips(run: dict, baseline: dict) -> bool:
    from cifar10_mlops.evaluation.gate import check_metrics

    return bool(check_metrics(run, baseline))


if __name__ == "__main__":
    sys.exit(main())
