"""Real images and 7z archives for the data tests: seeded pixels, PNG bytes, any 7z at all."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import py7zr
from PIL import Image

from cifar10_mlops.core.config import CLASS_NAMES


def random_image(seed: int) -> np.ndarray:
    """A seeded uint8 (32, 32, 3) image."""
    return np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def encode_png(image: np.ndarray | Image.Image, mode: str | None = None) -> bytes:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if mode is not None and picture.mode != mode:
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def write_7z(
    path: Path,
    members: Iterable[tuple[str, bytes]],
    *,
    directories: Iterable[str] = (),
    symlinks: Mapping[str, str] | None = None,
    raw_names: bool = False,
) -> Path:
    """Write a real 7z archive.

    members: (member name, payload) pairs, written in order.
    directories: directory entries (written from a real empty directory on disk).
    symlinks: {member name: link target}, written (first) from a real symlink on disk.
    raw_names: py7zr's public writestr() refuses names with '..' or a leading '/'
        (check_archive_path). To build a hostile archive we call its internal _writestr(),
        which writes the same bytes minus that check -- the archive is still a genuine 7z
        that py7zr reads back with that name (the tests assert it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Directory and symlink entries are written from real ones on disk, made in a scratch
    # directory that is removed afterwards.
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch_dir:
        scratch = Path(scratch_dir)
        with py7zr.SevenZipFile(path, mode="w") as seven:
            for index, name in enumerate(directories):
                empty_dir = scratch / f"dir{index}"
                empty_dir.mkdir()
                seven.write(empty_dir, name)
            # Links before in-memory members: py7zr 1.1's write() of a symlink looks at the
            # 'origin' of earlier members, which writestr() leaves as None (AttributeError).
            for index, (name, target) in enumerate((symlinks or {}).items()):
                link = scratch / f"link{index}"
                link.symlink_to(target)
                seven.write(link, name)
            for name, payload in members:
                if raw_names:
                    seven._writestr(payload, name)
                else:
                    seven.writestr(payload, name)
    return path


def default_labels(count: int) -> dict[int, str]:
    return {i: CLASS_NAMES[(i - 1) % len(CLASS_NAMES)] for i in range(1, count + 1)}
