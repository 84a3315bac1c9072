"""The training input: the numpy batches (training/inputs.py) against the tf.data pipeline they
replaced, on the same uint8 arrays, in one run.

Usage:  python benchmarks/input_pipeline.py [--images 50000] [--batch-size 64] [--rounds 3]

Each round times one epoch of augmented batches (shuffle, reflect-pad crop of +-4 px, random
flip) from each pipeline, alternating which goes first; the table gives the best round of each
in images per second and the ratio. Only producing batches is timed: in `fit` the input runs
beside the training step, so what matters is that it is never the slower of the two (the
airbench preset trains about 250 images/s a core on these machines).

The tf.data baseline is the code training/inputs.py held before, kept here to measure against.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tf_data_epoch(images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int) -> int:
    import tensorflow as tf

    def augment(image, label):
        padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
        image = tf.image.random_crop(padded, tf.shape(image), seed=1)
        return tf.image.random_flip_left_right(image, seed=2), label

    dataset = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(labels), seed=0, reshuffle_each_iteration=True)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return sum(int(batch.shape[0]) for batch, _ in dataset)


def numpy_epoch(images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int) -> int:
    from cifar10_mlops.data.arrays import LabelledImages
    from cifar10_mlops.training.inputs import ImageBatches

    data = LabelledImages(images, labels, np.arange(len(labels)))
    batches = ImageBatches(data, batch_size, shuffle_seed=0, augment=True, crop_padding=padding)
    return sum(len(batches[i][0]) for i in range(len(batches)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images).astype(np.int64)
    pipelines = {"tf.data (before)": tf_data_epoch, "numpy ImageBatches": numpy_epoch}
    best = dict.fromkeys(pipelines, float("inf"))
    for round_ in range(args.rounds):
        order = list(pipelines) if round_ % 2 == 0 else list(pipelines)[::-1]
        for name in order:
            start = time.perf_counter()
            produced = pipelines[name](images, labels, args.batch_size, 4)
            seconds = time.perf_counter() - start
            assert produced == args.images, (name, produced)
            best[name] = min(best[name], seconds)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.images} images, batch {args.batch_size}, best of {args.rounds}")  # fmt: skip
    print("| input | s / epoch | images/s |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {args.images / seconds:,.0f} |")
    ratio = best["tf.data (before)"] / best["numpy ImageBatches"]
    print(f"numpy / tf.data throughput: {ratio:.2f}x")


if __name__ == "__main__":
    main()
