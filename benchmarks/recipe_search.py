"""Score a training recipe on real photographs: the held-out accuracy it buys, and the time.

Usage:
  python benchmarks/recipe_search.py --data DIR [--preset presets/NAME.yaml]
                                     [--set train.epochs=30 --set model.backbone=cifar_resnet ...]
                                     [--log results.jsonl] [--name LABEL]

DIR is a Kaggle-layout directory (train.7z + trainLabels.csv), e.g. a few thousand real CIFAR-10
photographs. The recipe is params.yaml, then the preset's
keys, then each --set; the split is the pipeline's own (split.test_size, split.seed: 80/20,
stratified), the training is training/fit.py's train_model exactly as the train stage runs it (its
validation split picks the epoch kept), and the score is evaluation/metrics.py's compute_metrics on the
held-out 20%, as the evaluate stage computes it. Prints one JSON line (and appends it to --log):
accuracy, macro-F1, epochs, training seconds, peak RSS. This is how the presets' figures and
the defaults in params.yaml were measured (docs/training.md, "The training recipe").
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument(
        "--preset", type=Path, help="a presets/*.yaml file applied over params.yaml"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--log", type=Path)
    parser.add_argument("--name", default="")
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity")
    args = parser.parse_args()

    from cifar10_mlops.cli.presets import apply_overrides, parse_assignment

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = yaml.safe_load(args.preset.read_text()) if args.preset else {}
    for assignment in args.set:
        apply_overrides(overrides, parse_assignment(assignment))
    result = {"name": args.name, "preset": str(args.preset or ""), "set": args.set}
    result.update(score(apply_overrides(raw, overrides), args.data, args.verbose))
    line = json.dumps(result)
    print(line)
    if args.log:
        with open(args.log, "a") as log:
            log.write(line + "\n")


def score(raw_params: dict, data_dir: Path, verbose: int) -> dict:
    from cifar10_mlops.core.params import parse_params
    from cifar10_mlops.data.raw_layout import load_split
    from cifar10_mlops.harness.trial import run_trial

    params = parse_params(raw_params, REPO / "params.yaml")
    train, test = load_split(data_dir, params.split)
    trial = run_trial(params, train, test, verbose=verbose)
    return {
        **{name: trial.metrics[name] for name in ("accuracy", "loss", "macro_f1")},
        "n_train": int(len(train.labels)),
        "n_test": int(len(test.labels)),
        "epochs_run": trial.epochs_run,
        "best_epoch": trial.best_epoch,
        "train_seconds": round(trial.train_seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


if __name__ == "__main__":
    sys.exit(main())
