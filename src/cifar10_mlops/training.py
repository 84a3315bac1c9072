"""Training: tf.data from the uint8 arrays, the schedule, resumable state, the best epoch saved.

- Input: batches of uint8 images straight from the arrays; augmentation (random crop after
  reflection padding, horizontal flip) runs on the fly in tf.data; the model casts,
  normalises and resizes inside itself. No float32 or resized copy of the data set exists.
- Resume: each finished epoch is backed up (weights with the optimizer's variables, the best
  weights so far, the history) into .training_state/backup-<digest>/epoch-<N>, outside DVC's
  outputs. A backup is written under a temporary name and renamed when complete, so a
  training killed at any moment (even with SIGKILL, even mid-write) continues after the last
  complete backup when `dvc repro` runs again with the same params and data; a different
  digest, or no complete backup, starts afresh.
- The model saved is the best epoch by `train.monitor` (its weights are kept in the backup,
  and its value in the history, so a resumed run keeps comparing against it).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar10_mlops.atomic import atomic_path, fsync_path
from cifar10_mlops.dataset import LabelledImages, stratified_split
from cifar10_mlops.model import build_model
from cifar10_mlops.params import Params, TrainParams
from cifar10_mlops.quiet_tensorflow import keras
from cifar10_mlops.tracking import EpochMetricsLogger

OPTIMIZERS = {
    "adam": lambda lr, wd: keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd),
    "rmsprop": lambda lr, wd: keras.optimizers.RMSprop(learning_rate=lr, weight_decay=wd or None),
    "sgd": lambda lr, wd: keras.optimizers.SGD(
        learning_rate=lr, momentum=0.9, nesterov=True, weight_decay=wd or None
    ),
}


@dataclass(frozen=True)
class TrainingOutcome:
    model: keras.Model
    epochs_run: int
    best_epoch: int
    monitor: str
    resumed_from_epoch: int
    replicas: int


@dataclass(frozen=True)
class Runtime:
    """What the hardware decides: precision, XLA, and how many replicas train."""

    mixed_precision: str  # a Keras dtype policy name
    jit_compile: bool
    strategy: object  # a tf.distribute strategy


def resolve_runtime(train: TrainParams) -> Runtime:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    precision = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
    # On a CPU float16 is emulated (slower) and XLA recompiles for little gain.
    policy = precision.get(train.mixed_precision, "mixed_float16" if gpus else "float32")
    jit = {"on": True, "off": False}.get(train.jit_compile, bool(gpus))
    if train.distribution == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    else:
        strategy = tf.distribute.get_strategy()
    return Runtime(policy, jit, strategy)


def make_dataset(
    data: LabelledImages,
    batch_size: int,
    shuffle_seed: int | None,
    augment: bool = False,
    crop_padding: int = 4,
):
    """Batches of uint8 images straight from the arrays: the model casts and normalises."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(data.labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    if augment:
        dataset = dataset.map(
            _augmenter(crop_padding, seed=shuffle_seed or 0), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _augmenter(padding: int, seed: int):
    import tensorflow as tf

    def augment(image, label):
        if padding:
            padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
            image = tf.image.random_crop(padded, tf.shape(image), seed=seed)
        return tf.image.random_flip_left_right(image, seed=seed + 1), label

    return augment


def learning_rate_at(epoch: int, train: TrainParams, current: float) -> float:
    """The learning rate for `epoch`: linear warmup over warmup_epochs, then cosine decay to
    zero at the last epoch (cosine), the peak (constant), or what ReduceLROnPlateau left
    (plateau)."""
    peak = train.learning_rate
    if epoch < train.warmup_epochs:
        return peak * (epoch + 1) / (train.warmup_epochs + 1)
    if train.lr_schedule == "cosine":
        progress = (epoch - train.warmup_epochs) / max(train.epochs - train.warmup_epochs, 1)
        return 0.5 * peak * (1.0 + math.cos(math.pi * progress))
    if train.lr_schedule == "constant" or epoch == train.warmup_epochs:
        return peak
    return current


def compile_model(model: keras.Model, train: TrainParams, jit_compile: bool = False) -> None:
    # Sparse categorical cross-entropy and true multi-class accuracy: binary cross-entropy on
    # ten classes would report ~90% "accuracy" for a model that predicts nothing. Keras'
    # sparse loss has no label smoothing, so labels are smoothed one-hot inside the loss.
    loss = _smoothed_sparse_crossentropy(train.label_smoothing, model.output_shape[-1])
    model.compile(
        optimizer=OPTIMIZERS[train.optimizer](train.learning_rate, train.weight_decay),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


def _smoothed_sparse_crossentropy(smoothing: float, num_classes: int):
    if smoothing == 0:
        return keras.losses.SparseCategoricalCrossentropy()
    dense = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

    def loss(labels, probabilities):
        one_hot = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(labels, "int32"), [-1]), num_classes)
        return dense(one_hot, probabilities)

    return loss


