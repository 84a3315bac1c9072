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

# Images per call of the model without TTA.
CHUNK = 512
# With TTA the six views of a chunk go through the model in one call (on a CPU a bigger batch
# costs less per image: the served model answered 1.56x the photos per second of three calls
# of two views, docs/performance.md), so one call holds 6 * TTA_CHUNK images, never the set.
TTA_CHUNK = CHUNK // 3


def predict_probabilities(
    predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, tta: bool
) -> np.ndarray:
    """`predict` (uint8 NHWC batch -> probabilities) over `images`, with or without TTA."""
    if not tta:
        return _in_chunks(predict, images, CHUNK)
    return _in_chunks(lambda chunk: _averaged_views(predict, chunk), images, TTA_CHUNK)


def _in_chunks(
    fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, chunk: int
) -> np.ndarray:
    parts = [
        np.asarray(fn(images[start : start + chunk])) for start in range(0, len(images), chunk)
    ]
    if not parts:
        return fn(images[:0])
    return np.concatenate(parts).astype("float32")


def _averaged_views(predict, images: np.ndarray) -> np.ndarray:
    count = len(images)
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, :height, :width], padded[:, 2 : height + 2, 2 : width + 2]
    views = [images, up_left, down_right]
    # Each view beside its mirror image, all six in one call.
    batch = np.concatenate([part for view in views for part in (view, view[:, :, ::-1])])
    answers = np.asarray(predict(batch), dtype="float64")
    mirrored = [
        (
            answers[2 * i * count : (2 * i + 1) * count]
            + answers[(2 * i + 1) * count : (2 * i + 2) * count]
        )
        / 2
        for i in range(len(views))
    ]
    centre, translated = mirrored[0], (mirrored[1] + mirrored[2]) / 2
    return (centre + translated) / 2
