"""A small fast CIFAR network after airbench (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a
single GPU", 2024): the parts of its ablation that carry over to Keras on a CPU.

- A frozen 2x2 patch-whitening first layer: its filters are the eigenvectors of the training
  images' 2x2 patches, scaled to unit variance (and their negatives, so a ReLU-like activation
  keeps both signs). It is set from the training data before the first step
  (`whiten_from_images`) and saved with the model. With `whiten_bias_epochs` its bias learns
  for the first epochs (the optimizer stops it: training/optimization.py), the filters never.
- Three groups of conv -> max pool -> batch norm -> GELU -> conv -> batch norm -> GELU, no
  residual connections, widths (64, 256, 256) by default, then a 3x3 max pool.
- Identity ("dirac") initialisation of each conv's first input channels, so the untrained
  network passes its input through and the first epochs are not spent finding the signal.
- Batch norm without a scale (only the shift learns).

Written with keras.ops only, so the same layers run under any Keras backend.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cifar10_mlops.core.quiet_tensorflow import keras

layers = keras.layers

WHITEN_PATCH = 2  # pixels on a side of the patches the first layer whitens
WHITEN_EPSILON = 5e-4  # added to each eigenvalue: keeps the noisiest directions from exploding


@keras.saving.register_keras_serializable(package="cifar10_mlops")
class DiracInitializer(keras.initializers.Initializer):
    """He-normal noise, with the centre tap of input channel i -> output channel i set to 1."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kernel = keras.initializers.HeNormal(seed=self.seed)(shape, dtype=dtype)
        height, width, channels_in, channels_out = shape
        identity = np.zeros(shape, dtype="float32")
        for channel in range(min(channels_in, channels_out)):
            identity[height // 2, width // 2, channel, channel] = 1.0
        mask = (identity == 0).astype("float32")
        return kernel * keras.ops.convert_to_tensor(mask, dtype) + keras.ops.convert_to_tensor(
            identity, dtype
        )

    def get_config(self):
        return {"seed": self.seed}


def _conv(filters: int, name: str) -> keras.layers.Layer:
    return layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer=DiracInitializer(),
        name=name,
    )


def _norm_act(x, name: str):
    x = layers.BatchNormalization(scale=False, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.Activation("gelu", name=f"{name}_gelu")(x)


def airbench_net(
    input_shape: tuple[int, int, int], widths: tuple[int, ...], whiten_bias_learns: bool = False
) -> keras.Model:
    """Feature extractor (no classifier), like keras.applications' include_top=False."""
    channels = input_shape[-1]
    inputs = keras.Input(shape=input_shape, name="features_input")
    whiten_filters = 2 * channels * WHITEN_PATCH * WHITEN_PATCH
    whiten = layers.Conv2D(
        whiten_filters,
        WHITEN_PATCH,
        padding="valid",
        use_bias=True,
        trainable=whiten_bias_learns,
        name="whiten",
    )
    x = whiten(inputs)
    if whiten_bias_learns:
        whiten.kernel.trainable = False  # the filters stay as the training images set them
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    for group, width in enumerate(widths, start=1):
        x = _conv(width, f"group{group}_conv1")(x)
        x = layers.MaxPooling2D(2, name=f"group{group}_pool")(x)
        x = _norm_act(x, f"group{group}_1")
        x = _conv(width, f"group{group}_conv2")(x)
        x = _norm_act(x, f"group{group}_2")
    x = layers.MaxPooling2D(x.shape[1], name="final_pool")(x)
    name = "airbench_" + "_".join(str(width) for width in widths)
    return keras.Model(inputs, x, name=name)


def whitening_kernel(images: np.ndarray, channels_mean_std) -> tuple[np.ndarray, np.ndarray]:
    """The whitening layer's (kernel, bias) for these uint8 images, normalised as the model
    normalises them: eigenvectors of the 2x2 patch covariance over eigenvalue square roots,
    and their negatives; the bias centres the patches."""
    mean, std = (np.asarray(v, dtype="float64") for v in channels_mean_std)
    sample = images[: min(len(images), 10_000)].astype("float64")
    sample = (sample - mean) / std
    size = WHITEN_PATCH
    height, width = sample.shape[1] - size + 1, sample.shape[2] - size + 1
    # Every 2x2 patch, flattened in the kernel's (row, column, channel) order.
    patches = np.stack(
        [sample[:, r : r + height, c : c + width, :] for r in range(size) for c in range(size)],
        axis=3,
    ).reshape(-1, size * size * sample.shape[-1])
    patch_mean = patches.mean(axis=0)
    covariance = np.cov(patches - patch_mean, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    filters = eigenvectors / np.sqrt(eigenvalues + WHITEN_EPSILON)  # columns: one filter each
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(size, size, sample.shape[-1], -1)
    bias = -(patch_mean @ filters)
    return kernel.astype("float32"), bias.astype("float32")


def whiten_from_images(model: keras.Model, images: np.ndarray, channels_mean_std) -> bool:
    """Set the whitening layer of an airbench backbone inside `model` from training images;
    False when the model has none."""
    for layer in all_layers(model):
        if layer.name == "whiten":
            layer.set_weights(list(whitening_kernel(images, channels_mean_std)))
            return True
    return False


def all_layers(model: keras.Model) -> Iterator[keras.Layer]:
    """Every layer of `model`, those of nested models (a backbone) included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
