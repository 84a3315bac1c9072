"""`cifar10-mlops predict`: image files or directories -> CSV of path,label,confidence."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifar10_mlops.config import CLASS_NAMES, IMAGE_SHAPE
from cifar10_mlops.errors import PipelineError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def find_images(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise PipelineError(f"{path}: no such file or directory; give image files or directories")
    return found


def load_image(path: Path) -> np.ndarray:
    """Any RGB-convertible picture -> uint8 (32, 32, 3); larger photos are downscaled."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != IMAGE_SHAPE[:2]:
            image = image.resize(IMAGE_SHAPE[:2], Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


def _batches(paths: list[Path], batch_size: int) -> Iterator[tuple[list[Path], np.ndarray]]:
    for start in range(0, len(paths), batch_size):
        good, arrays = [], []
        for path in paths[start : start + batch_size]:
            try:
                arrays.append(load_image(path))
                good.append(path)
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                print(f"warning: {path}: not a readable image ({type(exc).__name__}); skipped", file=sys.stderr)
        if good:
            yield good, np.stack(arrays)


def predict_to_csv(model_path: Path, paths: list[Path], output: Path | None, batch_size: int) -> int:
    from cifar10_mlops.model import load_model

    images = find_images(paths)
    if not images:
        raise PipelineError("no image files found in the given paths")
    model = load_model(model_path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "confidence"])
    predicted = 0
    for batch_paths, batch in _batches(images, batch_size):
        probabilities = model.predict(batch, verbose=0)
        for path, row in zip(batch_paths, probabilities, strict=True):
            best = int(np.argmax(row))
            writer.writerow([str(path), CLASS_NAMES[best], f"{float(row[best]):.6f}"])
            predicted += 1
    if predicted == 0:
        raise PipelineError("none of the given images could be read; nothing was predicted")
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        from cifar10_mlops.atomic import atomic_write_text

        atomic_write_text(output, buffer.getvalue())
    return 0
