"""Real, tiny training runs (the compact backbone): callbacks, files and honest metrics."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cifar10_mlops.core.params import Params
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.model.build import load_model
from cifar10_mlops.training.fit import train_model
from cifar10_mlops.training.inputs import ImageBatches
from cifar10_mlops.training.optimization import compile_model
from tests.helpers.models import SMALL_BACKBONE


def _easy_images(count: int, seed: int = 0) -> LabelledImages:
    """Class k = a bright patch in cell k of a 2x5 grid: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 60, size=(count, 32, 32, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[index, row * 16 : row * 16 + 16, col * 6 : col * 6 + 6] = 230
    return LabelledImages(
        images=images, labels=labels.astype(np.int64), ids=np.arange(1, count + 1)
    )


def test_dataset_batches_uint8_images_without_copying_to_float():
    data = _easy_images(50)
    images, labels = ImageBatches(data, batch_size=16, shuffle_seed=1)[0]
    assert images.dtype.name == "uint8" and tuple(images.shape) == (16, 32, 32, 3)
    assert labels.shape == (16,)


def test_tiny_training_writes_the_model_history_and_checkpoint(tmp_path):
    params = Params.model_validate(
        {
            "model": SMALL_BACKBONE,
            "train": {
                "epochs": 2,
                "batch_size": 20,
                "validation_split": 0.2,
                "learning_rate": 0.001,
            },
        }
    )
    outcome = train_model(
        params,
        _easy_images(200),
        tmp_path / "model.keras",
        tmp_path / "history.csv",
        tmp_path / "state",
        verbose=0,
    )
    assert not list((tmp_path / "state").iterdir())  # finished: nothing left to resume
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == outcome.epochs_run == 2
    assert {"accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"} <= set(rows[0])
    assert outcome.monitor == "val_accuracy" and outcome.resumed_from_epoch == 0
    model = load_model(tmp_path / "model.keras")
    assert model.predict(_easy_images(4).images, verbose=0).shape == (4, 10)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no litter


def test_metric_is_true_multiclass_accuracy_not_binary():
    """A model that always answers class 0 is right on 1 image in 10: it must report 0.1, not
    the ~0.9 that binary cross-entropy "accuracy" gives on one-of-ten labels."""
    import keras

    always_zero = keras.Sequential(
        [
            keras.Input((32, 32, 3), dtype="uint8"),
            keras.layers.Flatten(),
            keras.layers.Dense(
                10,
                activation="softmax",
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant([5.0] + [0.0] * 9),
            ),
        ]
    )
    compile_model(always_zero, Params().train.model_copy(update={"label_smoothing": 0.0}))
    data = _easy_images(100)
    loss, accuracy = always_zero.evaluate(data.images, data.labels, verbose=0)
    assert accuracy == pytest.approx(0.1)
    assert loss == pytest.approx(
        -np.mean(np.log(np.where(data.labels == 0, 0.942826, 0.006353))), rel=0.01
    )


MIRRORED_ON_TWO_CPUS = r"""
import json
import sys
from pathlib import Path
import numpy as np
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.core.params import Params
from cifar10_mlops.training.fit import train_model
out = Path(sys.argv[1])
rng = np.random.default_rng(0)
labels = np.arange(120) % 10
images = (rng.integers(0, 60, (120, 32, 32, 3)) + labels[:, None, None, None] * 19).astype(np.uint8)
params = Params.model_validate({"model": json.loads(sys.argv[2]),
                                "train": {"epochs": 1, "batch_size": 16, "backend": "jax",
                                          "distribution": "mirrored"}})
outcome = train_model(params, LabelledImages(images, labels, np.arange(1, 121)), out / "m.keras",
                      out / "h.csv", out / "state", verbose=0)
print("REPLICAS", outcome.replicas)
"""


def test_mirrored_trains_one_model_over_two_cpu_devices_on_jax(tmp_path):
    """train.distribution: mirrored is keras.distribution.DataParallel over this machine's
    devices (GPUs on a GPU machine): here a CPU split into two JAX devices, in a fresh process
    (the device count is fixed when JAX starts)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_NUM_CPU_DEVICES": "2"}
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_ON_TWO_CPUS, str(tmp_path), json.dumps(SMALL_BACKBONE)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REPLICAS 2" in result.stdout
    assert (tmp_path / "m.keras").is_file()


def test_distribution_on_tensorflow_is_one_line_asking_for_jax(tmp_path):
    from cifar10_mlops.core.errors import PipelineError

    params = Params.model_validate(
        {"model": SMALL_BACKBONE, "train": {"epochs": 1, "distribution": "mirrored"}}
    )
    with pytest.raises(PipelineError, match="needs train.backend: jax"):
        train_model(params, _easy_images(40), tmp_path / "m.keras", tmp_path / "h.csv",
                    tmp_path / "state", verbose=0)  # fmt: skip


def _tiny_compiled_model(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.AdamW(0.01), loss="sparse_categorical_crossentropy")
    return model


def _fit_with_backups(model, state, epochs: int, initial_epoch: int = 0) -> None:
    import keras

    from cifar10_mlops.training.resume import EpochBackup

    rng = np.random.default_rng(0)
    x, y = rng.random((32, 4), dtype=np.float32), rng.integers(0, 3, 32)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=epochs,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[
            keras.callbacks.CSVLogger(str(state.history_csv), append=True),
            EpochBackup(state, "loss", "min"),
        ],
    )


def test_training_state_resumes_from_the_last_complete_backup_past_a_kills_litter(tmp_path):
    from cifar10_mlops.training.resume import TrainingState

    state = TrainingState(tmp_path, "key")
    trained = _tiny_compiled_model(seed=1)
    assert state.restore(trained) == 0
    _fit_with_backups(trained, state, epochs=2)
    # What a kill during epoch 3's backup leaves: its history row, then a torn line, and a
    # half-written epoch-3.tmp.
    with open(state.history_csv, "a") as handle:
        handle.write("2,0.5,0.01\n3,0.4")
    torn = state.directory / "epoch-3.tmp"
    torn.mkdir()
    (torn / "state.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)

    resumed = _tiny_compiled_model(seed=2)
    state = TrainingState(tmp_path, "key")
    assert state.restore(resumed) == state.finished_epochs() == 2
    assert sorted(p.name for p in state.directory.iterdir()) == ["epoch-2", "history.csv"]
    assert [int(row["epoch"]) for row in state.history_rows()] == [0, 1]
    assert int(resumed.optimizer.iterations) == int(trained.optimizer.iterations) == 8
    for mine, theirs in zip(
        resumed.weights + resumed.optimizer.variables,
        trained.weights + trained.optimizer.variables,
        strict=True,
    ):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    _fit_with_backups(resumed, state, epochs=3, initial_epoch=2)
    assert int(resumed.optimizer.iterations) == 12
    assert [int(row["epoch"]) for row in state.history_rows()] == [0, 1, 2]
    assert sorted(p.name for p in state.directory.iterdir()) == ["epoch-3", "history.csv"]
    assert state.best_weights.is_file()


def test_training_state_starts_afresh_when_no_backup_is_readable(tmp_path):
    from cifar10_mlops.training.resume import TrainingState

    state = TrainingState(tmp_path, "key")
    (state.directory / "epoch-1").mkdir()
    (state.directory / "epoch-1" / "state.weights.h5").write_bytes(b"garbage")
    state.history_csv.write_text("epoch,loss\n0,1.5\n")
    model = _tiny_compiled_model(seed=1)
    model.optimizer.build(model.trainable_variables)
    fresh = [v.numpy() for v in model.weights + model.optimizer.variables]
    with pytest.warns(UserWarning, match="unreadable"):
        assert state.restore(model) == 0
    assert not list(state.directory.iterdir()) and state.history_rows() == []
    for variable, value in zip(model.weights + model.optimizer.variables, fresh, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


@pytest.mark.parametrize(("setting", "expected_on"), [(None, True), ("0", False)])
def test_the_package_turns_onednn_on_unless_the_user_chose(setting, expected_on):
    """TensorFlow leaves oneDNN off on AVX2-only CPUs (4x slower ResNet50 training there); the
    package turns it on before TensorFlow loads, and an explicit TF_ENABLE_ONEDNN_OPTS wins."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # TensorFlow says at start-up whether oneDNN is on
    probe = subprocess.run(
        [sys.executable, "-c", "import cifar10_mlops, tensorflow"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert ("oneDNN custom operations are on" in probe.stderr) is expected_on, probe.stderr
