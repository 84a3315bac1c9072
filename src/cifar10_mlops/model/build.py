"""The classifier: uint8 images in, class probabilities out.

Everything that depends on the recipe lives inside the model (cast, resize, the backbone's
own input preprocessing, augmentation), so a saved model.keras takes raw uint8 32x32 RGB
images and nothing outside it needs to know how it was trained.
"""

from __future__ import annotations

from pathlib import Path

from cifar10_mlops.core.config import IMAGE_SHAPE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import ModelParams
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.model.airbench import airbench_net, whiten_from_images
from cifar10_mlops.model.cifar_resnet import cifar_resnet

layers = keras.layers

# Per-channel statistics of the CIFAR-10 training set (RGB, 0..255), the usual constants for
# training from scratch; with ImageNet weights the backbone's own preprocessing is used instead.
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)
# keras.applications.{resnet50,vgg16}.preprocess_input ("caffe" mode): RGB -> BGR, minus the
# ImageNet mean in BGR order, no scaling.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="cifar10_mlops")
class CaffePreprocess(keras.layers.Layer):
    """keras.applications' caffe-mode preprocess_input as a layer, so it is saved with the model."""

    def call(self, inputs):
        bgr = keras.ops.flip(keras.ops.cast(inputs, self.compute_dtype), axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


# Trained from scratch on 32x32 photos (no ImageNet weights exist for them).
COMPACT_BACKBONES = {
    "cifar_resnet": lambda shape, p: cifar_resnet(
        shape, p.cifar_resnet.depth, p.cifar_resnet.width
    ),
    "airbench": lambda shape, p: airbench_net(
        shape, tuple(p.airbench.widths), whiten_bias_learns=p.airbench.whiten_bias_epochs > 0
    ),
}

BACKBONES = {
    "resnet50": keras.applications.ResNet50,
    "vgg16": keras.applications.VGG16,
}


def build_backbone(params: ModelParams) -> keras.Model:
    size = params.input_size
    weights: str | None = None if params.weights == "none" else params.weights
    if params.backbone in COMPACT_BACKBONES:
        return _compact_backbone(params, size, weights)
    if weights not in (None, "imagenet"):
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise PipelineError(
                f"params.yaml: model.weights '{weights}' is not a file; give a path to a "
                f"{params.backbone} weights file (include_top=False), 'imagenet' or 'none'"
            )
        weights = str(weights_path)
    try:
        return BACKBONES[params.backbone](
            include_top=False, weights=weights, input_shape=(size, size, 3)
        )
    except ValueError as exc:
        raise PipelineError(
            f"params.yaml: model.weights '{params.weights}' does not fit the {params.backbone} "
            f"backbone at {size}px ({str(exc).splitlines()[0][:160]}); use weights saved from "
            f"keras.applications.{BACKBONES[params.backbone].__name__}(include_top=False)"
        ) from None
    except Exception as exc:  # keras' get_file raises a bare Exception on a failed fetch
        if weights == "imagenet":
            raise PipelineError(
                f"model.weights 'imagenet': could not fetch the ImageNet weights ({type(exc).__name__}); "
                "connect to the internet once (Keras caches them in ~/.keras/models) or set "
                "model.weights to a local weights file"
            ) from None
        raise


def _compact_backbone(params: ModelParams, size: int, weights: str | None) -> keras.Model:
    if weights == "imagenet":
        raise PipelineError(
            "params.yaml: model.weights 'imagenet' does not exist for model.backbone "
            f"'{params.backbone}'; use 'none', a weights file, or backbone resnet50/vgg16"
        )
    backbone = COMPACT_BACKBONES[params.backbone]((size, size, 3), params)
    if weights:
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise PipelineError(
                f"params.yaml: model.weights '{weights}' is not a file; give a path to a "
                f"{params.backbone} weights file, or 'none'"
            )
        try:
            backbone.load_weights(weights_path)
        except ValueError as exc:
            raise PipelineError(
                f"params.yaml: model.weights '{weights}' does not fit the {params.backbone} "
                f"backbone ({str(exc).splitlines()[0][:160]}); use weights saved from the same "
                "depth and widths"
            ) from None
    return backbone


def _normalize(x, params: ModelParams):
    """uint8 -> float, standardised the way the backbone's weights expect."""
    if params.weights == "none" or params.backbone in COMPACT_BACKBONES:  # trained on CIFAR
        x = layers.Normalization(
            mean=list(CIFAR_MEAN), variance=[s * s for s in CIFAR_STD], name="standardize"
        )(x)
    else:
        x = CaffePreprocess(name="backbone_preprocess")(x)
    return x


def _head(features, params: ModelParams, num_classes: int):
    if params.head == "gap_dense":
        x = layers.GlobalAveragePooling2D(name="gap")(features)
        x = layers.Dropout(params.dropout, name="head_dropout")(x)
    elif params.head == "upsample_dense":
        # The Kaggle seed: upsampled input (model.input_size), then flatten + BN/dense/dropout.
        x = layers.Flatten(name="flatten")(features)
        x = layers.BatchNormalization(name="head_bn1")(x)
        x = layers.Dense(params.dense_units, activation="relu", name="head_dense")(x)
        x = layers.Dropout(params.dropout, name="head_dropout")(x)
        x = layers.BatchNormalization(name="head_bn2")(x)
    else:  # residual_sepconv: the VGG16 seed's residual separable-conv block before pooling
        filters = params.dense_units
        shortcut = layers.Conv2D(filters, 1, padding="same", name="res_shortcut")(features)
        x = layers.SeparableConv2D(filters, 3, padding="same", activation="relu", name="res_sep1")(
            features
        )
        x = layers.BatchNormalization(name="res_bn1")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", name="res_sep2")(x)
        x = layers.BatchNormalization(name="res_bn2")(x)
        x = layers.Activation("relu", name="res_relu")(layers.Add(name="res_add")([x, shortcut]))
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        x = layers.Dropout(params.dropout, name="head_dropout")(x)
    # float32 softmax keeps probabilities exact under mixed precision.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)


def build_model(params: ModelParams, num_classes: int) -> keras.Model:
    inputs = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="image")
    # Normalization casts the uint8 input itself, so the default model needs no custom layer.
    x = _normalize(inputs, params)
    # Augmentation happens in the tf.data input pipeline (training.py), not in the model.
    if params.input_size != IMAGE_SHAPE[0]:
        size = params.input_size
        x = layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
    backbone = build_backbone(params)
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = params.batchnorm_momentum
    if params.freeze_backbone:
        backbone.trainable = False
        # training=False keeps the frozen BatchNorm statistics fixed while the head learns.
        features = backbone(x, training=False)
    else:
        features = backbone(x)
    outputs = _head(features, params, num_classes)
    return keras.Model(inputs, outputs, name=f"{params.backbone}_{params.head}")


def set_from_training_images(model: keras.Model, images) -> None:
    """Layers whose weights come from the data, not from training: the airbench backbone's
    patch-whitening layer (a no-op for the other backbones). Before the first step."""
    whiten_from_images(model, images, (CIFAR_MEAN, CIFAR_STD))


def load_model(path: Path) -> keras.Model:
    """Load a saved model.keras (the custom layers above are registered by importing this module)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: model file not found; run `dvc repro` to train one")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:
        raise PipelineError(
            f"{path}: cannot load the model ({type(exc).__name__}); retrain it"
        ) from None
