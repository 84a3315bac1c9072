"""train_model: the fit itself, from the params and the arrays to models/model.keras.

The pieces: inputs.py (numpy batches), tf_feed.py (how TensorFlow gets them), schedule.py
(learning rate), optimization.py (optimizer, loss), runtime.py (backend, precision, XLA,
devices, seeds), cluster.py (several processes), resume.py (per-epoch backups). The model saved is the best epoch by
`train.monitor` (its weights are kept in the backup, and its value in the history, so a
resumed run keeps comparing against it).
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
from cifar10_mlops.training.cluster import cluster_errors, share_chief_state, training_fingerprint
from cifar10_mlops.training.inputs import ImageBatches
from cifar10_mlops.training.lookahead import Lookahead
from cifar10_mlops.training.optimization import compile_model, variable_rates
from cifar10_mlops.training.resume import EpochBackup, TrainingState
from cifar10_mlops.training.runtime import Runtime, resolve_runtime, seed_everything
from cifar10_mlops.training.schedule import learning_rate_at
from cifar10_mlops.training.tf_feed import epoch_callbacks, feed


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
    runtime = resolve_runtime(cfg)  # first: multi_worker joins the cluster here
    seed_everything(cfg)
    validation = None
    if cfg.validation_split > 0:
        train_data, validation = stratified_split(
            train_data, cfg.validation_split, cfg.seed, key="train.validation_split"
        )
    keras.mixed_precision.set_global_policy(runtime.mixed_precision)
    state = TrainingState(Path(checkpoint_dir), resume_key)
    num_classes = len(train_data.class_names)
    guard = (
        cluster_errors(runtime.cluster, cfg.cluster_timeout_s)
        if runtime.cluster
        else contextlib.nullcontext()
    )
    with guard:
        batches = ImageBatches(
            train_data,
            cfg.batch_size,
            cfg.seed,
            cfg.augment,
            cfg.crop_padding,
            part=runtime.part,
            whole_batches=runtime.replicas > 1,
            flip=cfg.flip,
            policy=cfg.augment_policy,
        )
        local = None
        if runtime.cluster is not None:
            # The chief's backup goes to every process before the distributed model exists.
            local = _local_model(params, train_data.images, num_classes, len(batches))
            values, resumed_from = _chief_state(local, state, runtime, params, train_data)
        with runtime.scope():
            model = build_model(params.model, num_classes=num_classes)
            set_from_training_images(model, train_data.images)  # a resumed run restores over it
            compile_model(
                model, cfg, runtime.jit_compile, variable_rates(model, params, len(batches))
            )
            model.optimizer.build(model.trainable_variables)
            if local is None:
                resumed_from = state.restore(model)
            else:
                for variable, value in zip(_state_variables(model), values, strict=True):
                    variable.assign(value)
            monitor = cfg.monitor if validation is not None else "loss"
            batches.start_at_epoch(resumed_from)
            model.fit(
                feed(batches),
                validation_data=(
                    feed(
                        ImageBatches(
                            validation,
                            _validation_batch_size(cfg.batch_size, len(validation.labels), runtime),
                            shuffle_seed=None,
                            part=runtime.part,
                            whole_batches=runtime.replicas > 1,
                        )
                    )
                    if validation
                    else None
                ),
                epochs=cfg.epochs,
                initial_epoch=resumed_from,  # the learning rate schedule counts from here too
                # ImageBatches shuffles (seeded, per epoch); Keras' own shuffle of the batch order
                # would draw from the global RNG, which processes need not share.
                shuffle=False,
                callbacks=[
                    *epoch_callbacks(batches),
                    *_callbacks(cfg, monitor, state, len(batches)),
                    *callbacks,
                ],
                verbose=verbose,
            )
    rows = state.history_rows()
    scores = [float(row[monitor]) for row in rows]
    best_epoch = int(np.argmax(scores) if monitor.endswith("accuracy") else np.argmin(scores))
    # Under multi_worker the best weights go through the local copy: loading them into the
    # distributed model would be a collective, and each process keeps its own backup.
    saved = _save_best_epoch(local or model, state, model_path, history_path)
    return TrainingOutcome(
        model=saved,
        epochs_run=len(rows),
        best_epoch=best_epoch,
        monitor=monitor,
        resumed_from_epoch=resumed_from,
        replicas=runtime.replicas,
        workers=runtime.cluster.size if runtime.cluster else 1,
    )


def _validation_batch_size(batch_size: int, count: int, runtime: Runtime) -> int:
    """Several devices need equal, whole batches: a validation set smaller than one batch is
    scored in one smaller batch (a multiple of the device count) instead of not at all."""
    if runtime.replicas == 1:
        return batch_size
    shares = runtime.replicas
    return max(shares, min(batch_size, count // shares * shares))


def _local_model(
    params: Params, images: np.ndarray, num_classes: int, steps_per_epoch: int
) -> keras.Model:
    """The model on this process alone (outside the distribution), compiled and built."""
    local = build_model(params.model, num_classes=num_classes)
    set_from_training_images(local, images)
    compile_model(
        local, params.train, jit_compile=False, rates=variable_rates(local, params, steps_per_epoch)
    )
    local.optimizer.build(local.trainable_variables)
    return local


def _state_variables(model: keras.Model) -> list:
    return [*model.weights, *model.optimizer.variables]


def _chief_state(
    local: keras.Model, state: TrainingState, runtime: Runtime, params: Params, data
) -> tuple[list[np.ndarray], int]:
    """The chief's newest backup (or its fresh model) and finished epochs, on every process."""
    assert runtime.cluster is not None
    chief = runtime.cluster.is_chief
    finished = state.restore(local) if chief else 0  # only the chief keeps backups
    values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in _state_variables(local)]
    fingerprint = training_fingerprint(params, data.images, data.labels)
    finished, values = share_chief_state(values, finished, fingerprint, chief)
    return values, finished


def _save_best_epoch(
    model: keras.Model, state: TrainingState, model_path: Path, history_path: Path
) -> keras.Model:
    """Write the best epoch's model and the whole history; the backups are then done with."""
    model.load_weights(state.best_weights)
    # An uncompiled float32 view of the same layers: no optimizer state (which would triple
    # the file), and it predicts the same on any machine.
    with atomic_path(model_path) as tmp:
        keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)
    with atomic_path(history_path) as tmp:
        shutil.copyfile(state.history_csv, tmp)
    state.finish()
    return model


def _callbacks(cfg: TrainParams, monitor: str, state: TrainingState, steps_per_epoch: int) -> list:
    mode = "max" if monitor.endswith("accuracy") else "min"
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: learning_rate_at(epoch, cfg, lr)),
        keras.callbacks.CSVLogger(str(state.history_csv), append=True),
    ]
    if cfg.lookahead_every:  # before the backup: the epoch saved is the pulled one
        callbacks.insert(0, Lookahead(cfg.lookahead_every, cfg.epochs * steps_per_epoch))
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
