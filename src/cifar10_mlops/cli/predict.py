"""`cifar10-mlops predict`: image files or directories -> CSV of path,label,confidence,error.

MODEL is one of
- a Keras file (models/model.keras), loaded with Keras alone (MLflow is not even imported);
- a directory holding an MLflow model (its MLmodel file), e.g. from serving.save_classifier;
- an MLflow model URI: models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model,
  models:/<model id>, resolved in MLFLOW_TRACKING_URI or else the project's mlflow.db.
How each is loaded, and why --trust-model-code: tracking/model_loading.py.

Pictures: any format Pillow reads, decoded by data/images.py exactly as the training images
are (same modes, same pixels), turned upright by their EXIF orientation. Pictures that are not
32x32 are resized whole to 32x32 (not cropped: a non-square picture is squeezed, so crop it to
the object first for the best result). Anything that is not a regular file gets a row with
the reason.

One row per file, in the order found. A file that cannot be read gets a row with an empty
label and confidence and a one-line reason in `error`, and the others are still predicted;
the run fails (exit 2, nothing written) when no image at all could be predicted, or when the
model gives a confidence that is not a finite number (NaN weights), as evaluate refuses them.

The CSV is UTF-8 and safe to open in a spreadsheet: a cell starting with = + - @ or a tab or
carriage return (which a spreadsheet runs as a formula) gets a leading `'`; a file name whose
bytes are not UTF-8 keeps them as \\xNN escapes, and a carriage return in one is written \\r
(docs/predict.md).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import numpy as np
from PIL import UnidentifiedImageError

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.images import read_picture
from cifar10_mlops.tracking.model_loading import Classifier, load_classifier

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The first three columns are the documented contract (docs/predict.md); `error` is empty for
# predicted rows.
HEADER = ("path", "label", "confidence", "error")
# What a spreadsheet takes for the start of a formula (OWASP's list for CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
DEFAULT_BATCH_SIZE = 256

# --- finding and reading pictures -------------------------------------------------------


def find_images(paths: Iterable[Path]) -> list[Path]:
    """Files as given (whatever their suffix); directories searched recursively for images."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Not only regular files: a FIFO or a symlink loop named like an image gets its row
            # with the reason (read_picture refuses it) instead of vanishing from the output.
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
                )
            )
        elif os.path.lexists(path):  # a file, or something that is not one: a row either way
            found.append(path)
        else:
            raise PipelineError(
                f"{path}: no such file or directory; give image files or directories"
            )
    return found


# Any picture -> uint8 (32, 32, 3) RGB: the training path's decoder (data/images.py).
load_image = read_picture


