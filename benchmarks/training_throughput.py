"""ResNet50 training throughput: the project's input pipeline against the seed notebooks' way.

Usage:  python benchmarks/training_throughput.py [--images 2000] [--epochs 3] [--batch-size 64]
                                                 [--repeats 1] [--augment]

Both variants train the same ResNet50 (build_model with default ModelParams, compiled by
training.compile_model) on the same seeded uint8 images, each in a fresh child process
(measure.py: wall time, peak RSS); only the input path differs:
- pipeline: uint8 arrays -> training.make_dataset (tf.data, shuffle, batch, prefetch) ->
  the model, which casts and normalises inside itself;
- naive: a float32 copy scaled to 0..1 (what the seed notebooks made) ->
  model.fit(x, y, batch_size=...), into the same graph rebuilt with a float32 Input.
Both build the model from the default ModelParams, so augmentation inside the model (where
a version has it) runs in both. --augment adds a third run: the pipeline with make_dataset's
own tf.data augmentation, where this version of training.py has it (else it is skipped).
Throughput is images per second in steady state: the fastest epoch after the first. The
first epoch traces the graph (~20 s here); on this 2-core CPU the second often still carries
a one-off stall of several seconds outside the training steps, in either variant, hence 3
epochs by default. With --repeats N the variants alternate N times and the best run counts,
which keeps a busy machine's noise out of the ratio. Accuracy is not compared: only speed.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path

from measure import measured

VARIANTS = ("naive", "pipeline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--augment", action="store_true", help="also time the augmented pipeline")
    parser.add_argument("--child", choices=(*VARIANTS, "pipeline+augment"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = train_once(args.child, args.images, args.epochs, args.batch_size)
        args.result.write_text(json.dumps(result))
        return
    variants = [*VARIANTS, "pipeline+augment"] if args.augment else list(VARIANTS)
    runs = {variant: [] for variant in variants}
    for _ in range(args.repeats):
        for variant in list(runs):
            result = run_child(variant, args)
            if "skipped" in result:
                print(f"{variant}: skipped ({result['skipped']})")
                del runs[variant]
            else:
                runs[variant].append(result)
    print(json.dumps(summary(runs, args), indent=2))


def run_child(variant: str, args: argparse.Namespace) -> dict:
    """One variant in a fresh process: its epoch timings, wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as scratch:
        result = Path(scratch) / "result.json"
        command = [
            sys.executable, __file__, "--child", variant, "--result", str(result),
            "--images", str(args.images), "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size),
        ]
        seconds, peak_mib = measured(command)
        return {**json.loads(result.read_text()), "process s": seconds, "peak RSS MiB": peak_mib}


def summary(runs: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    best = {variant: max(results, key=lambda r: r["images/s"]) for variant, results in runs.items()}
    table = {
        variant: {
            "images/s (steady state)": round(run["images/s"], 1),
            "every run images/s": [round(r["images/s"], 1) for r in runs[variant]],
            "epoch s": [round(s, 2) for s in run["epoch seconds"]],
            "process s": round(run["process s"], 1),
            "peak RSS MiB": round(run["peak RSS MiB"]),
        }
        for variant, run in best.items()
    }
    mib = args.images * 32 * 32 * 3 / 2**20
    return {
        "images": args.images, "epochs": args.epochs, "batch size": args.batch_size,
        "repeats": args.repeats,
        "input arrays MiB: uint8 / the naive float32 copy": [round(mib, 1), round(4 * mib, 1)],
        **table,
        "speed-up pipeline/naive": round(best["pipeline"]["images/s"] / best["naive"]["images/s"], 2),
        "peak RSS naive/pipeline": round(best["naive"]["peak RSS MiB"] / best["pipeline"]["peak RSS MiB"], 2),
    }


# --- the child: one variant, timed per epoch -------------------------------------------------


def train_once(variant: str, count: int, epochs: int, batch_size: int) -> dict:
    augment = variant == "pipeline+augment"
    if augment and not augments_in_tf_data():
        return {"skipped": "this version of training.make_dataset has no augment argument"}
    data = seeded_data(count)
    model, train_params = compiled_model(float_input=(variant == "naive"))
    timer = epoch_timer()
    fit = {"epochs": epochs, "callbacks": [timer], "verbose": 0}
    if variant == "naive":
        x = data.images.astype("float32") / 255.0  # the seed notebooks' float copy
        model.fit(x, data.labels, batch_size=batch_size, **fit)
    else:
        model.fit(input_pipeline(data, batch_size, augment, train_params), **fit)
    steady = min(timer.seconds[1:] or timer.seconds)
    return {"epoch seconds": timer.seconds, "images/s": count / steady}


def seeded_data(count: int):
    import numpy as np

    from cifar10_mlops.dataset import LabelledImages

    rng = np.random.default_rng(0)
    return LabelledImages(
        images=rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8),
        labels=rng.integers(0, 10, size=count).astype(np.int64),
        ids=np.arange(1, count + 1, dtype=np.int64),
    )


def compiled_model(float_input: bool):
    """build_model's ResNet50 compiled by compile_model; float_input: the same graph, float32 in."""
    from cifar10_mlops import training
    from cifar10_mlops.config import IMAGE_SHAPE
    from cifar10_mlops.model import build_model
    from cifar10_mlops.params import ModelParams, TrainParams
    from cifar10_mlops.quiet_tensorflow import keras

    train_params = TrainParams()
    model = build_model(ModelParams(), num_classes=10)
    if float_input:  # clone_model rebuilds every layer of the graph on the new Input
        inputs = keras.Input(shape=IMAGE_SHAPE, dtype="float32", name="image")
        model = keras.models.clone_model(model, input_tensors=inputs)
    # Only the arguments this version of compile_model takes (other work may add some).
    call_with_known(training.compile_model, model, train_params, jit_compile=False)
    return model, train_params


def input_pipeline(data, batch_size: int, augment: bool, train):
    from cifar10_mlops import training

    return call_with_known(
        training.make_dataset, data, batch_size, shuffle_seed=0,
        augment=augment, crop_padding=getattr(train, "crop_padding", 4),
    )


def augments_in_tf_data() -> bool:
    from cifar10_mlops import training

    return "augment" in inspect.signature(training.make_dataset).parameters


def call_with_known(function, *args, **optional):
    """function(*args, **the optional keywords its signature has)."""
    accepted = inspect.signature(function).parameters
    return function(*args, **{key: value for key, value in optional.items() if key in accepted})


def epoch_timer():
    """A Keras callback that keeps the wall seconds of each epoch (Keras loads in the child)."""
    from cifar10_mlops.quiet_tensorflow import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


if __name__ == "__main__":
    main()
