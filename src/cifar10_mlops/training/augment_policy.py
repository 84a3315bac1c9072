"""TrivialAugment (Müller & Hutter, 2021) on batches of uint8 images, in numpy.

Each image gets one operation, chosen uniformly from fourteen, at a strength drawn uniformly
from [0, 1] (signed operations also pick a side). No tuned policy and no search: its authors
found it as good as AutoAugment and RandAugment, whose papers measured their largest gains on
reduced CIFAR-10 (4,000 training images), the few-thousand-photo case the real-photos preset
trains on. The ranges are RandAugment's ("RA space", the milder of TrivialAugment's two).

Vectorised: the images that drew the same operation are transformed together, so a batch costs
fourteen array operations, not one Python call per image (equalize, a per-image histogram, is
the exception). Everything draws from the `rng` it is given, so the input pipeline's
(seed, epoch, batch) generator makes every batch reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FILL = 128  # gray: what the geometric operations move into the frame
MAX_SHEAR = 0.3  # of the image size per unit of the other axis
MAX_TRANSLATE = 0.3  # of the image size
MAX_ROTATE_DEGREES = 30.0
MAX_ENHANCE = 0.9  # brightness, colour, contrast, sharpness factors in 1 -+ 0.9
MAX_POSTERIZE_BITS_DROPPED = 4  # keeps 8 down to 4 bits a channel


def trivial_augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new uint8 batch: every image of `images` (N, H, W, C) after one random operation."""
    count = len(images)
    chosen = rng.integers(0, len(OPERATIONS), count)
    strength = rng.random(count)
    sign = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    out = images.copy()
    for index, operation in enumerate(OPERATIONS):
        picked = np.flatnonzero(chosen == index)
        if len(picked):
            out[picked] = operation(images[picked], strength[picked], sign[picked])
    return out


# --- geometric: each output pixel takes the nearest input pixel of an affine map of it ------


