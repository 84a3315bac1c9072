"""The model really builds, predicts, saves and loads; weights files really load."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import ModelParams
from cifar10_mlops.model.build import build_model, load_model

IMAGES = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("head", ["gap_dense", "upsample_dense", "residual_sepconv"])
def test_each_head_gives_probabilities_for_uint8_images(head):
    model = build_model(ModelParams(head=head, dense_units=32), num_classes=10)
    assert model.inputs[0].dtype == "uint8"
    probabilities = model.predict(IMAGES, verbose=0)
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_vgg16_resizes_inside_the_model():
    model = build_model(ModelParams(backbone="vgg16", input_size=48), num_classes=10)
    assert model.get_layer("resize").output.shape[1:3] == (48, 48)
    assert model.predict(IMAGES, verbose=0).shape == (3, 10)


def test_frozen_backbone_trains_only_the_head():
    model = build_model(ModelParams(backbone="vgg16", freeze_backbone=True), num_classes=10)
    backbone = model.get_layer("vgg16")
    assert not backbone.trainable and backbone.trainable_weights == []
    assert model.trainable_weights  # the head still learns


def test_the_model_predicts_the_same_twice():
    model = build_model(ModelParams(backbone="vgg16"), num_classes=10)
    first = model.predict(IMAGES, verbose=0)
    np.testing.assert_allclose(first, model.predict(IMAGES, verbose=0), rtol=1e-5, atol=1e-6)


def _saved_vgg16_backbone(path):
    backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    backbone.save_weights(path)
    return backbone


def test_weights_from_a_local_file_are_loaded_and_the_model_round_trips(tmp_path):
    weights = tmp_path / "vgg16_notop.weights.h5"
    reference = _saved_vgg16_backbone(weights)
    model = build_model(ModelParams(backbone="vgg16", weights=str(weights)), num_classes=10)
    for loaded, expected in zip(
        model.get_layer("vgg16").get_weights(), reference.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(loaded, expected)
    # pretrained weights bring the backbone's own (caffe) preprocessing, saved with the model
    assert model.get_layer("backbone_preprocess")
    model.save(tmp_path / "model.keras")
    reloaded = load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        reloaded.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0), atol=1e-5
    )


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match=r"model.weights .*missing.weights.h5.* is not a file"):
        build_model(ModelParams(weights=str(tmp_path / "missing.weights.h5")), num_classes=10)


def test_weights_for_another_backbone_are_a_clear_error(tmp_path):
    weights = tmp_path / "vgg16_notop.weights.h5"
    _saved_vgg16_backbone(weights)
    with pytest.raises(PipelineError, match="does not fit the resnet50 backbone"):
        build_model(ModelParams(backbone="resnet50", weights=str(weights)), num_classes=10)


def test_imagenet_weights_are_requested_from_keras_and_a_failed_fetch_is_a_clear_error(monkeypatch):
    """Up to the network boundary only: the fetch itself is replaced by an offline failure."""
    from keras.src.utils import file_utils

    requested = []

    def offline_get_file(fname, origin=None, **kwargs):
        requested.append((fname, origin))
        raise Exception(f"URL fetch failure on {origin}: no network")

    monkeypatch.setattr(file_utils, "get_file", offline_get_file)
    with pytest.raises(PipelineError, match="could not fetch the ImageNet weights"):
        build_model(ModelParams(weights="imagenet"), num_classes=10)
    assert requested and requested[0][0] == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_load_model_of_a_missing_or_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="model file not found"):
        load_model(tmp_path / "none.keras")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="cannot load the model"):
        load_model(broken)


def test_the_compact_cifar_resnet_keeps_full_resolution_and_has_6n_plus_2_layers():
    params = ModelParams(backbone="cifar_resnet", cifar_resnet={"depth": 8, "width": 8})
    model = build_model(params, num_classes=10)
    backbone = model.get_layer("cifar_resnet8_w8")
    convs = [
        layer
        for layer in backbone.layers
        if layer.name.endswith("_conv") and "proj" not in layer.name
    ]
    assert len(convs) + 1 == 8  # stem + 2 per block x 3 stages, + the classifier
    assert backbone.get_layer("stage1_block1_2_conv").output.shape[1:3] == (32, 32)
    assert backbone.output.shape[1:] == (8, 8, 32)  # width x4 after two stride-2 stages
    assert model.get_layer("standardize")  # trained on CIFAR: CIFAR statistics, never caffe
    probabilities = model.predict(IMAGES, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("depth", [9, 21])
def test_a_cifar_resnet_depth_other_than_6n_plus_2_is_refused(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        ModelParams(backbone="cifar_resnet", cifar_resnet={"depth": depth})


def test_the_cifar_resnet_has_no_imagenet_weights_and_loads_its_own(tmp_path):
    with pytest.raises(
        PipelineError, match="'imagenet' does not exist for model.backbone 'cifar_resnet'"
    ):
        build_model(ModelParams(backbone="cifar_resnet", weights="imagenet"), num_classes=10)
    small = {"depth": 8, "width": 4}
    trained = build_model(ModelParams(backbone="cifar_resnet", cifar_resnet=small), num_classes=10)
    weights = tmp_path / "compact.weights.h5"
    trained.get_layer("cifar_resnet8_w4").save_weights(weights)
    loaded = build_model(
        ModelParams(backbone="cifar_resnet", cifar_resnet=small, weights=str(weights)),
        num_classes=10,
    )
    for got, expected in zip(
        loaded.get_layer("cifar_resnet8_w4").get_weights(),
        trained.get_layer("cifar_resnet8_w4").get_weights(),
        strict=True,
    ):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(PipelineError, match="does not fit the cifar_resnet backbone"):
        build_model(ModelParams(backbone="cifar_resnet", weights=str(weights)), num_classes=10)


@pytest.mark.parametrize("backbone", ["resnet50", "airbench"])
def test_the_model_standardises_its_uint8_input_with_the_cifar_statistics(backbone):
    """The regression gate cannot see a missing standardisation layer (the network's batch
    normalisation absorbs the scale on the embedded images: docs/training.md), so it is
    checked here: the CIFAR mean colour comes out as zeros, one standard deviation above it
    as ones."""
    from cifar10_mlops.model.build import CIFAR_MEAN, CIFAR_STD

    extra = {"airbench": {"widths": [8, 16, 16]}} if backbone == "airbench" else {}
    model = build_model(ModelParams(backbone=backbone, **extra), num_classes=10)
    standardize = keras.Model(model.inputs, model.get_layer("standardize").output)
    mean = np.round(np.array(CIFAR_MEAN)).astype(np.uint8)
    above = np.round(np.array(CIFAR_MEAN) + np.array(CIFAR_STD)).astype(np.uint8)
    images = np.stack([np.broadcast_to(colour, (32, 32, 3)) for colour in (mean, above)])
    out = np.asarray(standardize.predict(images, verbose=0))
    np.testing.assert_allclose(out[0].mean(axis=(0, 1)), 0.0, atol=0.01)
    np.testing.assert_allclose(out[1].mean(axis=(0, 1)), 1.0, atol=0.01)
