"""Seeded synthetic stand-in for Kaggle's CIFAR-10 train set, for offline runs and tests.

Writes the same layout Kaggle ships (train.7z holding train/<id>.png, and trainLabels.csv
with `id,label`), so the extract and prepare stages cannot tell it from the real files.

Each class is a combination of a shape, a texture and a hue, drawn under nuisance variation
(position, scale, rotation, colour jitter, brightness, gradient background, pixel noise).
Neighbouring hues overlap, so colour alone does not separate the classes: shape and texture
must be learnt too.

The difficulty is chosen for the main job's budget (3 minutes for `dvc repro` on 2 CPU cores
with ResNet50, see docs/training.md): an earlier, harder draw (hues replaced at random a
quarter of the time, textures from a shared pool 30 % of the time, up to three distractors,
more noise) left ResNet50 at 0.41 accuracy after 6 epochs on 3,000 images; this one reaches
0.56 after 6 epochs on 2,000 (same optimizer and schedule): a clear margin above the gate,
while a broken pipeline (shuffled or shifted labels, no normalisation, swapped colour
channels, scrambled pixels) still falls below it.
"""

from __future__ import annotations

import colorsys
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import py7zr
from PIL import Image

from cifar10_mlops.core.config import CLASS_NAMES, IMAGE_SHAPE, LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.errors import PipelineError

NUM_CLASSES = len(CLASS_NAMES)
HEIGHT, WIDTH, CHANNELS = IMAGE_SHAPE

# Separate seed streams, so the label draw and the image draw never share random numbers.
_LABEL_STREAM = 0
_IMAGE_STREAM = 1

# Same codec as Kaggle's archive, at the fastest preset: the noisy PNGs are already deflated
# and barely shrink (about 99 %) at any preset, while preset 0 runs ~4x faster than preset 1
# and far faster than py7zr's default (x86 BCJ + preset 7).
ARCHIVE_FILTERS = [{"id": py7zr.FILTER_LZMA2, "preset": 0}]
# py7zr stamps members with the current time; a fixed stamp keeps the archive byte-identical
# for the same seed and count, so DVC sees an unchanged output. 2000-01-01T00:00:00Z as
# Windows FILETIME (100 ns ticks since 1601-01-01).
_FIXED_FILETIME = 125911584000000000

# Pixel-centre coordinates, shared by every drawing call.
_Y, _X = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32) + 0.5

Mask = np.ndarray  # bool (HEIGHT, WIDTH)


# --- shapes, in object coordinates u, v where the object spans roughly [-1, 1] -------------


def _disc(u: np.ndarray, v: np.ndarray) -> Mask:
    return u * u + v * v < 0.85**2


def _ring(u: np.ndarray, v: np.ndarray) -> Mask:
    r2 = u * u + v * v
    return (r2 > 0.5**2) & (r2 < 0.9**2)


def _square_outline(u: np.ndarray, v: np.ndarray) -> Mask:
    box = np.maximum(np.abs(u), np.abs(v))
    return (box > 0.5) & (box < 0.85)


def _triangle(u: np.ndarray, v: np.ndarray) -> Mask:
    # Apex up (negative v is up in image coordinates), base at v = 0.7.
    return (v < 0.7) & (v > -0.9 + 1.6 * np.abs(u) / 0.95)


def _plus(u: np.ndarray, v: np.ndarray) -> Mask:
    au, av = np.abs(u), np.abs(v)
    return ((au < 0.28) & (av < 0.95)) | ((av < 0.28) & (au < 0.95))


def _bars(u: np.ndarray, v: np.ndarray) -> Mask:
    # Three horizontal bars with two gaps, inside a 1.7-wide box.
    inside = (np.abs(u) < 0.9) & (np.abs(v) < 0.85)
    band = np.floor((v + 0.85) / 0.34).astype(np.int32)
    return inside & (band % 2 == 0)


def _diagonal_stripes(u: np.ndarray, v: np.ndarray) -> Mask:
    inside = (np.abs(u) < 0.85) & (np.abs(v) < 0.85)
    return inside & (np.mod(u + v, 0.6) < 0.3)


def _checker(u: np.ndarray, v: np.ndarray) -> Mask:
    inside = (np.abs(u) < 0.8) & (np.abs(v) < 0.8)
    cell = np.floor((u + 0.8) / 0.4).astype(np.int32) + np.floor((v + 0.8) / 0.4).astype(np.int32)
    return inside & (cell % 2 == 0)


def _cross_x(u: np.ndarray, v: np.ndarray) -> Mask:
    a, b = np.abs(u - v), np.abs(u + v)
    return ((a < 0.35) & (b < 1.3)) | ((b < 0.35) & (a < 1.3))


def _two_blobs(u: np.ndarray, v: np.ndarray) -> Mask:
    left = (u + 0.5) ** 2 + v * v < 0.4**2
    right = (u - 0.5) ** 2 + v * v < 0.4**2
    return left | right


# --- textures: brightness modulation in [0, 1] inside the object --------------------------

