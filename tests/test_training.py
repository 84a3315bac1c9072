"""A real, tiny ResNet50 training run: callbacks, files and honest metrics."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cifar10_mlops.dataset import LabelledImages
from cifar10_mlops.model import load_model
from cifar10_mlops.params import Params
from cifar10_mlops.training import compile_model, make_dataset, train_model


def _easy_images(count: int, seed: int = 0) -> LabelledImages:
    """Class k = a bright patch in cell k of a 2x5 grid: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 60, size=(count, 32, 32, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[index, row * 16 : row * 16 + 16, col * 6 : col * 6 + 6] = 230
    return LabelledImages(images=images, labels=labels.astype(np.int64), ids=np.arange(1, count + 1))


def test_dataset_batches_uint8_images_without_copying_to_float():
    data = _easy_images(50)
    images, labels = next(iter(make_dataset(data, batch_size=16, shuffle_seed=1)))
    assert images.dtype.name == "uint8" and tuple(images.shape) == (16, 32, 32, 3)
    assert labels.shape == (16,)


def test_tiny_training_writes_the_model_history_and_checkpoint(tmp_path):
    params = Params.model_validate({
        "train": {"epochs": 2, "batch_size": 20, "validation_split": 0.2, "learning_rate": 0.001},
    })
    outcome = train_model(
        params, _easy_images(200), tmp_path / "model.keras", tmp_path / "history.csv",
        tmp_path / "state", verbose=0,
    )
    assert not list((tmp_path / "state").iterdir())  # finished: nothing left to resume
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == outcome.epochs_run == 2
    assert {"accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"} <= set(rows[0])
    assert outcome.monitor == "val_loss" and outcome.resumed_from_epoch == 0
    model = load_model(tmp_path / "model.keras")
    assert model.predict(_easy_images(4).images, verbose=0).shape == (4, 10)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no litter


def test_metric_is_true_multiclass_accuracy_not_binary():
    """A model that always answers class 0 is right on 1 image in 10: it must report 0.1, not
    the ~0.9 that binary cross-entropy "accuracy" gives on one-of-ten labels."""
    import keras

    always_zero = keras.Sequential([
        keras.Input((32, 32, 3), dtype="uint8"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", kernel_initializer="zeros",
                           bias_initializer=keras.initializers.Constant([5.0] + [0.0] * 9)),
    ])
    compile_model(always_zero, Params().train.model_copy(update={"label_smoothing": 0.0}))
    data = _easy_images(100)
    loss, accuracy = always_zero.evaluate(data.images, data.labels, verbose=0)
    assert accuracy == pytest.approx(0.1)
    assert loss == pytest.approx(-np.mean(np.log(np.where(data.labels == 0, 0.942826, 0.006353))), rel=0.01)


MIRRORED_ON_TWO_CPUS = r"""
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
import numpy as np
from cifar10_mlops.dataset import LabelledImages
from cifar10_mlops.params import Params
from cifar10_mlops.training import train_model
out = Path(sys.argv[1])
rng = np.random.default_rng(0)
labels = np.arange(120) % 10
images = (rng.integers(0, 60, (120, 32, 32, 3)) + labels[:, None, None, None] * 19).astype(np.uint8)
params = Params.model_validate({"train": {"epochs": 1, "batch_size": 16, "distribution": "mirrored"}})
outcome = train_model(params, LabelledImages(images, labels, np.arange(1, 121)), out / "m.keras",
                      out / "h.csv", out / "state", verbose=0)
print("REPLICAS", outcome.replicas)
"""


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    """train.distribution: mirrored, on a CPU split into two logical devices (in a fresh
    process: logical devices must be configured before TensorFlow starts)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_ON_TWO_CPUS, str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REPLICAS 2" in result.stdout
    assert (tmp_path / "m.keras").is_file()
