"""One PNG member of train.7z -> a uint8 (32, 32, 3) array, whatever mode it was saved in."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifar10_mlops.core.config import IMAGE_SHAPE
from cifar10_mlops.core.errors import PipelineError


def decode_png(png: bytes, where: str) -> np.ndarray:
    """One member's bytes -> uint8 (32, 32, 3). Opened as PNG only; 32x32 only.

    What counts as a CIFAR-10 picture (docs/data-sources.md, "Image modes"):
    - 8-bit RGB: as is.
    - grayscale (L, 1-bit) and palette (P): expanded to the RGB colours a viewer shows.
    - 16-bit grayscale: the high byte of each value (convert() would clip it to white).
    - with an alpha channel (RGBA, LA, palette transparency): only if every pixel is opaque,
      then alpha is dropped. A transparent pixel has no defined colour, and compositing it
      onto an invented background would feed the model pixels nobody photographed.
    """
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            image.load()
            if image.size != IMAGE_SHAPE[:2]:
                raise PipelineError(
                    f"{where}: image is {image.size[0]}x{image.size[1]}; CIFAR-10 images are "
                    "32x32, resize it or remove it"
                )
            if image.mode == "RGB":  # the usual case, 50,000 times: no converted copy
                return np.asarray(image)
            return _to_rgb(image, where)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise PipelineError(f"{where}: not a readable PNG image; replace or remove it") from None


def _to_rgb(image: Image.Image, where: str) -> np.ndarray:
    if image.mode == "I" or image.mode.startswith("I;16"):
        high = np.asarray(image).astype(np.int64) >> 8
        image = Image.fromarray(np.clip(high, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise PipelineError(
                f"{where}: image has transparent pixels (mode {image.mode}); CIFAR-10 images "
                "are opaque RGB, flatten it onto a background or remove it"
            )
    if image.mode not in ("RGB", "RGBA", "L", "LA", "1", "P", "PA"):
        raise PipelineError(
            f"{where}: image mode {image.mode} is not 8-bit RGB, grayscale or palette; "
            "convert it to RGB or remove it"
        )
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
