"""Epoch seconds of the real-photos preset with the TensorFlow feed (training/tf_feed.py) against
Keras' own PyDataset path, alternating in one process: what tf.data's autotuning thread costs
at every epoch's end.

Usage:
  python benchmarks/epoch_boundary.py [--images 4660] [--epochs 5] [--repeats 2]

Generated 32x32 images (data/synthetic.py), the pipeline's 80/20 split, params.yaml + the
real-photos-cpu preset, training/fit.py's train_model; Keras' own path is the same call with
`fit.feed` returning the PyDataset unchanged. An epoch's wall seconds run from Keras'
on_epoch_begin to on_epoch_end, so they hold the previous iterator's teardown; the process's
CPU seconds over the same span say how many cores it kept busy (a stall is wall time without
CPU time; a busy host slows both). Prints one JSON object: each path's epoch seconds (the first
epoch of a run traces the graph and is left out), their means, the busy cores, and the ratio
Keras' own / feed of the mean epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import yaml
from preset_epoch_time import REPO, timed_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4660)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from cifar10_mlops.cli.presets import apply_overrides, load_preset
    from cifar10_mlops.core.params import parse_params
    from cifar10_mlops.data.arrays import LabelledImages
    from cifar10_mlops.data.split import stratified_split
    from cifar10_mlops.data.synthetic import generate_images
    from cifar10_mlops.training import fit

    images, labels = generate_images(args.images, seed=0)
    data = LabelledImages(images, labels, np.arange(args.images))
    raw = apply_overrides(
        yaml.safe_load((REPO / "params.yaml").read_text()), load_preset("real-photos-cpu")
    )
    raw["train"]["epochs"] = args.epochs
    params = parse_params(raw, REPO / "params.yaml")
    train, _ = stratified_split(data, params.split.test_size, params.split.seed, key="split")
    feed = fit.feed
    paths = {"feed": feed, "keras_own": lambda batches: batches}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, chosen in paths.items():
            fit.feed = chosen
            timer = timed_training(params, train)
            seconds[name] += timer.seconds[1:]
            cpu_seconds[name] += timer.cpu_seconds[1:]
    fit.feed = feed
    means = {name: statistics.mean(values) for name, values in seconds.items()}
    print(
        json.dumps(
            {
                "images": len(train.labels),
                "epoch seconds": {k: [round(s, 1) for s in v] for k, v in seconds.items()},
                "mean epoch s": {k: round(v, 2) for k, v in means.items()},
                "busy cores": {k: round(sum(cpu_seconds[k]) / sum(seconds[k]), 2) for k in paths},
                "keras_own / feed": round(means["keras_own"] / means["feed"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
