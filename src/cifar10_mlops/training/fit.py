"""train_model: the fit itself, from the params and the arrays to models/model.keras.

The pieces: inputs.py (tf.data), schedule.py (learning rate), optimization.py (optimizer,
loss), runtime.py (precision, XLA, distribution, seeds), resume.py (per-epoch backups). The
model saved is the best epoch by `train.monitor` (its weights are kept in the backup, and its
value in the history, so a resumed run keeps comparing against it).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar10_mlops.core.atomic import atomic_path
from cifar10_mlops.core.params import Params, TrainParams
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.data.split import stratified_split
from cifar10_mlops.model.build import build_model, set_from_training_images
from cifar10_mlops.training.cluster import (
    cluster_errors,
    global_batch_norm,
    keras_multi_worker_fit,
    share_chief_state,
    training_fingerprint,
)
from cifar10_mlops.training.inputs import make_dataset
from cifar10_mlops.training.optimization import compile_model
from cifar10_mlops.training.resume import EpochBackup, TrainingState
from cifar10_mlops.training.runtime import resolve_runtime, seed_everything
from cifar10_mlops.training.schedule import learning_rate_at

TENSORFLOW_CLUSTER_LOG = "tensorflow-cluster.log"  # multi_worker: TensorFlow's C++ log


@dataclass(frozen=True)
class TrainingOutcome:
    model: keras.Model
    epochs_run: int
    best_epoch: int
    monitor: str
    resumed_from_epoch: int
    replicas: int
    workers: int  # processes that trained together (multi_worker), else 1


def train_model(
    params: Params,
    train_data: LabelledImages,
    model_path: Path,
    history_path: Path,
    checkpoint_dir: Path,
    verbose: int = 2,
    resume_key: str = "default",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainingOutcome:
    """Train, resuming the backed-up epochs of the same `resume_key`; save the best epoch.

    `callbacks` run last at each epoch's end, after the backup (the train stage passes its
    MLflow logger here, so an epoch is logged only once it is backed up)."""
    cfg = params.train
    # First: a multi-worker strategy must exist before any other TensorFlow op.
    runtime = resolve_runtime(cfg, Path(checkpoint_dir) / TENSORFLOW_CLUSTER_LOG)
    seed_everything(cfg)
    validation = None
    if cfg.validation_split > 0:
        train_data, validation = stratified_split(
            train_data, cfg.validation_split, cfg.seed, key="train.validation_split"
        )
    keras.mixed_precision.set_global_policy(runtime.mixed_precision)
    with runtime.strategy.scope():
        model = build_model(params.model, num_classes=len(train_data.class_names))
        set_from_training_images(model, train_data.images)  # a resumed run restores over it
        compile_model(model, cfg, runtime.jit_compile)
        state = TrainingState(Path(checkpoint_dir), resume_key)
        if runtime.cluster is None:
            resumed_from = state.restore(model)  # in the scope: it builds the optimizer's state
        else:
            model.optimizer.build(model.trainable_variables)  # the same on every task
    monitor = cfg.monitor if validation is not None else "loss"
    shard = runtime.cluster is not None
    with contextlib.ExitStack() as multi_worker:
        if runtime.cluster is not None:
            log = Path(checkpoint_dir) / TENSORFLOW_CLUSTER_LOG
            multi_worker.enter_context(cluster_errors(runtime.cluster, cfg.cluster_timeout_s, log))
            # Only the chief keeps backups: every task continues from its state.
            backup, resumed_from = _chief_backup(
                params, state, runtime.cluster.is_chief, len(train_data.class_names)
            )
            fingerprint = training_fingerprint(params, train_data.images, train_data.labels)
            resumed_from = share_chief_state(
                runtime.strategy, model, backup, resumed_from, fingerprint
            )
            multi_worker.enter_context(keras_multi_worker_fit(model, runtime.strategy))
            multi_worker.enter_context(global_batch_norm(model))
        history = model.fit(
            make_dataset(
                train_data, cfg.batch_size, cfg.seed, cfg.augment, cfg.crop_padding, shard=shard
            ),
            validation_data=(
                make_dataset(validation, cfg.batch_size, shuffle_seed=None, shard=shard)
                if validation
                else None
            ),
            epochs=cfg.epochs,
            initial_epoch=resumed_from,  # the learning rate schedule counts from here too
            shuffle=False,  # the tf.data pipeline shuffles; fit's own flag only warns
            callbacks=[*_callbacks(cfg, monitor, state), *callbacks],
            verbose=verbose,
        )
    del history  # the CSV in the state dir holds every epoch, resumed ones included
    rows = state.history_rows()
    scores = [float(row[monitor]) for row in rows]
    best_epoch = int(np.argmax(scores) if monitor.endswith("accuracy") else np.argmin(scores))
    _save_best_epoch(model, state, model_path, history_path)
    return TrainingOutcome(
        model=model,
        epochs_run=len(rows),
        best_epoch=best_epoch,
        monitor=monitor,
        resumed_from_epoch=resumed_from,
        replicas=runtime.strategy.num_replicas_in_sync,
        workers=runtime.cluster.size if runtime.cluster else 1,
    )


def _chief_backup(
    params: Params, state: TrainingState, is_chief: bool, num_classes: int
) -> tuple[keras.Model | None, int]:
    """Multi-worker: the chief's newest backup, loaded into a local copy of the model (loading
    into the distributed model would run collectives that the other tasks do not), and its
    finished epochs. (None, 0) on the other tasks and when there is nothing to resume."""
    if not is_chief or not state.has_backup():
        return None, 0
    local = build_model(params.model, num_classes=num_classes)
    compile_model(local, params.train, jit_compile=False)
    return local, state.restore(local)


def _save_best_epoch(
    model: keras.Model, state: TrainingState, model_path: Path, history_path: Path
) -> None:
    """Write the best epoch's model and the whole history; the backups are then done with."""
    model.load_weights(state.best_weights)
    # An uncompiled float32 view of the same layers: no optimizer state (which would triple
    # the file), and it predicts the same on any machine.
    with atomic_path(model_path) as tmp:
        keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)
    with atomic_path(history_path) as tmp:
        shutil.copyfile(state.history_csv, tmp)
    state.finish()


def _callbacks(cfg: TrainParams, monitor: str, state: TrainingState) -> list:
    mode = "max" if monitor.endswith("accuracy") else "min"
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: learning_rate_at(epoch, cfg, lr)),
        keras.callbacks.CSVLogger(str(state.history_csv), append=True),
    ]
    if cfg.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode=mode, factor=0.5, patience=cfg.reduce_lr_patience, min_lr=1e-6
            )
        )
    if cfg.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode=mode, patience=cfg.early_stopping_patience
            )
        )
    # Last at each epoch's end: the backup takes the history row just written, and the
    # caller's callbacks (MLflow) see only a backed-up epoch, so an epoch redone after a kill
    # is not logged twice.
    callbacks.append(EpochBackup(state, monitor, mode))
    return callbacks