def _warp(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Each image resampled at `matrices[i] @ (x, y, 1)` for its output pixels (x, y) measured
    from the centre, nearest neighbour; pixels that come from outside are FILL."""
    count, height, width = images.shape[:3]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    grid = np.stack([xs - centre_x, ys - centre_y, np.ones_like(xs)])  # (3, H, W)
    source = np.einsum("nij,jhw->nihw", matrices, grid)  # (N, 2, H, W)
    src_x = np.rint(source[:, 0] + centre_x).astype(np.int64)
    src_y = np.rint(source[:, 1] + centre_y).astype(np.int64)
    inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
    picked = images[
        np.arange(count)[:, None, None], np.clip(src_y, 0, height - 1), np.clip(src_x, 0, width - 1)
    ]
    return np.where(inside[..., None], picked, np.uint8(FILL))


def _affine(a, b, c, d, e, f) -> np.ndarray:
    """(N, 2, 3) matrices from per-image arrays or scalars."""
    entries = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c, d, e, f)))
    return np.stack(entries, axis=-1).reshape(-1, 2, 3)


def shear_x(images, strength, sign):
    return _warp(images, _affine(1, sign * strength * MAX_SHEAR, 0, 0, 1, 0))


def shear_y(images, strength, sign):
    return _warp(images, _affine(1, 0, 0, sign * strength * MAX_SHEAR, 1, 0))


def translate_x(images, strength, sign):
    shift = sign * strength * MAX_TRANSLATE * images.shape[2]
    return _warp(images, _affine(1, 0, shift, 0, 1, 0))


def translate_y(images, strength, sign):
    shift = sign * strength * MAX_TRANSLATE * images.shape[1]
    return _warp(images, _affine(1, 0, 0, 0, 1, shift))


def rotate(images, strength, sign):
    angle = np.deg2rad(sign * strength * MAX_ROTATE_DEGREES)
    cos, sin = np.cos(angle), np.sin(angle)
    return _warp(images, _affine(cos, -sin, 0, sin, cos, 0))


# --- colour: blends with a degenerate image, PIL's ImageEnhance, and pixel-value maps ---------


def _blend(images: np.ndarray, degenerate: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """degenerate + factor * (image - degenerate), clipped to uint8 (factor 1: the image)."""
    factor = factor.reshape(-1, 1, 1, 1)
    mixed = degenerate + factor * (images.astype(np.float32) - degenerate)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _enhance_factor(strength, sign):
    return 1.0 + sign * strength * MAX_ENHANCE


def _gray(images: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma rounded to whole levels as PIL's "L" image has it, (N, H, W, 1) float32
    (RGB input; other channel counts are their mean)."""
    if images.shape[-1] != 3:
        return np.rint(images.astype(np.float32).mean(axis=-1, keepdims=True))
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.rint(images.astype(np.float32) @ weights)[..., None]


def brightness(images, strength, sign):
    return _blend(images, np.zeros((1, 1, 1, 1), np.float32), _enhance_factor(strength, sign))


def color(images, strength, sign):
    return _blend(images, _gray(images), _enhance_factor(strength, sign))


def contrast(images, strength, sign):
    mean = np.rint(_gray(images).mean(axis=(1, 2, 3), keepdims=True))  # PIL: a whole level
    return _blend(images, mean, _enhance_factor(strength, sign))


def sharpness(images, strength, sign):
    """Blend with a smoothed copy (PIL's 3x3 SMOOTH kernel; the border keeps its pixels)."""
    pixels = images.astype(np.float32)
    smooth = pixels.copy()
    kernel = np.ones((3, 3), np.float32)
    kernel[1, 1] = 5.0
    kernel /= kernel.sum()
    height, width = images.shape[1:3]
    inner = sum(
        kernel[dy, dx] * pixels[:, dy : height - 2 + dy, dx : width - 2 + dx]
        for dy in range(3)
        for dx in range(3)
    )
    smooth[:, 1:-1, 1:-1] = inner
    return _blend(images, smooth, _enhance_factor(strength, sign))


def posterize(images, strength, sign):
    dropped = np.rint(strength * MAX_POSTERIZE_BITS_DROPPED).astype(np.uint8)
    masks = (0xFF << dropped).astype(np.uint8).reshape(-1, 1, 1, 1)
    return images & masks


def solarize(images, strength, sign):
    """Pixels at or above the threshold inverted; strength 0 leaves the image as it is."""
    threshold = (256 - np.rint(strength * 256)).reshape(-1, 1, 1, 1)
    return np.where(images >= threshold, 255 - images, images)


def autocontrast(images, strength, sign):
    """Each channel stretched to 0..255 (a flat channel stays)."""
    low = images.min(axis=(1, 2), keepdims=True).astype(np.float32)
    high = images.max(axis=(1, 2), keepdims=True).astype(np.float32)
    span = np.where(high > low, high - low, 1.0)
    stretched = (images - low) * (255.0 / span)
    out = np.where(high > low, stretched, images)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def equalize(images, strength, sign):
    """Each channel's histogram equalised (PIL's ImageOps.equalize)."""
    out = images.copy()
    for image in range(len(images)):
        for channel in range(images.shape[-1]):
            out[image, ..., channel] = _equalize_channel(images[image, ..., channel])
    return out


def _equalize_channel(plane: np.ndarray) -> np.ndarray:
    histogram = np.bincount(plane.ravel(), minlength=256)
    nonzero = histogram[histogram > 0]
    step = (nonzero.sum() - nonzero[-1]) // 255
    if step == 0:
        return plane
    lookup = (np.cumsum(histogram) - histogram + step // 2) // step
    return np.clip(lookup, 0, 255).astype(np.uint8)[plane]


def identity(images, strength, sign):
    return images


Operation = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
OPERATIONS: tuple[Operation, ...] = (
    identity,
    shear_x,
    shear_y,
    translate_x,
    translate_y,
    rotate,
    brightness,
    color,
    contrast,
    sharpness,
    posterize,
    solarize,
    autocontrast,
    equalize,
)
