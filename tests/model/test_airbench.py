"""The airbench-style backbone (model/airbench.py): its data-set whitening layer, identity
initialisation, and a model that builds, saves and loads like the others."""

from __future__ import annotations

import numpy as np
import pytest

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import ModelParams
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.model.airbench import DiracInitializer, whitening_kernel
from cifar10_mlops.model.build import (
    CIFAR_MEAN,
    CIFAR_STD,
    build_model,
    load_model,
    set_from_training_images,
)

SMALL = {"backbone": "airbench", "airbench": {"widths": [8, 16, 16]}}


def smooth_images(count: int, seed: int = 0) -> np.ndarray:
    """Images with neighbouring pixels and channels correlated, as in photographs."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(128, 50, (count, 9, 9, 1)) + rng.normal(0, 15, (count, 9, 9, 3))
    rows = np.linspace(0, 8, 32)
    upsampled = np.stack(
        [
            np.stack([np.interp(rows, np.arange(9), line) for line in image[:, :, c]])
            for image in coarse
            for c in range(3)
        ]
    ).reshape(count, 3, 9, 32)
    full = np.stack(
        [
            np.stack([np.interp(rows, np.arange(9), upsampled[n, c, :, x]) for x in range(32)], 1)
            for n in range(count)
            for c in range(3)
        ]
    ).reshape(count, 3, 32, 32)
    noise = rng.normal(0, 4, (count, 32, 32, 3))
    return np.clip(full.transpose(0, 2, 3, 1) + noise, 0, 255).astype(np.uint8)


def test_the_whitening_layer_decorrelates_the_training_patches():
    images = smooth_images(60)
    model = build_model(ModelParams(**SMALL), num_classes=10)
    set_from_training_images(model, images)
    backbone = model.get_layer("airbench_8_16_16")
    whiten = keras.Model(backbone.input, backbone.get_layer("whiten").output)
    normalised = (images.astype("float32") - np.array(CIFAR_MEAN)) / np.array(CIFAR_STD)
    out = whiten.predict(normalised, verbose=0)
    assert out.shape == (60, 31, 31, 24)  # 12 patch directions and their negatives
    features = out[..., :12].reshape(-1, 12)
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-3)
    covariance = np.cov(features, rowvar=False)
    # Unit variance in every direction (less where the epsilon dominates a tiny eigenvalue),
    # and no correlation between directions. The raw patches are strongly correlated.
    assert np.all((np.diag(covariance) > 0.85) & (np.diag(covariance) < 1.01))
    np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0, atol=0.02)
    np.testing.assert_allclose(out[..., 12:], -out[..., :12], atol=1e-5)
    raw = np.corrcoef(normalised[:, :2, :2, :].reshape(60, -1)[:, :2], rowvar=False)
    assert raw[0, 1] > 0.8


def test_the_whitening_kernel_is_frozen_and_saved_with_the_model(tmp_path):
    images = smooth_images(20, seed=1)
    model = build_model(ModelParams(**SMALL), num_classes=10)
    set_from_training_images(model, images)
    whiten = model.get_layer("airbench_8_16_16").get_layer("whiten")
    assert not whiten.trainable
    kernel, bias = whitening_kernel(images, (CIFAR_MEAN, CIFAR_STD))
    np.testing.assert_allclose(whiten.get_weights()[0], kernel)
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    batch = images[:4]
    np.testing.assert_allclose(
        loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(
        loaded.get_layer("airbench_8_16_16").get_layer("whiten").get_weights()[0], kernel
    )


def test_dirac_initialisation_passes_each_channel_through_the_centre_tap():
    kernel = np.asarray(DiracInitializer(seed=0)((3, 3, 4, 6)))
    for channel in range(4):
        assert kernel[1, 1, channel, channel] == 1.0
    off_identity = kernel.copy()
    for channel in range(4):
        off_identity[1, 1, channel, channel] = 0
    assert np.count_nonzero(off_identity) > 0.9 * (off_identity.size - 4)  # He-normal elsewhere


def test_the_airbench_model_outputs_ten_probabilities_from_uint8_images():
    model = build_model(ModelParams(**SMALL), num_classes=10)
    probabilities = model.predict(smooth_images(3), verbose=0)
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    # Three groups, each halving: 31 -> 15 -> 7 -> 3, then pooled to one vector per image.
    assert model.get_layer("airbench_8_16_16").output.shape == (None, 1, 1, 16)


@pytest.mark.parametrize("widths", [[], [0, 8], [8] * 6])
def test_bad_airbench_widths_are_refused(widths):
    with pytest.raises(ValueError, match="widths"):
        ModelParams(backbone="airbench", airbench={"widths": widths})


def test_the_airbench_backbone_has_no_imagenet_weights():
    with pytest.raises(
        PipelineError, match="'imagenet' does not exist for model.backbone 'airbench'"
    ):
        build_model(ModelParams(backbone="airbench", weights="imagenet"), num_classes=10)