TEXTURES = ("flat", "stripes", "dots", "gradient", "noise")


def _texture(name: str, u: np.ndarray, v: np.ndarray, angle: float, rng: np.random.Generator):
    if name == "flat":
        return np.ones_like(u)
    if name == "stripes":
        along = u * np.cos(angle) + v * np.sin(angle)
        return 0.5 + 0.5 * np.sin(2 * np.pi * 2.2 * along)
    if name == "dots":
        return ((np.sin(7.0 * u) * np.sin(7.0 * v)) > 0.25).astype(np.float32)
    if name == "gradient":
        return np.clip(0.5 + 0.5 * (u * np.cos(angle) + v * np.sin(angle)), 0.0, 1.0)
    # "noise": speckle at the pixel level
    return rng.random(u.shape, dtype=np.float32)


# --- class table ---------------------------------------------------------------------------

# (shape, preferred texture, texture angle, hue centre); index = label, as in CLASS_NAMES.
# Hue centres are spread around the wheel, some only 0.08 apart, and jittered (HUE_SPREAD), so
# neighbouring classes overlap in colour.
CLASS_DESIGN: tuple[tuple[Callable[[np.ndarray, np.ndarray], Mask], str, float, float], ...] = (
    (_disc, "gradient", 0.0, 0.58),  # airplane
    (_ring, "flat", 0.0, 0.00),  # automobile
    (_square_outline, "flat", 0.0, 0.10),  # bird
    (_triangle, "stripes", np.pi / 2, 0.30),  # cat
    (_plus, "dots", 0.0, 0.70),  # deer
    (_bars, "flat", 0.0, 0.20),  # dog
    (_diagonal_stripes, "noise", 0.0, 0.40),  # frog
    (_checker, "flat", 0.0, 0.80),  # horse
    (_cross_x, "stripes", 0.0, 0.50),  # ship
    (_two_blobs, "dots", 0.0, 0.90),  # truck
)
assert len(CLASS_DESIGN) == NUM_CLASSES

# The draw's difficulty (see the module docstring). At 1.0 a probability still takes its
# random draw, so the other nuisances of an image do not change with these settings.
PREFERRED_TEXTURE_PROB = 1.0  # otherwise a texture from the shared pool
CLASS_HUE_PROB = 1.0  # otherwise any hue
HUE_SPREAD = 0.03  # std of the hue jitter around the class centre (hue wheel = 1.0)
SCALE_RANGE = (0.65, 1.2)  # object size relative to an 11-pixel radius
NOISE_STD_RANGE = (0.01, 0.02)  # Gaussian pixel noise, in [0, 1] intensity units
CLUTTER_RANGE = (0, 0)  # distractors per image, inclusive


# --- drawing -------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _object_coords(cx: float, cy: float, scale: float, angle: float):
    dx, dy = _X - cx, _Y - cy
    c, s = np.cos(angle), np.sin(angle)
    return (c * dx + s * dy) / scale, (-s * dx + c * dy) / scale


def _background(rng: np.random.Generator, mean_value: float) -> np.ndarray:
    """A smooth linear gradient between two random colours, along a random direction."""
    start = _hsv(
        rng.random(), rng.uniform(0.0, 0.6), np.clip(mean_value + rng.uniform(-0.12, 0.12), 0, 1)
    )
    end = _hsv(
        rng.random(), rng.uniform(0.0, 0.6), np.clip(mean_value + rng.uniform(-0.12, 0.12), 0, 1)
    )
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((_X - WIDTH / 2) * np.cos(angle) + (_Y - HEIGHT / 2) * np.sin(angle)) / WIDTH + 0.5
    ramp = np.clip(ramp, 0.0, 1.0)[..., None]
    return (1 - ramp) * start + ramp * end


def _draw_clutter(image: np.ndarray, rng: np.random.Generator) -> None:
    """A few small distractors from one pool shared by all classes, so they carry no label."""
    for _ in range(rng.integers(CLUTTER_RANGE[0], CLUTTER_RANGE[1] + 1)):
        colour = _hsv(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0))
        cx, cy = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
        kind = rng.integers(3)
        if kind == 0:  # small dot
            mask = (_X - cx) ** 2 + (_Y - cy) ** 2 < rng.uniform(1.5, 3.0) ** 2
        elif kind == 1:  # small square
            half = rng.uniform(1.0, 2.5)
            mask = (np.abs(_X - cx) < half) & (np.abs(_Y - cy) < half)
        else:  # short line segment
            u, v = _object_coords(cx, cy, 1.0, rng.uniform(0, np.pi))
            mask = (np.abs(u) < rng.uniform(2.0, 4.0)) & (np.abs(v) < 0.6)
        image[mask] = colour


