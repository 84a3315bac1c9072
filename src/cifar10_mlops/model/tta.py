"""Test-time augmentation (`evaluate.tta`): the class probabilities averaged over views of each
image, as in airbench's multi-crop evaluation: the image and its mirror image (weight 1/2
together), and both of them shifted one pixel up-left and one pixel down-right with reflection
at the border (1/2 together).

Evaluate, `cifar10-mlops predict` and the logged MLflow model all call `predict_probabilities`,
so the served model answers what evaluate scored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Images per call of the model: the six views of a chunk exist at once, never of the whole set.
CHUNK = 512


def predict_probabilities(
    predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, tta: bool
) -> np.ndarray:
    """`predict` (uint8 NHWC batch -> probabilities) over `images`, with or without TTA."""
    if not tta:
        return _in_chunks(predict, images)
    return _in_chunks(lambda chunk: _averaged_views(predict, chunk), images)


def _in_chunks(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    parts = [
        np.asarray(fn(images[start : start + CHUNK])) for start in range(0, len(images), CHUNK)
    ]
    if not parts:
        return fn(images[:0])
    return np.concatenate(parts).astype("float32")


def _averaged_views(predict, images: np.ndarray) -> np.ndarray:
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [padded[:, :height, :width], padded[:, 2 : height + 2, 2 : width + 2]]

    def mirrored(batch):
        # One call for a batch and its mirror image: half the calls, same result.
        both = np.asarray(predict(np.concatenate([batch, batch[:, :, ::-1]])), dtype="float64")
        return (both[: len(batch)] + both[len(batch) :]) / 2

    centre = mirrored(images)
    translated = (mirrored(shifted[0]) + mirrored(shifted[1])) / 2
    return (centre + translated) / 2
