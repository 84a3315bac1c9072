"""A compact CIFAR-style ResNet (He et al. 2016, "Deep Residual Learning", section 4.2).

ImageNet ResNet50 shrinks a 32x32 image to 1x1 before its last stage (a 7x7 stride-2 stem and a
max pool): most of its 23.6M weights see almost no spatial structure. The CIFAR variant keeps
full resolution in its first stage: a 3x3 stem, then three stages of n basic blocks with
width, 2x width and 4x width filters (stride 2 between stages), 6n+2 layers in all. ResNet-20
(width 16) has 0.27M weights, so it learns from a few thousand photos on a CPU.
"""

from __future__ import annotations

from cifar10_mlops.core.quiet_tensorflow import keras

layers = keras.layers


def _conv_bn(x, filters: int, stride: int, name: str, relu: bool = True):
    x = layers.Conv2D(
        filters,
        3,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters: int, stride: int, name: str):
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        # A 1x1 projection where the shape changes (option B of the paper).
        shortcut = layers.Conv2D(
            filters,
            1,
            strides=stride,
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"{name}_proj_conv",
        )(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    x = _conv_bn(x, filters, stride, f"{name}_1")
    x = _conv_bn(x, filters, 1, f"{name}_2", relu=False)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(x)


def cifar_resnet(
    input_shape: tuple[int, int, int], depth: int = 20, width: int = 16
) -> keras.Model:
    """Feature extractor (no pooling, no classifier), like keras.applications' include_top=False."""
    blocks = (depth - 2) // 6
    inputs = keras.Input(shape=input_shape, name="features_input")
    x = _conv_bn(inputs, width, 1, "stem")
    for stage in range(3):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, width * 2**stage, stride, f"stage{stage + 1}_block{block + 1}")
    return keras.Model(inputs, x, name=f"cifar_resnet{depth}_w{width}")
