"""The recipe's pieces: the learning-rate schedule, on-the-fly augmentation, label smoothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cifar10_mlops.core.params import TrainParams
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.training.inputs import ImageBatches
from cifar10_mlops.training.optimization import _smoothed_sparse_crossentropy
from cifar10_mlops.training.schedule import learning_rate_at


def test_cosine_warms_up_linearly_then_decays_to_zero_at_the_end():
    train = TrainParams(epochs=10, learning_rate=0.1, lr_schedule="cosine", warmup_epochs=2)
    rates = [learning_rate_at(epoch, train, current=0.0) for epoch in range(10)]
    assert rates[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])  # warmup, then the peak
    assert all(a > b for a, b in zip(rates[2:], rates[3:], strict=False))  # strictly decaying
    assert rates[-1] == pytest.approx(0.05 * (1 + math.cos(math.pi * 7 / 8)))
    assert rates[-1] < 0.01


def test_constant_keeps_the_peak_and_plateau_keeps_what_the_callback_set():
    constant = TrainParams(learning_rate=0.01, lr_schedule="constant", warmup_epochs=0)
    assert {learning_rate_at(epoch, constant, current=0.5) for epoch in range(5)} == {0.01}
    plateau = TrainParams(learning_rate=0.01, lr_schedule="plateau", warmup_epochs=0)
    assert learning_rate_at(0, plateau, current=0.5) == 0.01  # starts at the peak
    assert learning_rate_at(3, plateau, current=0.0025) == 0.0025  # then ReduceLROnPlateau's
    warm = TrainParams(learning_rate=0.01, lr_schedule="constant", warmup_epochs=1)
    assert [learning_rate_at(e, warm, current=0.5) for e in range(3)] == [0.005, 0.01, 0.01]


def _gradient_images(count: int) -> LabelledImages:
    """Pixel value = 8 * column + row: every window of an image is recognisable."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([8 * cols + rows] * 3, axis=-1).astype(np.uint8)
    return LabelledImages(
        images=np.repeat(image[None], count, axis=0),
        labels=np.arange(count) % 10,
        ids=np.arange(1, count + 1),
    )


def test_augmentation_crops_windows_of_the_reflect_padded_image_and_flips():
    data = _gradient_images(64)
    padded = np.pad(data.images[0], [(4, 4), (4, 4), (0, 0)], mode="reflect")
    windows = {
        padded[top : top + 32, left : left + 32].tobytes() for top in range(9) for left in range(9)
    }
    windows |= {
        np.ascontiguousarray(np.fliplr(np.frombuffer(w, np.uint8).reshape(32, 32, 3))).tobytes()
        for w in list(windows)
    }
    batch, labels = ImageBatches(data, 64, shuffle_seed=3, augment=True, crop_padding=4)[0]
    assert batch.dtype == np.uint8 and batch.shape == (64, 32, 32, 3)
    assert all(image.tobytes() in windows for image in batch)
    assert len({image.tobytes() for image in batch}) > 10  # really random, not one fixed crop
    flipped = sum(image[0, 0, 0] > image[0, -1, 0] for image in batch)
    assert 0 < flipped < 64  # some flipped, some not


def test_no_augmentation_passes_images_through_unchanged():
    data = _gradient_images(8)
    batch, _ = ImageBatches(data, 8, shuffle_seed=None, augment=False)[0]
    np.testing.assert_array_equal(batch, data.images)


def test_each_epoch_reshuffles_and_augments_anew_and_repeats_from_its_seed():
    data = _gradient_images(64)

    def epoch_batches(batches):
        return [x.tobytes() + y.tobytes() for x, y in (batches[i] for i in range(len(batches)))]

    batches = ImageBatches(data, 16, shuffle_seed=5, augment=True, crop_padding=2)
    first = epoch_batches(batches)
    assert epoch_batches(batches) == first  # asked twice (or out of order): the same batches
    batches.on_epoch_end()
    second = epoch_batches(batches)
    assert second != first
    # A run resumed at epoch 1 sees what an uninterrupted run saw in its epoch 1.
    resumed = ImageBatches(data, 16, shuffle_seed=5, augment=True, crop_padding=2)
    resumed.start_at_epoch(1)
    assert epoch_batches(resumed) == second


def test_processes_take_equal_contiguous_shares_of_the_same_global_batches():
    data = _gradient_images(70)
    data.labels[:] = np.arange(70)  # the label names the image
    whole = ImageBatches(data, 16, shuffle_seed=1, whole_batches=True)
    shares = [ImageBatches(data, 16, shuffle_seed=1, part=(rank, 2)) for rank in (0, 1)]
    assert len(whole) == len(shares[0]) == 70 // 16  # the ragged last batch is left out
    for batch in range(len(whole)):
        _, labels = whole[batch]
        joined = np.concatenate([share[batch][1] for share in shares])
        np.testing.assert_array_equal(joined, labels)
        assert all(len(share[batch][1]) == 8 for share in shares)
    with pytest.raises(ValueError, match="does not split into 3"):
        ImageBatches(data, 16, shuffle_seed=1, part=(0, 3))


def test_label_smoothing_is_cross_entropy_against_smoothed_one_hot_targets():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    labels = np.array([0, 2])
    smoothed = _smoothed_sparse_crossentropy(0.3, num_classes=3)
    targets = np.full((2, 3), 0.1) + 0.7 * np.eye(3)[labels]  # 1 - 0.3 + 0.3/3 on the true class
    expected = np.mean(-np.sum(targets * np.log(probabilities), axis=1))
    assert float(smoothed(labels, probabilities)) == pytest.approx(expected, rel=1e-5)
    plain = _smoothed_sparse_crossentropy(0.0, num_classes=3)
    assert isinstance(plain, keras.losses.SparseCategoricalCrossentropy)