def unreadable_reason(exc: Exception) -> str:
    """A short, one-line reason for the CSV's error column."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (unknown format or corrupt header)"
    if isinstance(exc, PipelineError):  # read_picture's own reasons: one line already
        return str(exc)
    detail = " ".join(str(exc).split())[:120]  # one line, short
    return f"cannot read the image ({type(exc).__name__}{': ' + detail if detail else ''})"


# --- the command ------------------------------------------------------------------------


def predict_rows(
    classify: Classifier, images: list[Path], batch_size: int, progress: bool = False
) -> list[tuple[str, str, str, str]]:
    """One CSV row per image, in order; unreadable files get their reason in `error`.

    Batch by batch: only one batch of pictures is in memory beside the one being decoded. A
    thread decodes the next batch while the model predicts this one (Pillow's decoders and
    the model both release the GIL), so reading files and predicting overlap.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
    rows: list[tuple[str, str, str, str]] = []
    with (
        tqdm(total=len(images), unit="img", file=sys.stderr, disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder,
    ):
        upcoming = decoder.submit(_decode_batch, batches[0]) if batches else None
        for index, batch in enumerate(batches):
            assert upcoming is not None
            decoded = upcoming.result()
            if index + 1 < len(batches):
                upcoming = decoder.submit(_decode_batch, batches[index + 1])
            rows.extend(_classify_batch(classify, batch, *decoded))
            bar.update(len(batch))
    return rows


def _decode_batch(paths: list[Path]) -> tuple[list[tuple[str, str, str, str] | None], list]:
    """(rows with None where a picture was read, the pictures read), in input order."""
    rows: list[tuple[str, str, str, str] | None] = []
    arrays = []
    for path in paths:
        try:
            arrays.append(load_image(path))
        # Pillow raises OSError, SyntaxError, ValueError, EOFError, DecompressionBombError...
        # for broken files; one bad file must not stop the others.
        except Exception as exc:
            rows.append((str(path), "", "", unreadable_reason(exc)))
        else:
            rows.append(None)  # filled in by _classify_batch, keeping the input order
    return rows, arrays


def _classify_batch(
    classify: Classifier,
    paths: list[Path],
    rows: list[tuple[str, str, str, str] | None],
    arrays: list,
) -> list[tuple[str, str, str, str]]:
    if arrays:
        positions = [position for position, row in enumerate(rows) if row is None]
        labels, confidences = classify(np.stack(arrays))
        confidences = np.asarray(confidences, dtype=np.float64)
        finite = np.isfinite(confidences)
        if not finite.all():  # NaN weights print `airplane,nan` rows as if all were well
            first = positions[int(np.argmin(finite))]
            raise PipelineError(
                f"{paths[first]}: the model's confidence is not a finite number "
                f"({confidences[np.argmin(finite)]}): its weights are broken (did training "
                "diverge?); retrain it or use another model. Nothing was written"
            )
        for position, label, confidence in zip(positions, labels, confidences, strict=True):
            rows[position] = (str(paths[position]), label, f"{float(confidence):.6f}", "")
    return cast(list[tuple[str, str, str, str]], rows)  # every None was filled in


def predict_to_csv(
    model: str,
    paths: list[Path],
    output: Path | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    quiet: bool = False,
    trust_model_code: bool = False,
    tta: bool | None = None,
) -> int:
    if output is not None and (output.is_dir() or output.name in ("", ".", "..")):
        # Checked first: the CSV is written after every prediction is done.
        raise PipelineError(f"--output {output}: is a directory; give a file name for the CSV")
    images = find_images(paths)
    if not images:
        searched = ", ".join(str(p) for p in paths)
        raise PipelineError(
            f"no image files found in {searched} (looked for {' '.join(IMAGE_SUFFIXES)}); "
            "give image files or directories holding them"
        )
    progress = not quiet and sys.stderr.isatty()
    if not progress:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Libraries that print progress (an older Keras-flavour MLflow model does) must not mix
    # their text into a CSV written to stdout.
    with contextlib.redirect_stdout(sys.stderr):
        classify = load_classifier(str(model), trust_model_code, tta)
        rows = predict_rows(classify, images, batch_size, progress)
    failed = [row for row in rows if row[3]]
    if len(failed) == len(rows):
        path, _, _, reason = failed[0]
        raise PipelineError(
            f"none of the {len(rows)} image file(s) could be read (first: {path}: {reason}); "
            "nothing was predicted"
        )
    _write_csv(rows, output)
    if not quiet:
        print(_summary(len(rows) - len(failed), len(failed)), file=sys.stderr)
    return 0


def _write_csv(rows: list[tuple[str, str, str, str]], output: Path | None) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        from cifar10_mlops.core.atomic import atomic_write_text

        try:
            atomic_write_text(output, buffer.getvalue())
        except OSError as exc:  # e.g. a directory where the CSV's folder should be
            raise PipelineError(
                f"--output {output}: could not be written ({exc.strerror or exc}); give a "
                "writable file path"
            ) from None


def csv_cell(text: str) -> str:
    """A cell every name survives into and no spreadsheet runs: bytes of a file name that are
    not UTF-8 (Python's surrogate escapes) become \\xNN, a formula start gets a `'`, and a
    carriage return is written \\r."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "'" + text if text.startswith(FORMULA_STARTS) else text
    # The csv module quotes a field for "\n" (the line end here) but not for a lone "\r",
    # which readers take for a line end.
    return text.replace("\r", "\\r")


def _summary(predicted: int, failed: int) -> str:
    line = f"predict: {predicted} image{'s' if predicted != 1 else ''}"
    if failed:
        line += f", {failed} unreadable (see the error column)"
    return line
