"""Seconds per training epoch of a preset through the train stage's own code, on generated
images: what a full CIFAR-10 run would cost on this machine, before starting it.

Usage:
  python benchmarks/preset_epoch_time.py [--images 50000] [--epochs 2] [--preset real-photos-cpu]
                                         [--baseline resnet20] [--repeats 1]

The images are the embedded generator's (data/synthetic.py: 32x32, ten classes), the training
is training/fit.py's train_model with params.yaml + the preset (its tf.data input pipeline,
its model, its optimizer), and an epoch's time is taken from a Keras callback. The first
epoch traces the graph; the steady figure is the fastest epoch after it. With --baseline, the
preset's former recipe (ResNet-20, SGD, 10% validation) runs on the same images in the same
process, alternating with the preset --repeats times, so the ratio holds on a busy machine.
Prints one JSON object: seconds per epoch, images per second, and the projection
epochs x seconds for the preset's own epochs on that many images.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import yaml
from measure import epoch_timer

REPO = Path(__file__).resolve().parents[1]

# The real-photos-cpu preset before the airbench recipe (the ResNet-20 recipe, 60 epochs).
BASELINES = {
    "resnet20": {
        "model": {
            "backbone": "cifar_resnet",
            "cifar_resnet": {"depth": 20, "width": 16},
            "batchnorm_momentum": 0.9,
        },
        "train": {
            "optimizer": "sgd",
            "learning_rate": 0.1,
            "weight_decay": 0.0005,
            "validation_split": 0.1,
            "epochs": 60,
        },
        "evaluate": {"tta": False},
    }
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed (the first traces)")
    parser.add_argument("--preset", default="real-photos-cpu")
    parser.add_argument("--baseline", choices=sorted(BASELINES))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from cifar10_mlops.cli.presets import apply_overrides, load_preset
    from cifar10_mlops.data.arrays import LabelledImages
    from cifar10_mlops.data.synthetic import generate_images

    images, labels = generate_images(args.images, seed=0)
    data = LabelledImages(images, labels, np.arange(args.images))
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    preset = apply_overrides(base, load_preset(args.preset))
    variants = {args.preset: preset}
    if args.baseline:
        variants[args.baseline] = apply_overrides(
            yaml.safe_load(yaml.safe_dump(preset)), BASELINES[args.baseline]
        )
    timings: dict[str, list[float]] = {name: [] for name in variants}
    planned: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, raw in variants.items():
            planned[name] = raw["train"]["epochs"]
            timings[name] += epoch_seconds(raw, data, args.epochs)
    result: dict = {"images": args.images, "epochs timed": args.epochs}
    for name, seconds in timings.items():
        steady = min(seconds[1:] or seconds)  # after the first epoch of each run (it traces)
        train_images = _training_images(variants[name], args.images)
        result[name] = {
            "epoch seconds": [round(s, 1) for s in seconds],
            "steady epoch s": round(steady, 1),
            "images/s": round(train_images / steady, 1),
            f"projected {planned[name]} epochs, min": round(planned[name] * steady / 60, 1),
        }
    if args.baseline:
        result["ratio (baseline / preset images per s)"] = round(
            result[args.baseline]["images/s"] / result[args.preset]["images/s"], 3
        )
    print(json.dumps(result, indent=2))


def _training_images(raw: dict, images: int) -> int:
    """What an epoch trains on: the split's training part, less the validation part."""
    test_size = raw["split"]["test_size"]
    return round(images * (1 - test_size) * (1 - raw["train"]["validation_split"]))


def epoch_seconds(raw: dict, data, epochs: int) -> list[float]:
    from cifar10_mlops.core.params import parse_params
    from cifar10_mlops.data.split import stratified_split

    raw = yaml.safe_load(yaml.safe_dump(raw))
    raw["train"]["epochs"] = epochs
    params = parse_params(raw, REPO / "params.yaml")
    train, _ = stratified_split(data, params.split.test_size, params.split.seed, key="split")
    return timed_training(params, train).seconds


def timed_training(params, train):
    """train_model on `train` in a scratch directory; the epoch timer that watched it."""
    from cifar10_mlops.training import fit

    timer = epoch_timer(_keras())
    with tempfile.TemporaryDirectory(prefix="epoch-time-") as scratch:
        work = Path(scratch)
        fit.train_model(
            params,
            train,
            work / "model.keras",
            work / "history.csv",
            work / "state",
            verbose=0,
            callbacks=[timer],
        )
    return timer


def _keras():
    from cifar10_mlops.core.quiet_tensorflow import keras

    return keras


if __name__ == "__main__":
    main()
