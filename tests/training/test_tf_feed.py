"""The TensorFlow feed (training/tf_feed.py): the same batches as Keras' own PyDataset path, in
the same epochs, without tf.data's autotuning thread."""

from __future__ import annotations

import numpy as np

from cifar10_mlops.core.params import Params
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.training import fit
from cifar10_mlops.training.inputs import ImageBatches
from cifar10_mlops.training.tf_feed import EpochBatches, feed


def _data(count: int = 60) -> LabelledImages:
    rng = np.random.default_rng(4)
    return LabelledImages(
        images=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
        labels=np.arange(count) % 10,
        ids=np.arange(1, count + 1),
    )


def test_the_feed_runs_without_autotuning_and_holds_every_batch():
    batches = ImageBatches(_data(), 16, shuffle_seed=3, augment=True, policy="trivial")
    dataset = feed(batches)
    assert keras.backend.backend() == "tensorflow"  # the suite's backend: this path is tested
    assert dataset.options().autotune.enabled is False
    assert int(dataset.cardinality()) == len(batches) == 4
    for (images, labels), index in zip(dataset, range(len(batches)), strict=True):
        expected_images, expected_labels = batches[index]
        np.testing.assert_array_equal(images.numpy(), expected_images)
        np.testing.assert_array_equal(labels.numpy(), expected_labels)


def test_epoch_batches_sets_each_epoch_as_it_begins():
    batches = ImageBatches(_data(), 16, shuffle_seed=3, augment=True)
    callback = EpochBatches(batches)
    callback.on_epoch_begin(2)
    resumed = ImageBatches(_data(), 16, shuffle_seed=3, augment=True)
    resumed.start_at_epoch(2)
    np.testing.assert_array_equal(batches[1][0], resumed[1][0])
    callback.on_epoch_begin(3)
    assert batches.epoch == 3


def test_train_model_ends_on_the_weights_keras_own_pydataset_path_gives(tmp_path, monkeypatch):
    """Three epochs with crops, flips and TrivialAugment: fed through tf_feed, or given to Keras
    as the PyDataset (which calls its on_epoch_end itself), the model ends on the same weights,
    so every epoch saw the same batches in the same order."""
    params = Params.model_validate(
        {
            "model": {"backbone": "airbench", "dropout": 0.0, "airbench": {"widths": [8, 8, 8]}},
            "train": {
                "epochs": 3,
                "batch_size": 16,
                "validation_split": 0.0,
                "augment_policy": "trivial",
            },
        }
    )

    def final_weights(run: str) -> list[np.ndarray]:
        out = tmp_path / run
        outcome = fit.train_model(
            params, _data(), out / "m.keras", out / "h.csv", out / "state", verbose=0
        )
        return outcome.model.get_weights()

    fed = final_weights("fed")
    monkeypatch.setattr(fit, "feed", lambda batches: batches)
    keras_own = final_weights("keras-own")
    assert all(np.array_equal(x, y) for x, y in zip(fed, keras_own, strict=True))
