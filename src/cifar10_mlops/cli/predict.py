"""`cifar10-mlops predict`: image files or directories -> CSV of path,label,confidence,error.

MODEL is one of
- a Keras file (models/model.keras), loaded with Keras alone (MLflow is not even imported);
- a directory holding an MLflow model (its MLmodel file), e.g. from serving.save_classifier;
- an MLflow model URI: models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model,
  models:/<model id>, resolved in MLFLOW_TRACKING_URI or else the project's mlflow.db.

Pictures: any format Pillow reads, turned upright by their EXIF orientation and converted to
RGB. Pictures that are not 32x32 are resized whole to 32x32 (not cropped: a non-square picture
is squeezed, so crop it to the object first for the best result).

One row per file, in the order found. A file that cannot be read gets a row with an empty
label and confidence and a one-line reason in `error`, and the others are still predicted;
the run fails (exit 2, nothing written) only when no image at all could be predicted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar10_mlops.core.config import CLASS_NAMES, IMAGE_SHAPE
from cifar10_mlops.core.errors import PipelineError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The first three columns are the documented contract (docs/predict.md); `error` is empty for
# predicted rows.
HEADER = ("path", "label", "confidence", "error")
DEFAULT_BATCH_SIZE = 256

# images uint8 (N, 32, 32, 3) -> (labels, confidences), one of each per image
Classifier = Callable[[np.ndarray], tuple[list[str], np.ndarray]]


# --- finding and reading pictures -------------------------------------------------------


def find_images(paths: Iterable[Path]) -> list[Path]:
    """Files as given (whatever their suffix); directories searched recursively for images."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise PipelineError(
                f"{path}: no such file or directory; give image files or directories"
            )
    return found


def load_image(path: Path) -> np.ndarray:
    """Any picture Pillow reads -> uint8 (32, 32, 3) RGB."""
    with warnings.catch_warnings():
        # e.g. "palette images with transparency should be converted to RGBA": noise here
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            image.draft("RGB", IMAGE_SHAPE[:2])  # JPEG: decode at a reduced scale, much faster
            rgb = ImageOps.exif_transpose(image).convert("RGB")
            if rgb.size != IMAGE_SHAPE[:2]:
                rgb = rgb.resize(IMAGE_SHAPE[:2], Image.Resampling.BICUBIC)
            return np.asarray(rgb, dtype=np.uint8)