def train_model(
    params: Params,
    train_data: LabelledImages,
    model_path: Path,
    history_path: Path,
    checkpoint_dir: Path,
    verbose: int = 2,
    resume_key: str = "default",
) -> TrainingOutcome:
    cfg = params.train
    _seed_everything(cfg)
    validation = None
    if cfg.validation_split > 0:
        train_data, validation = stratified_split(
            train_data, cfg.validation_split, cfg.seed, key="train.validation_split"
        )
    runtime = resolve_runtime(cfg)
    keras.mixed_precision.set_global_policy(runtime.mixed_precision)
    with runtime.strategy.scope():
        model = build_model(params.model, num_classes=len(train_data.class_names))
        compile_model(model, cfg, runtime.jit_compile)
        state = TrainingState(Path(checkpoint_dir), resume_key)
        resumed_from = state.restore(model)  # in the scope: it builds the optimizer's variables

    monitor = cfg.monitor if validation is not None else "loss"
    history = model.fit(
        make_dataset(train_data, cfg.batch_size, cfg.seed, cfg.augment, cfg.crop_padding),
        validation_data=(
            make_dataset(validation, cfg.batch_size, shuffle_seed=None) if validation else None
        ),
        epochs=cfg.epochs,
        initial_epoch=resumed_from,  # the learning rate schedule counts from here too
        shuffle=False,  # the tf.data pipeline shuffles; fit's own flag only warns
        callbacks=_callbacks(cfg, monitor, state),
        verbose=verbose,
    )
    del history  # the CSV in the state dir holds every epoch, resumed ones included
    rows = state.history_rows()
    scores = [float(row[monitor]) for row in rows]
    best_epoch = int(np.argmax(scores) if monitor.endswith("accuracy") else np.argmin(scores))
    model.load_weights(state.best_weights)
    # An uncompiled float32 view of the same layers: no optimizer state (which would triple
    # the file), and it predicts the same on any machine.
    with atomic_path(model_path) as tmp:
        keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)
    with atomic_path(history_path) as tmp:
        shutil.copyfile(state.history_csv, tmp)
    state.finish()
    return TrainingOutcome(
        model=model,
        epochs_run=len(rows),
        best_epoch=best_epoch,
        monitor=monitor,
        resumed_from_epoch=resumed_from,
        replicas=runtime.strategy.num_replicas_in_sync,
    )


def _seed_everything(cfg: TrainParams) -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()


def _callbacks(cfg: TrainParams, monitor: str, state: TrainingState) -> list:
    mode = "max" if monitor.endswith("accuracy") else "min"
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: learning_rate_at(epoch, cfg, lr)),
        keras.callbacks.CSVLogger(str(state.history_csv), append=True),
    ]
    if cfg.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.5, patience=cfg.reduce_lr_patience, min_lr=1e-6
        ))
    if cfg.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=cfg.early_stopping_patience
        ))
    # Last at each epoch's end: the backup takes the history row just written, and MLflow
    # logs only a backed-up epoch, so an epoch redone after a kill is not logged twice.
    callbacks += [EpochBackup(state, monitor, mode), EpochMetricsLogger()]
    return callbacks


class EpochBackup(keras.callbacks.Callback):
    """Backs up the training state after each epoch, with the best weights by `monitor`."""

    def __init__(self, state: TrainingState, monitor: str, mode: str) -> None:
        super().__init__()
        self.state, self.monitor, self.maximise = state, monitor, mode == "max"
        self.best = state.best_value(monitor)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {})[self.monitor])
        improved = self.best is None or (value > self.best if self.maximise else value < self.best)
        if improved:
            self.best = value
        self.state.save(self.model, epoch + 1, improved)


