"""Training: tf.data from the uint8 arrays, the schedule, resumable state, the best epoch saved.

- Input: batches of uint8 images straight from the arrays; augmentation (random crop after
  reflection padding, horizontal flip) runs on the fly in tf.data; the model casts,
  normalises and resizes inside itself. No float32 or resized copy of the data set exists.
- Resume: Keras' BackupAndRestore keeps the last finished epoch (weights, optimizer, epoch) in
  .training_state/backup-<digest>, outside DVC's outputs. A training killed mid-epoch (even
  with SIGKILL) continues from there when `dvc repro` runs again with the same params and
  data; a different digest starts afresh.
- The model saved is the best epoch by `train.monitor` (its weights are kept beside the
  backup, with the best value so far, so a resumed run keeps comparing against it).
"""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar10_mlops.atomic import atomic_path
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

    monitor = cfg.monitor if validation is not None else "loss"
    state = TrainingState(Path(checkpoint_dir), resume_key)
    resumed_from = state.finished_epochs()
    history = model.fit(
        make_dataset(train_data, cfg.batch_size, cfg.seed, cfg.augment, cfg.crop_padding),
        validation_data=(
            make_dataset(validation, cfg.batch_size, shuffle_seed=None) if validation else None
        ),
        epochs=cfg.epochs,
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
        keras.callbacks.ModelCheckpoint(
            state.best_weights, monitor=monitor, mode=mode, save_best_only=True,
            save_weights_only=True, initial_value_threshold=state.best_value(monitor),
        ),
        EpochMetricsLogger(),
    ]
    if cfg.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.5, patience=cfg.reduce_lr_patience, min_lr=1e-6
        ))
    if cfg.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=cfg.early_stopping_patience
        ))
    # Last at each epoch's end: an epoch counts as finished only once its history row and
    # best weights are on disk. (Its restore at the start of fit runs before any epoch.)
    callbacks.append(keras.callbacks.BackupAndRestore(str(state.backup_dir), delete_checkpoint=False))
    return callbacks


class TrainingState:
    """.training_state/backup-<key>/: Keras' backup, the best weights so far, the history.

    The key is a digest of the params and data: only the same training resumes; any other
    key's leftovers are removed when a training starts."""

    def __init__(self, root: Path, key: str) -> None:
        name = "backup-" + "".join(c for c in key if c.isalnum())[-16:]
        for stale in root.glob("backup-*"):
            if stale.name != name:
                shutil.rmtree(stale, ignore_errors=True)
        self.directory = root / name
        self.backup_dir = self.directory / "keras"
        self.best_weights = self.directory / "best.weights.h5"
        self.history_csv = self.directory / "history.csv"
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.backup_dir.exists():  # nothing to resume: no stale history either
            self.history_csv.unlink(missing_ok=True)
            self.best_weights.unlink(missing_ok=True)

    def history_rows(self) -> list[dict[str, str]]:
        """One row per epoch; an epoch redone after a kill keeps its last row."""
        if not self.history_csv.is_file():
            return []
        with open(self.history_csv, newline="") as handle:
            by_epoch = {row["epoch"]: row for row in csv.DictReader(handle)}
        return [by_epoch[epoch] for epoch in sorted(by_epoch, key=int)]

    def finished_epochs(self) -> int:
        return len(self.history_rows()) if self.backup_dir.exists() else 0

    def best_value(self, monitor: str) -> float | None:
        values = [float(row[monitor]) for row in self.history_rows() if row.get(monitor)]
        if not values:
            return None
        return max(values) if monitor.endswith("accuracy") else min(values)

    def finish(self) -> None:
        """Training is complete and saved: nothing left to resume."""
        shutil.rmtree(self.directory, ignore_errors=True)