def unreadable_reason(exc: Exception) -> str:
    """A short, one-line reason for the CSV's error column."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (unknown format or corrupt header)"
    detail = " ".join(str(exc).split())[:120]  # one line, short
    return f"cannot read the image ({type(exc).__name__}{': ' + detail if detail else ''})"


# --- models -----------------------------------------------------------------------------

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # 2+ letters: never a Windows drive


def load_classifier(model: str) -> Classifier:
    """A Keras file, an MLflow model directory or an MLflow model URI -> a Classifier."""
    path = Path(model)
    if path.is_dir():
        if not (path / "MLmodel").is_file():
            raise PipelineError(
                f"{model}: a directory without an MLmodel file; give a .keras file, an MLflow "
                "model directory or an MLflow URI such as models:/<name>@<alias>"
            )
        return _mlflow_classifier(model)
    if not path.exists() and _URI_SCHEME.match(model):
        return _mlflow_classifier(model)
    if not path.is_file():  # checked before Keras is imported: a quick, quiet answer
        raise PipelineError(
            f"{model}: model file not found; run `dvc repro` to train one, or give an MLflow "
            "model URI such as models:/<name>@<alias>"
        )
    return _keras_classifier(path)


def _keras_classifier(path: Path) -> Classifier:
    from cifar10_mlops.model.build import load_model

    keras_model = load_model(path)

    def classify(images: np.ndarray) -> tuple[list[str], np.ndarray]:
        probabilities = keras_model.predict(images, batch_size=len(images), verbose=0)
        return labels_from_probabilities(probabilities, str(path))

    return classify


def _mlflow_classifier(uri: str) -> Classifier:
    import mlflow.pyfunc

    from cifar10_mlops.tracking.secrets import redact_credentials
    from cifar10_mlops.tracking.store import tracking_uri

    store = tracking_uri()
    if uri.startswith(("models:", "runs:")):
        _require_store(uri, store)
    mlflow.set_tracking_uri(store)
    try:
        pyfunc_model = mlflow.pyfunc.load_model(uri)
    except Exception as exc:  # MLflow raises many kinds; every one means "cannot use this"
        # Redacted: the store URI, and MLflow's own message, may carry a password.
        message = (
            f"{uri}: cannot load the MLflow model ({type(exc).__name__}: {_first_line(exc)}); "
            "check the URI (models:/<name>@<alias>, models:/<name>/<version>, "
            f"runs:/<run id>/model) and the tracking store {store}"
        )
        raise PipelineError(redact_credentials(message)) from exc

    def classify(images: np.ndarray) -> tuple[list[str], np.ndarray]:
        return labels_from_pyfunc_output(pyfunc_model.predict(images), uri)

    return classify


def _require_store(uri: str, store: str) -> None:
    """Refuse early when the default sqlite store is missing (MLflow would create an empty one)."""
    prefix = "sqlite:///"
    if not store.startswith(prefix):
        return
    database = Path(store[len(prefix) :].split("?", 1)[0])
    if not database.is_file():
        raise PipelineError(
            f"{uri}: no MLflow store at {database}; run `dvc repro` to log a model, "
            "or set MLFLOW_TRACKING_URI to the store that holds it"
        )


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else "no details"


def labels_from_probabilities(probabilities, model: str) -> tuple[list[str], np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(CLASS_NAMES):
        raise PipelineError(
            f"{model}: the model outputs shape {probabilities.shape}, not {len(CLASS_NAMES)} "
            "class probabilities per image; give a CIFAR-10 classifier"
        )
    best = probabilities.argmax(axis=1)
    return [CLASS_NAMES[i] for i in best], probabilities[np.arange(len(best)), best]


def labels_from_pyfunc_output(output, model: str) -> tuple[list[str], np.ndarray]:
    """The classifier's DataFrame (label, confidence, p_*), or raw probabilities from a model
    logged before the classifier existed (MLflow's Keras flavour returns an (N, 10) array)."""
    columns = getattr(output, "columns", ())
    if "label" in columns and "confidence" in columns:
        return [str(label) for label in output["label"]], output["confidence"].to_numpy(np.float64)
    return labels_from_probabilities(output, model)


# --- the command ------------------------------------------------------------------------


def predict_rows(
    classify: Classifier, images: list[Path], batch_size: int, progress: bool = False
) -> list[tuple[str, str, str, str]]:
    """One CSV row per image, in order; unreadable files get their reason in `error`."""
    from tqdm import tqdm

    rows = []
    with tqdm(total=len(images), unit="img", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            rows.extend(_predict_batch(classify, batch))
            bar.update(len(batch))
    return rows


def _predict_batch(classify: Classifier, paths: list[Path]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str] | None] = []
    arrays, positions = [], []
    for path in paths:
        try:
            arrays.append(load_image(path))
        # Pillow raises OSError, SyntaxError, ValueError, EOFError, DecompressionBombError...
        # for broken files; one bad file must not stop the others.
        except Exception as exc:
            rows.append((str(path), "", "", unreadable_reason(exc)))
        else:
            positions.append(len(rows))
            rows.append(None)  # filled in below, keeping the input order
    if arrays:
        labels, confidences = classify(np.stack(arrays))
        for position, label, confidence in zip(positions, labels, confidences, strict=True):
            rows[position] = (str(paths[position]), label, f"{float(confidence):.6f}", "")
    return cast(list[tuple[str, str, str, str]], rows)  # every None was filled in


def predict_to_csv(
    model: str,
    paths: list[Path],
    output: Path | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    quiet: bool = False,
) -> int:
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
        classify = load_classifier(str(model))
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
    writer.writerows(rows)
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        from cifar10_mlops.core.atomic import atomic_write_text

        atomic_write_text(output, buffer.getvalue())


def _summary(predicted: int, failed: int) -> str:
    line = f"predict: {predicted} image{'s' if predicted != 1 else ''}"
    if failed:
        line += f", {failed} unreadable (see the error column)"
    return line
