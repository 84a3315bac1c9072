"""ResNet50 training throughput on a GPU at 128 and 224 px with mixed precision, against NVIDIA's
published 2,375 images/s for TensorFlow ResNet50 with AMP and XLA on one A100.

Usage (on the GPU machine; Keras 3 on JAX where TensorFlow is not installed):
  KERAS_BACKEND=jax python benchmarks/gpu_throughput.py [--sizes 128,224] [--batch-size 256]
                                                        [--precision mixed_float16] [--epochs 3]

Needs only keras + numpy (+ the backend), not this package, so it runs where the project's
TensorFlow is not installed. The model is keras.applications.ResNet50 with 1,000 classes (what
NVIDIA times), uint8 images cast inside the model as in our pipeline, SGD with momentum, XLA on
(jit_compile=True; under JAX everything is compiled anyway). The data is a small seeded uint8
array cycled through `fit`, so the figure is the training step, not disk or decoding.
Throughput = images / the fastest epoch after the first (the first compiles). Prints JSON.
"""

from __future__ import annotations

import argparse
import json

from measure import epoch_timer

NVIDIA_A100_AMP_XLA_IMAGES_PER_S = 2375.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,224")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--precision",
        default="mixed_float16",
        help="a Keras dtype policy: mixed_float16, mixed_bfloat16, float32",
    )
    args = parser.parse_args()

    import keras

    keras.mixed_precision.set_global_policy(args.precision)
    results = {
        "backend": keras.backend.backend(),
        "devices": _devices(),
        "precision": args.precision,
        "batch size": args.batch_size,
        "NVIDIA A100 AMP+XLA images/s": NVIDIA_A100_AMP_XLA_IMAGES_PER_S,
    }
    for size in (int(s) for s in args.sizes.split(",")):
        images_per_s, epoch_seconds = _throughput(keras, size, args)
        results[f"{size} px"] = {
            "images/s": round(images_per_s, 1),
            "vs NVIDIA A100": round(images_per_s / NVIDIA_A100_AMP_XLA_IMAGES_PER_S, 2),
            "epoch s": [round(s, 2) for s in epoch_seconds],
        }
    print(json.dumps(results, indent=2))


def _throughput(keras, size: int, args) -> tuple[float, list[float]]:
    import numpy as np

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(size, size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)  # casts uint8 to the policy's dtype
    features = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg"
    )(x)
    outputs = keras.layers.Dense(1000, activation="softmax", dtype="float32")(features)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    count = args.batch_size * 4  # cycled: repeat=True-like via epochs of `steps` batches
    x_data = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    y_data = rng.integers(0, 1000, size=count)
    timer = epoch_timer(keras)
    model.fit(
        _cycled(x_data, y_data, args.batch_size),
        steps_per_epoch=args.steps,
        epochs=args.epochs,
        callbacks=[timer],
        verbose=0,
    )
    steady = min(timer.seconds[1:] or timer.seconds)
    return args.steps * args.batch_size / steady, timer.seconds


def _cycled(x, y, batch_size: int):
    while True:
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]


def _devices() -> list[str]:
    try:
        import jax

        return [str(device) for device in jax.devices()]
    except ImportError:
        import tensorflow as tf

        return [device.name for device in tf.config.list_logical_devices()]


if __name__ == "__main__":
    main()