class TrainingState:
    """.training_state/backup-<key>/: history.csv (CSVLogger's, growing) and epoch-<N>/, the
    backup after N finished epochs: the weights with the optimizer's variables, the best
    weights so far and the history up to then.

    A backup is written as epoch-<N>.tmp and renamed when complete, so a kill at any moment
    leaves the previous backup or the new one, never a torn one. The key is a digest of the
    params and data: only the same training resumes; any other key's leftovers are removed
    when a training starts."""

    def __init__(self, root: Path, key: str) -> None:
        name = "backup-" + "".join(c for c in key if c.isalnum())[-16:]
        for stale in root.glob("backup-*"):
            if stale.name != name:
                shutil.rmtree(stale, ignore_errors=True)
        self.directory = root / name
        self.history_csv = self.directory / "history.csv"
        self.latest: Path | None = None  # the newest complete backup
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def best_weights(self) -> Path:
        if self.latest is None:
            raise RuntimeError(f"{self.directory}: no epoch backed up yet")
        return self.latest / "best.weights.h5"

    def restore(self, model: keras.Model) -> int:
        """Load the newest readable backup into the compiled `model` and return its epoch
        count; 0 (nothing loaded, no history) when the training starts afresh. Everything
        else in the directory (torn *.tmp, older or unreadable backups) is removed."""
        if not model.optimizer.built:  # its variables must exist to be loaded
            model.optimizer.build(model.trainable_variables)
        fresh = model.get_weights(), [v.numpy() for v in model.optimizer.variables]
        complete = [p for p in self.directory.glob("epoch-*") if p.name[6:].isdigit()]
        for backup in sorted(complete, key=lambda p: int(p.name[6:]), reverse=True):
            try:
                model.load_weights(backup / "state.weights.h5")
                # The history as it was then: rows of later epochs and a torn last line go.
                shutil.copyfile(backup / "history.csv", self.history_csv)
                self.latest = backup
                break
            except Exception as error:  # a damaged disk, not a kill: try an older one
                warnings.warn(f"{backup}: unreadable, not resumed from ({error})", stacklevel=2)
        else:  # a failed load may have overwritten some variables
            model.set_weights(fresh[0])
            for variable, value in zip(model.optimizer.variables, fresh[1], strict=True):
                variable.assign(value)
            self.history_csv.unlink(missing_ok=True)
        for path in list(self.directory.iterdir()):
            if path in (self.latest, self.history_csv):
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return self.finished_epochs()

    def save(self, model: keras.Model, finished: int, best: bool) -> None:
        """Back up after `finished` epochs; `best`: this epoch's weights are the best so far."""
        tmp = self.directory / f"epoch-{finished}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save_weights(tmp / "state.weights.h5")  # the optimizer's variables included
        if best or self.latest is None:
            model.save_weights(tmp / "best.weights.h5")
        else:
            try:
                os.link(self.best_weights, tmp / "best.weights.h5")  # the same file, no copy
            except OSError:  # a file system without hard links
                shutil.copyfile(self.best_weights, tmp / "best.weights.h5")
        shutil.copyfile(self.history_csv, tmp / "history.csv")
        for path in [*tmp.iterdir(), tmp]:
            fsync_path(path)  # on disk before the rename makes the backup count
        backup = self.directory / f"epoch-{finished}"
        os.replace(tmp, backup)
        fsync_path(self.directory)
        if self.latest is not None:
            shutil.rmtree(self.latest, ignore_errors=True)
        self.latest = backup

    def history_rows(self) -> list[dict[str, str]]:
        """One row per epoch (the last one written wins); a torn or garbage line is skipped."""
        if not self.history_csv.is_file():
            return []
        with open(self.history_csv, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if _complete_row(row)]
        by_epoch = {int(row["epoch"]): row for row in rows}
        return [by_epoch[epoch] for epoch in sorted(by_epoch)]

    def finished_epochs(self) -> int:
        """The epoch count of the newest backup: the one restored, then the last saved."""
        return int(self.latest.name[6:]) if self.latest is not None else 0

    def best_value(self, monitor: str) -> float | None:
        values = [float(row[monitor]) for row in self.history_rows() if row.get(monitor)]
        if not values:
            return None
        return max(values) if monitor.endswith("accuracy") else min(values)

    def finish(self) -> None:
        """Training is complete and saved: nothing left to resume."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _complete_row(row: dict) -> bool:
    # A short line leaves values None, a long one a None key; the epoch must be a number.
    return None not in row and None not in row.values() and str(row.get("epoch")).isdigit()
