"""A tiny real Keras classifier with the product's contract: uint8 (32, 32, 3) in, ten softmax
probabilities out. Fast to build, save, log and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cifar10_mlops.core.config import CLASS_NAMES

# The product's compact backbone at its smallest (depth 8, width 8: ~20k weights): for tests
# that exercise training, tracking or the pipeline, not ResNet50 itself. Builds and traces in
# about a second where ResNet50 takes half a minute.
SMALL_BACKBONE = {"backbone": "cifar_resnet", "cifar_resnet": {"depth": 8, "width": 8}}


def tiny_keras_model_file(path: Path, seed: int = 0) -> Path:
    """A real, untrained classifier saved as a .keras file."""
    from cifar10_mlops.core.quiet_tensorflow import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3), dtype="uint8", name="image"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def keras_labels(model_file: Path, images: np.ndarray) -> tuple[list[str], np.ndarray]:
    """What the Keras model itself says: argmax class names and their probabilities."""
    from cifar10_mlops.core.quiet_tensorflow import keras

    probabilities = keras.saving.load_model(model_file).predict(images, verbose=0)
    return [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)], probabilities.max(axis=1)
