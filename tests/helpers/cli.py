"""The `cifar10-mlops` command run in this process, its CSV and its one-line errors, and a
folder of pictures good and bad to predict on."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from cifar10_mlops.cli.main import main
from cifar10_mlops.cli.predict import HEADER


def write_mixed_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """Good pictures of several kinds and two bad files -> (good paths, bad paths)."""
    rng = np.random.default_rng(0)
    (folder / "nested").mkdir(parents=True)
    good = [
        folder / "a.png",
        folder / "nested" / "b.jpg",
        folder / "c.png",
        folder / "big.png",
        folder / "d.PNG",
    ]
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(good[0])
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(good[1], quality=90)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(good[2])  # grayscale
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good[3])
    opaque = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    opaque[..., 3] = 255  # RGBA, every pixel opaque: accepted as training accepts it
    Image.fromarray(opaque).save(good[4])
    corrupt, text = folder / "corrupt.png", folder / "nested" / "text.png"
    corrupt.write_bytes(good[0].read_bytes()[:400])  # a real PNG cut off after its header
    text.write_text("this is not a picture\n")
    (folder / "notes.txt").write_text("not an image suffix: never picked up from a directory")
    return good, [corrupt, text]


def read_csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and tuple(rows[0]) == HEADER
    return rows


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """The CLI in this process (fast): exit code, stdout, stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# TensorFlow 2.21 writes start-up notes from C++ (absl) straight to stderr, before and
# regardless of TF_CPP_MIN_LOG_LEVEL; they are not ours to count.
TF_CPP_NOTE = re.compile(r"^([IWE]\d{4} \d|WARNING: All log messages before absl::InitializeLog)")


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not TF_CPP_NOTE.match(line)]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: ")
    return lines[0]
