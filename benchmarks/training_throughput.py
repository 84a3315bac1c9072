"""ResNet50 training throughput: the project's pipeline and speed options against a plain fit.

Usage:  python benchmarks/training_throughput.py [--images 2000] [--epochs 3] [--batch-size 64]
                                                 [--repeats 1] [--variants naive,pipeline,...]

Every variant trains the same ResNet50 (build_model with default ModelParams, compiled by
compile_model) on the same seeded uint8 images, each in a fresh child process
(measure.py: wall time, peak RSS):
- naive: a float32 copy scaled to 0..1 (what the seed notebooks made) -> model.fit(x, y,
  batch_size=...), into the same graph rebuilt with a float32 Input; float32, no XLA, and
  TensorFlow's own oneDNN default for this CPU (off unless it has AVX512-VNNI/BF16 or AMX;
  the package turns it on everywhere, see cifar10_mlops/__init__.py);
- naive-onednn: the same plain fit with oneDNN on, which separates the kernels' share of the
  speed-up from the input pipeline's;
- pipeline: uint8 arrays -> training/inputs.py's ImageBatches (numpy shuffle, on-the-fly crop + flip,
  batch) -> the model, which casts and normalises inside itself, with what
  `train.mixed_precision: auto` and `train.jit_compile: auto` pick on this machine;
- pipeline-bf16 / pipeline-xla / pipeline-bf16-xla: the same with mixed bfloat16 and/or XLA
  forced on (what `auto` should pick is decided from these figures).
Throughput is images per second in steady state: the fastest epoch after the first (the first
traces or compiles the graph). With --repeats N the variants alternate N times and the best
run counts, which keeps a busy machine's noise out of the ratios. Only speed is compared.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import epoch_timer, measured

# variant -> (mixed precision, jit_compile); None: what `auto` resolves to here.
VARIANTS = {
    "naive": ("off", "off"),
    "naive-onednn": ("off", "off"),
    "pipeline": (None, None),
    "pipeline-bf16": ("bfloat16", "off"),
    "pipeline-xla": ("off", "on"),
    "pipeline-bf16-xla": ("bfloat16", "on"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated, from: " + ", ".join(VARIANTS),
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = train_once(args.child, args.images, args.epochs, args.batch_size)
        args.result.write_text(json.dumps(result))
        return
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown or "naive" not in variants:
        parser.error(f"--variants: unknown {sorted(unknown)} (naive is needed for the ratios)")
    runs = {variant: [] for variant in variants}
    for _ in range(args.repeats):
        for variant in variants:
            runs[variant].append(run_child(variant, args))
    print(json.dumps(summary(runs, args), indent=2))


def run_child(variant: str, args: argparse.Namespace) -> dict:
    """One variant in a fresh process: its epoch timings, wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as scratch:
        result = Path(scratch) / "result.json"
        command = [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--result",
            str(result),
            "--images",
            str(args.images),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
        ]
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1")
        if variant == "naive":
            env["TF_ENABLE_ONEDNN_OPTS"] = tensorflow_onednn_default()
        seconds, peak_mib = measured(command, env=env)
        return {
            **json.loads(result.read_text()),
            "process s": seconds,
            "peak RSS MiB": peak_mib,
            "oneDNN": env["TF_ENABLE_ONEDNN_OPTS"] == "1",
        }


@functools.cache
def tensorflow_onednn_default() -> str:
    """ "1" where TensorFlow itself turns oneDNN on for this CPU, else "0": it says so in its
    start-up log when the variable is unset."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    probe = subprocess.run(
        [sys.executable, "-c", "import tensorflow"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return "1" if "oneDNN custom operations are on" in probe.stderr else "0"


def summary(runs: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    best = {variant: max(results, key=lambda r: r["images/s"]) for variant, results in runs.items()}
    table = {
        variant: {
            "images/s (steady state)": round(run["images/s"], 1),
            "precision, XLA": run["runtime"],
            "oneDNN": run["oneDNN"],
            "every run images/s": [round(r["images/s"], 1) for r in runs[variant]],
            "epoch s": [round(s, 2) for s in run["epoch seconds"]],
            "process s": round(run["process s"], 1),
            "peak RSS MiB": round(run["peak RSS MiB"]),
        }
        for variant, run in best.items()
    }
    mib = args.images * 32 * 32 * 3 / 2**20
    return {
        "images": args.images,
        "epochs": args.epochs,
        "batch size": args.batch_size,
        "repeats": args.repeats,
        "input arrays MiB: uint8 / the naive float32 copy": [round(mib, 1), round(4 * mib, 1)],
        **table,
        "speed-up over naive": {
            variant: round(run["images/s"] / best["naive"]["images/s"], 2)
            for variant, run in best.items()
            if variant != "naive"
        },
        "peak RSS naive/variant": {
            variant: round(best["naive"]["peak RSS MiB"] / run["peak RSS MiB"], 2)
            for variant, run in best.items()
            if variant != "naive"
        },
    }


# --- the child: one variant, timed per epoch -------------------------------------------------


def train_once(variant: str, count: int, epochs: int, batch_size: int) -> dict:
    from cifar10_mlops.core.params import TrainParams
    from cifar10_mlops.core.quiet_tensorflow import keras
    from cifar10_mlops.training.inputs import ImageBatches
    from cifar10_mlops.training.runtime import resolve_runtime

    precision, jit = VARIANTS[variant]
    train = TrainParams(
        **{
            key: value
            for key, value in (("mixed_precision", precision), ("jit_compile", jit))
            if value
        }
    )
    runtime = resolve_runtime(train)
    keras.mixed_precision.set_global_policy(runtime.mixed_precision)
    data = seeded_data(count)
    model = compiled_model(
        float_input=variant.startswith("naive"), train=train, jit=runtime.jit_compile
    )
    timer = epoch_timer(keras)
    fit = {"epochs": epochs, "callbacks": [timer], "verbose": 0}
    if variant.startswith("naive"):
        x = data.images.astype("float32") / 255.0  # the seed notebooks' float copy
        model.fit(x, data.labels, batch_size=batch_size, **fit)
    else:
        batches = ImageBatches(data, batch_size, shuffle_seed=0, augment=True)
        model.fit(batches, shuffle=False, **fit)
    steady = min(timer.seconds[1:] or timer.seconds)
    return {
        "epoch seconds": timer.seconds,
        "images/s": count / steady,
        "runtime": f"{runtime.mixed_precision}, {'XLA' if runtime.jit_compile else 'no XLA'}",
    }


def seeded_data(count: int):
    import numpy as np

    from cifar10_mlops.data.arrays import LabelledImages

    rng = np.random.default_rng(0)
    return LabelledImages(
        images=rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8),
        labels=rng.integers(0, 10, size=count).astype(np.int64),
        ids=np.arange(1, count + 1, dtype=np.int64),
    )


def compiled_model(float_input: bool, train, jit: bool):
    """build_model's ResNet50 compiled by compile_model; float_input: the same graph, float32 in."""
    from cifar10_mlops.core.config import IMAGE_SHAPE
    from cifar10_mlops.core.params import ModelParams
    from cifar10_mlops.core.quiet_tensorflow import keras
    from cifar10_mlops.model.build import build_model
    from cifar10_mlops.training.optimization import compile_model

    model = build_model(ModelParams(), num_classes=10)
    if float_input:  # clone_model rebuilds every layer of the graph on the new Input
        inputs = keras.Input(shape=IMAGE_SHAPE, dtype="float32", name="image")
        model = keras.models.clone_model(model, input_tensors=inputs)
    compile_model(model, train, jit_compile=jit)
    return model


if __name__ == "__main__":
    main()
