"""Test-time augmentation (model/tta.py): exactly the documented views and weights."""

from __future__ import annotations

import numpy as np

from cifar10_mlops.model import tta


def test_without_tta_the_model_is_called_on_the_images_as_they_are():
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    seen = []

    def predict(batch):
        seen.append(batch.copy())
        return np.full((len(batch), 10), 0.1)

    tta.predict_probabilities(predict, images, tta=False)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], images)


def test_the_views_are_the_mirror_image_and_one_pixel_shifts_weighted_as_documented():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, :32, :32], padded[:, 2:, 2:]
    views = {
        "image": (images, 0.25),
        "mirror": (images[:, :, ::-1], 0.25),
        "up-left": (up_left, 0.125),
        "up-left mirror": (up_left[:, :, ::-1], 0.125),
        "down-right": (down_right, 0.125),
        "down-right mirror": (down_right[:, :, ::-1], 0.125),
    }

    def predict(batch):
        # A "model" that answers which view it was shown, as a one-hot vector.
        out = np.zeros((len(batch), 10))
        for row, picture in enumerate(batch):
            index = [
                i
                for i, (view, _) in enumerate(views.values())
                if (view == picture).all(axis=(1, 2, 3)).any()
            ]
            assert len(index) == 1, "a view that is none of the documented six"
            out[row, index[0]] = 1.0
        return out

    averaged = tta.predict_probabilities(predict, images, tta=True)
    expected = np.array([weight for _, weight in views.values()] + [0.0] * 4)
    np.testing.assert_allclose(averaged, np.tile(expected, (3, 1)))


def test_large_inputs_go_through_in_chunks_with_the_same_result():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (tta.CHUNK * 2 + 7, 32, 32, 3), dtype=np.uint8)
    weights = rng.normal(size=(32 * 32 * 3, 10))
    sizes = []

    def predict(batch):
        sizes.append(len(batch))
        logits = batch.reshape(len(batch), -1).astype("float64") @ weights / 1e4
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    chunked = tta.predict_probabilities(predict, images, tta=True)
    assert max(sizes) <= 2 * tta.CHUNK  # a chunk and its mirror image, never the whole set
    one_by_one = np.concatenate(
        [
            tta.predict_probabilities(predict, images[i : i + 1], True)
            for i in (0, 600, len(images) - 1)
        ]
    )
    np.testing.assert_allclose(chunked[[0, 600, len(images) - 1]], one_by_one, rtol=1e-6)
    np.testing.assert_allclose(chunked.sum(axis=1), 1, atol=1e-6)
