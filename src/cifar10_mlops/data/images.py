"""One picture -> a uint8 (32, 32, 3) RGB array: the one decoder of training and predict.

- decode_png (training, a train.7z member): PNG only, exactly 32x32; the size is read from
  the PNG header before a pixel is decoded.
- read_picture (`cifar10-mlops predict`): a regular file in any format Pillow reads, its pixel
  count capped before decoding, turned upright by its EXIF orientation, resized to 32x32.
- decode_picture (the served model, tracking/serving.py): the same, from the file's bytes.

Both convert the picture's mode with the same rules (docs/data-sources.md, "Image modes"),
so a file gives the same pixels on both paths:
- 8-bit RGB: as is.
- grayscale (L, 1-bit) and palette (P), CMYK and YCbCr: the RGB colours a viewer shows.
- 16-bit grayscale: the high byte of each value (Pillow's convert() would clip it to white).
- with an alpha channel (RGBA, LA, palette transparency): only if every pixel is opaque, then
  alpha is dropped. A transparent pixel has no defined colour, and compositing it onto an
  invented background would feed the model pixels nobody photographed.
- anything else (32-bit float, ...): refused.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar10_mlops.core.config import IMAGE_SHAPE
from cifar10_mlops.core.errors import PipelineError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# signature, IHDR length (13) and type, then width and height (big-endian uint32)
_IHDR = struct.Struct(">8sI4sII")
# The signature and the IHDR chunk: fewer bytes than this cannot be a PNG.
MIN_PNG_BYTES = 33
# predict's cap on a picture, sized by the memory its decoding takes: decoding, the EXIF turn,
# the RGB conversion and the resize each hold a copy, measured at 18 bytes a pixel (8-bit RGB
# PNG) to 21 (16-bit grayscale), not the 3 of the RGB pixels alone (the old 40 MP cap took
# ~730 MiB). 512 MiB at 24 bytes a pixel: about 22 megapixels, checked on the header, after a
# JPEG's reduced-scale draft (a 12 MP phone JPEG decodes at 1/8 scale). Pillow's own check
# only warns at 89 MP. tests/data/test_picture_memory.py measures it.
MAX_DECODE_BYTES = 512 * 2**20
PEAK_BYTES_PER_PIXEL = 24
MAX_PICTURE_PIXELS = MAX_DECODE_BYTES // PEAK_BYTES_PER_PIXEL
_MODES = ("RGB", "RGBA", "L", "LA", "1", "P", "PA", "CMYK", "YCbCr")


class ImageRefused(PipelineError):
    """A picture that cannot be used; the message says why, without naming the file."""


def png_header_problem(png: bytes) -> str | None:
    """Why these bytes cannot be a 32x32 PNG, judged from the first 24 bytes; None if they can."""
    if len(png) < MIN_PNG_BYTES:
        return f"not a readable PNG image ({len(png)} bytes); replace or remove it"
    if not png.startswith(PNG_SIGNATURE):
        return "not a readable PNG image; replace or remove it"
    _, _, chunk, width, height = _IHDR.unpack_from(png)
    if chunk != b"IHDR":
        return "not a readable PNG image; replace or remove it"
    if (width, height) != IMAGE_SHAPE[:2]:
        return f"image is {width}x{height}; CIFAR-10 images are 32x32, resize it or remove it"
    return None


def decode_png(png: bytes, where: str) -> np.ndarray:
    """One train.7z member's bytes -> uint8 (32, 32, 3); `where` names it in errors."""
    problem = png_header_problem(png)  # before Pillow decodes (or even sizes) anything
    if problem:
        raise PipelineError(f"{where}: {problem}")
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            image.load()
            if image.mode == "RGB":  # the usual case, 50,000 times: no converted copy
                return np.asarray(image)
            return to_rgb(image)
    except ImageRefused as exc:
        raise PipelineError(f"{where}: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise PipelineError(f"{where}: not a readable PNG image; replace or remove it") from None


def read_picture(path: Path) -> np.ndarray:
    """A picture file for predict -> uint8 (32, 32, 3). Raises ImageRefused with the reason,
    or what Pillow raises for a file it cannot read."""
    _require_regular_file(path)
    return _picture_array(path)


def decode_picture(data: bytes) -> np.ndarray:
    """An encoded picture file's bytes (PNG, JPEG, ...) -> uint8 (32, 32, 3), exactly as
    read_picture reads the same file. Raises ImageRefused, or what Pillow raises."""
    return _picture_array(io.BytesIO(data))


def _picture_array(source) -> np.ndarray:
    with warnings.catch_warnings():
        # Pillow warns above 89 MP; MAX_PICTURE_PIXELS, checked below, is the stricter cap.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # e.g. "palette images with transparency should be converted to RGBA": handled below
        warnings.simplefilter("ignore", UserWarning)
        try:
            image = Image.open(source)
        except Image.DecompressionBombError:
            raise _too_many_pixels(None) from None
        with image:
            image.draft("RGB", IMAGE_SHAPE[:2])  # JPEG: decode at a reduced scale, much faster
            width, height = image.size
            if width * height > MAX_PICTURE_PIXELS:
                raise _too_many_pixels((width, height))
            rgb = to_rgb(ImageOps.exif_transpose(image))
    if rgb.shape[:2] != IMAGE_SHAPE[:2]:
        resized = Image.fromarray(rgb).resize(IMAGE_SHAPE[:2], Image.Resampling.BICUBIC)
        rgb = np.asarray(resized, dtype=np.uint8)
    return rgb


def to_rgb(image: Image.Image) -> np.ndarray:
    """A decoded picture in any accepted mode -> uint8 (H, W, 3); ImageRefused otherwise."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        high = np.asarray(image).astype(np.int64) >> 8
        image = Image.fromarray(np.clip(high, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise ImageRefused(
                f"image has transparent pixels (mode {image.mode}); CIFAR-10 images are opaque "
                "RGB, flatten it onto a background or remove it"
            )
    if image.mode not in _MODES:
        raise ImageRefused(
            f"image mode {image.mode} is not 8-bit RGB, grayscale or palette; convert it to RGB "
            "or remove it"
        )
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _require_regular_file(path: Path) -> None:
    # open() on a FIFO blocks until a writer comes; a device may never end.
    mode = os.stat(path).st_mode  # follows links; a loop raises OSError (ELOOP)
    if not stat.S_ISREG(mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise ImageRefused(f"{kind}; give image files")


def _too_many_pixels(size: tuple[int, int] | None) -> ImageRefused:
    shown = f"{size[0]}x{size[1]} pixels" if size else "too many pixels for Pillow"
    return ImageRefused(
        f"image is {shown}, above the cap of {MAX_PICTURE_PIXELS} pixels; shrink it first"
    )
