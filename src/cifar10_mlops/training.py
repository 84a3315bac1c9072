"""Training: tf.data from the uint8 arrays, callbacks, and the best model saved atomically."""

from __future__ import annotations

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
    "adam": lambda lr: keras.optimizers.Adam(learning_rate=lr),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(learning_rate=lr),
    "sgd": lambda lr: keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True),
}


@dataclass(frozen=True)
class TrainingOutcome:
    model: keras.Model
    epochs_run: int
    best_epoch: int
    monitor: str


def make_dataset(data: LabelledImages, batch_size: int, shuffle_seed: int | None):
    """Batches of uint8 images straight from the arrays: the model casts and normalises."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(data.labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def compile_model(model: keras.Model, train: TrainParams) -> None:
    # Sparse categorical cross-entropy and true multi-class accuracy: binary cross-entropy on
    # ten classes would report ~90% "accuracy" for a model that predicts nothing.
    model.compile(
        optimizer=OPTIMIZERS[train.optimizer](train.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def train_model(
    params: Params,
    train_data: LabelledImages,
    model_path: Path,
    history_path: Path,
    checkpoint_dir: Path,
    verbose: int = 2,
) -> TrainingOutcome:
    cfg = params.train
    keras.utils.set_random_seed(cfg.seed)
    validation = None
    if cfg.validation_split > 0:
        train_data, validation = stratified_split(
            train_data, cfg.validation_split, cfg.seed, key="train.validation_split"
        )
    model = build_model(params.model, num_classes=len(train_data.class_names))
    compile_model(model, cfg)

    monitor = "val_loss" if validation is not None else "loss"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    best_checkpoint = checkpoint_dir / "best.keras"
    history_tmp = checkpoint_dir / "history.csv"
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=cfg.early_stopping_patience, restore_best_weights=True
    )
    callbacks = [
        early_stopping,
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=0.5, patience=cfg.reduce_lr_patience, min_lr=1e-6
        ),
        keras.callbacks.ModelCheckpoint(best_checkpoint, monitor=monitor, save_best_only=True),
        keras.callbacks.CSVLogger(str(history_tmp)),
        EpochMetricsLogger(),
    ]
    history = model.fit(
        make_dataset(train_data, cfg.batch_size, shuffle_seed=cfg.seed),
        validation_data=(
            make_dataset(validation, cfg.batch_size, shuffle_seed=None) if validation else None
        ),
        epochs=cfg.epochs,
        shuffle=False,  # the tf.data pipeline shuffles; fit's own flag only warns
        callbacks=callbacks,
        verbose=verbose,
    )
    # EarlyStopping restored the best epoch's weights; that model is the one we ship. An
    # uncompiled view of the same layers saves without the optimizer state, which would
    # triple the file (Adam keeps two moments per weight) and is no use for inference.
    with atomic_path(model_path) as tmp:
        keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)
    with atomic_path(history_path) as tmp:
        shutil.copyfile(history_tmp, tmp)
    losses = history.history[monitor]
    return TrainingOutcome(
        model=model,
        epochs_run=len(losses),
        best_epoch=int(np.argmin(losses)),
        monitor=monitor,
    )
