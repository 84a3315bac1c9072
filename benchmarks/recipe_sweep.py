"""Many training recipes x seeds on the pipeline's own split, in parallel, under any Keras backend.

    # 1. on a machine with the project installed (TensorFlow): the pipeline's split, as arrays
    python benchmarks/recipe_sweep.py export --data DIR --out split.npz
    # 2. anywhere with keras + a backend + this package's source (a GPU machine: KERAS_BACKEND=jax)
    PYTHONPATH=src python benchmarks/recipe_sweep.py run --split split.npz \\
        --grid benchmarks/recipe_grid.yaml --seeds 42,1,2 --jobs 8 --out results.jsonl

The recipe of each grid entry is params.yaml, then the preset, then the entry's `set` keys
(the same keys `dvc exp run -S` takes), with train.seed set to each seed: the model is
model/build.py's, the optimizer, loss and learning rate schedule are training/'s, the
validation split (which picks the epoch kept) is the train stage's, and the score is
evaluate's compute_metrics, plain and with model/tta.py's test-time augmentation. Only the
input pipeline differs: the same crops, flips and cutout, written in numpy here instead of
tf.data, so that the script runs where TensorFlow is not installed. Accuracy at a fixed number
of epochs does not depend on the machine; time does, and is measured on the target machine
with benchmarks/recipe_search.py. Prints and appends one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="the pipeline's split of DIR as one .npz")
    export.add_argument("--data", type=Path, required=True)
    export.add_argument("--out", type=Path, required=True)
    run = commands.add_parser("run", help="train and score every grid entry for every seed")
    run.add_argument("--split", type=Path, required=True)
    run.add_argument("--grid", type=Path, required=True)
    run.add_argument("--preset", type=Path, default=REPO / "presets" / "real-photos-cpu.yaml")
    run.add_argument("--seeds", default="42,1,2")
    run.add_argument("--jobs", type=int, default=1)
    run.add_argument("--only", default="", help="comma-separated grid names to run")
    run.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "export":
        _export(args.data, args.out)
    else:
        _run_grid(args)


def _export(data_dir: Path, out: Path) -> None:
    from cifar10_mlops.core.params import load_params
    from cifar10_mlops.data.raw_layout import load_split

    train, test = load_split(data_dir, load_params(REPO / "params.yaml").split)
    np.savez(
        out,
        train_images=train.images,
        train_labels=train.labels,
        test_images=test.images,
        test_labels=test.labels,
        train_ids=train.ids,
        test_ids=test.ids,
        class_names=np.array(train.class_names),
    )
    print(f"{out}: {len(train.labels)} train, {len(test.labels)} test images")


def _run_grid(args) -> None:
    grid = yaml.safe_load(args.grid.read_text())
    only = {name for name in args.only.split(",") if name}
    # Every recipe's first seed before any recipe's second: a sweep cut short still covers all.
    jobs = [
        (entry["name"], entry.get("set", {}), int(seed))
        for seed in args.seeds.split(",")
        for entry in grid
        if not only or entry["name"] in only
    ]
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    preset = yaml.safe_load(args.preset.read_text()) if args.preset else {}
    context = get_context("spawn")  # each run its own backend state and seed
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [
            pool.submit(_one_run, name, base, preset, overrides, seed, str(args.split))
            for name, overrides, seed in jobs
        ]
        for future in as_completed(futures):
            line = json.dumps(future.result())
            print(line, flush=True)
            with open(args.out, "a") as log:
                log.write(line + "\n")


def _one_run(name: str, base: dict, preset: dict, overrides: dict, seed: int, split: str) -> dict:
    try:
        return _train_and_score(name, base, preset, overrides, seed, Path(split))
    except Exception as exc:  # one broken recipe must not stop the sweep
        return {"name": name, "seed": seed, "error": f"{type(exc).__name__}: {exc}"[:500]}


def _train_and_score(
    name: str, base: dict, preset: dict, overrides: dict, seed: int, split: Path
) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    from cifar10_mlops.cli.presets import apply_overrides
    from cifar10_mlops.core.params import parse_params
    from cifar10_mlops.core.quiet_tensorflow import keras
    from cifar10_mlops.data.arrays import LabelledImages
    from cifar10_mlops.data.split import stratified_split
    from cifar10_mlops.evaluation.metrics import compute_metrics, metrics_dict
    from cifar10_mlops.model.build import build_model, set_from_training_images
    from cifar10_mlops.model.tta import predict_probabilities
    from cifar10_mlops.training.optimization import compile_model
    from cifar10_mlops.training.schedule import learning_rate_at

    raw = apply_overrides(apply_overrides(base, preset), {"train": {"seed": seed}})
    # sweep.* keys are tried here before they earn a params key (cutout, weight averaging).
    trial_only = {
        key.split(".", 1)[1]: value for key, value in overrides.items() if key.startswith("sweep.")
    }
    for key, value in overrides.items():
        if not key.startswith("sweep."):
            apply_overrides(raw, _nested(key, value))
    params = parse_params(raw, Path("params.yaml"))
    cfg = params.train
    arrays = np.load(split)
    classes = [str(c) for c in arrays["class_names"]]
    train, test = (
        LabelledImages(
            arrays[f"{part}_images"],
            arrays[f"{part}_labels"],
            arrays[f"{part}_ids"],
            tuple(classes),
        )
        for part in ("train", "test")
    )
    keras.utils.set_random_seed(seed)
    validation = None
    if cfg.validation_split > 0:
        train, validation = stratified_split(train, cfg.validation_split, cfg.seed, key="v")
    model = build_model(params.model, num_classes=len(classes))
    set_from_training_images(model, train.images)
    compile_model(model, cfg, jit_compile=True)
    if trial_only.get("ema_momentum"):  # before the first step builds the optimizer's state
        model.optimizer.use_ema = True
        model.optimizer.ema_momentum = trial_only["ema_momentum"]
    # Keras classes are made here, in the worker, after the backend is chosen.
    keep = _make_keep_best_class()(validation is not None)
    start = time.perf_counter()
    model.fit(
        _make_augmented_class()(train, cfg, seed, trial_only.get("cutout", 0)),
        validation_data=(validation.images, validation.labels) if validation else None,
        epochs=cfg.epochs,
        callbacks=[
            keras.callbacks.LearningRateScheduler(lambda e, lr: learning_rate_at(e, cfg, lr)),
            keep,
        ],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    if keep.weights is not None:
        model.set_weights(keep.weights)

    def predict(batch):
        return model.predict_on_batch(batch)

    result = {"name": name, "seed": seed, "set": overrides, "epochs": cfg.epochs}
    for label, tta in (("plain", False), ("tta", True)):
        scored = metrics_dict(
            compute_metrics(test.labels, predict_probabilities(predict, test.images, tta), classes)
        )
        result[f"accuracy_{label}"] = round(float(scored["accuracy"]), 4)
        result[f"loss_{label}"] = round(float(scored["loss"]), 4)
    result.update(
        best_epoch=keep.best_epoch, train_seconds=round(seconds, 1), backend=keras.backend.backend()
    )
    return result


def _nested(dotted: str, value) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _make_augmented_class():
    from cifar10_mlops.core.quiet_tensorflow import keras

    class Augmented(keras.utils.PyDataset):
        """Shuffled batches with the train stage's augmentation, redrawn every epoch."""

        def __init__(self, data, cfg, seed, cutout):
            super().__init__()
            self.images, self.labels, self.cfg, self.cutout = data.images, data.labels, cfg, cutout
            self.rng = np.random.default_rng(seed)
            self.mean = np.array([125, 123, 114], dtype=np.uint8)
            self.on_epoch_end()

        def __len__(self):
            return -(-len(self.labels) // self.cfg.batch_size)

        def on_epoch_end(self):
            cfg, n = self.cfg, len(self.labels)
            order = self.rng.permutation(n)
            images = self.images[order]
            if cfg.augment:
                images = _crop_flip(images, cfg.crop_padding, self.rng)
                if self.cutout:
                    images = _cutout(images, self.cutout, self.mean, self.rng)
            self.epoch_images, self.epoch_labels = images, self.labels[order]

        def __getitem__(self, index):
            batch = slice(index * self.cfg.batch_size, (index + 1) * self.cfg.batch_size)
            return self.epoch_images[batch], self.epoch_labels[batch]

    return Augmented


def _crop_flip(images: np.ndarray, padding: int, rng) -> np.ndarray:
    n, height, width, _ = images.shape
    if padding:
        padded = np.pad(images, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)), mode="reflect")
        rows = rng.integers(0, 2 * padding + 1, n)[:, None] + np.arange(height)[None, :]
        cols = rng.integers(0, 2 * padding + 1, n)[:, None] + np.arange(width)[None, :]
        images = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    flip = rng.random(n) < 0.5
    images = images.copy()
    images[flip] = images[flip, :, ::-1]
    return images


def _cutout(images: np.ndarray, size: int, fill: np.ndarray, rng) -> np.ndarray:
    n, height, width, _ = images.shape
    top = rng.integers(-(size // 2), height - size // 2, n)
    left = rng.integers(-(size // 2), width - size // 2, n)
    rows = np.arange(height)[None, :]
    cols = np.arange(width)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)
    inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)
    mask = inside_rows[:, :, None] & inside_cols[:, None, :]
    images = images.copy()
    images[mask] = fill
    return images


def _make_keep_best_class():
    from cifar10_mlops.core.quiet_tensorflow import keras

    class KeepBest(keras.callbacks.Callback):
        """The train stage's choice: the best epoch by val_accuracy, else the last."""

        def __init__(self, validating: bool):
            super().__init__()
            self.validating, self.best, self.weights, self.best_epoch = validating, -1.0, None, 0

        def on_epoch_end(self, epoch, logs=None):
            if not self.validating:
                self.best_epoch = epoch + 1
                return
            score = float(logs["val_accuracy"])
            if score > self.best:
                self.best, self.best_epoch = score, epoch + 1
                self.weights = self.model.get_weights()

    return KeepBest


if __name__ == "__main__":
    main()