def render_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """One (32, 32, 3) uint8 image of class `label`, every nuisance drawn from `rng`."""
    shape, preferred_texture, texture_angle, hue_centre = CLASS_DESIGN[label]

    # Keep object and background apart in brightness, so the shape is usually visible:
    # brighter than a dark background, darker than a light one.
    background_value = rng.uniform(0.15, 0.85)
    contrast = rng.uniform(0.25, 0.5)
    if background_value < 0.5:
        object_value = background_value + contrast
    else:
        object_value = background_value - contrast
    image = _background(rng, background_value)
    _draw_clutter(image, rng)

    hue = hue_centre + rng.normal(0, HUE_SPREAD) if rng.random() < CLASS_HUE_PROB else rng.random()
    colour = _hsv(hue, rng.uniform(0.45, 1.0), object_value)

    cx, cy = rng.uniform(9, WIDTH - 9), rng.uniform(9, HEIGHT - 9)
    scale = 11.0 * rng.uniform(*SCALE_RANGE)
    angle = rng.uniform(-np.pi / 9, np.pi / 9)
    u, v = _object_coords(cx, cy, scale, angle)
    mask = shape(u, v)

    texture = (
        preferred_texture
        if rng.random() < PREFERRED_TEXTURE_PROB
        else TEXTURES[rng.integers(len(TEXTURES))]
    )
    if texture != preferred_texture:
        texture_angle = rng.uniform(0, np.pi)
    shade = _texture(texture, u, v, texture_angle, rng)
    # Texture darkens toward 55 % of the object colour: visible, yet the colour stays the same.
    shaded = colour * (0.55 + 0.45 * shade)[..., None]
    image[mask] = shaded[mask]

    image += rng.normal(0.0, rng.uniform(*NOISE_STD_RANGE), size=image.shape).astype(np.float32)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


# --- labels --------------------------------------------------------------------------------


def _block_labels(block: int, seed: int) -> np.ndarray:
    """Labels of ids 10*block+1 .. 10*block+10: a seeded permutation of the ten classes.

    So classes are balanced to within one image for any count, the order is shuffled, and a
    label never depends on how many images are generated.
    """
    return np.random.default_rng([seed, _LABEL_STREAM, block]).permutation(NUM_CLASSES)


def _check_args(count: int, seed: int) -> None:
    if not isinstance(count, int | np.integer) or isinstance(count, bool) or count < 1:
        raise PipelineError(f"synthetic image count must be a positive integer, got {count!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise PipelineError(f"synthetic seed must be a non-negative integer, got {seed!r}")


def iter_images(count: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """(label, image) for ids 1..count, one at a time, so 50,000 never sit in memory."""
    _check_args(count, seed)  # here, not in the generator: bad input fails at the call
    return _images(count, seed)


def _images(count: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    for index in range(count):
        block, offset = divmod(index, NUM_CLASSES)
        if offset == 0:
            block_labels = _block_labels(block, seed)
        label = int(block_labels[offset])
        rng = np.random.default_rng([seed, _IMAGE_STREAM, index])
        yield label, render_image(label, rng)


def generate_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` images as uint8 (count, 32, 32, 3) and their int64 labels (count,) in 0..9.

    Deterministic in (count, seed); image i depends only on (seed, i), so a smaller set is a
    prefix of a larger one.
    """
    _check_args(count, seed)
    images = np.empty((count, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    for index, (label, image) in enumerate(iter_images(count, seed)):
        images[index] = image
        labels[index] = label
    return images, labels


# --- Kaggle layout -------------------------------------------------------------------------


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _write_archive(path: Path, count: int, seed: int) -> list[int]:
    labels: list[int] = []
    with py7zr.SevenZipFile(path, mode="w", filters=ARCHIVE_FILTERS) as archive:
        for image_id, (label, image) in enumerate(iter_images(count, seed), start=1):
            archive.writestr(encode_png(image), f"train/{image_id}.png")
            member = archive.header.files_info.files[-1]
            member["lastwritetime"] = _FIXED_FILETIME
            # writestr has already compressed the bytes but py7zr keeps the buffer until
            # close; drop it so memory stays flat at 50,000 images.
            member["data"] = io.BytesIO()
            labels.append(label)
    return labels


def write_kaggle_layout(out_dir: Path, count: int, seed: int) -> None:
    """Write out_dir/train.7z and out_dir/trainLabels.csv for `count` seeded images.

    Both files are built under a temporary directory inside out_dir and moved into place
    only when complete, so an interrupted run never leaves a half-written archive.
    """
    _check_args(count, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synthetic-", suffix=".tmp", dir=out_dir))
    try:
        labels = _write_archive(staging / TRAIN_ARCHIVE, count, seed)
        rows = "".join(
            f"{image_id},{CLASS_NAMES[label]}\n" for image_id, label in enumerate(labels, start=1)
        )
        (staging / LABELS_CSV).write_text("id,label\n" + rows, encoding="utf-8", newline="\n")
        # Archive first: a reader that sees the new labels file also sees the new archive.
        os.replace(staging / TRAIN_ARCHIVE, out_dir / TRAIN_ARCHIVE)
        os.replace(staging / LABELS_CSV, out_dir / LABELS_CSV)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
