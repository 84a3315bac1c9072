"""`cifar10-mlops predict`: image files or directories -> CSV of path,label,confidence,error.

MODEL is one of
- a Keras file (models/model.keras), loaded with Keras alone (MLflow is not even imported);
- a directory holding an MLflow model (its MLmodel file), e.g. from serving.save_classifier;
- an MLflow model URI: models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model,
  models:/<model id>, resolved in MLFLOW_TRACKING_URI or else the project's mlflow.db.
From an MLflow model only this project's flavour is used: its model.keras file, loaded by
Keras in safe mode (no code from the file runs). Loading it the MLflow way runs the code the
model carries (its python_model, code/ directory or pickles), so that needs trust_model_code,
the --trust-model-code flag: for models from a source you trust.

Pictures: any format Pillow reads, decoded by data/images.py exactly as the training images
are (same modes, same pixels), turned upright by their EXIF orientation. Pictures that are not
32x32 are resized whole to 32x32 (not cropped: a non-square picture is squeezed, so crop it to
the object first for the best result). Anything that is not a regular file gets a row with
the reason.

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
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

import numpy as np
from PIL import UnidentifiedImageError

from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.core.errors import PipelineError, quote
from cifar10_mlops.data.images import read_picture

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


# --- models -----------------------------------------------------------------------------

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # 2+ letters: never a Windows drive
# The URIs predict resolves in the tracking store; anything else (http:, s3:, ...) is refused
# before MLflow is imported.
MODEL_URI_SCHEMES = ("models", "runs")
TRUST_FLAG = "--trust-model-code"
_OTHER_FLAVOUR = (
    "loading another kind of MLflow model runs the code it carries; pass "
    f"{TRUST_FLAG} only if you trust its source"
)


def load_classifier(
    model: str, trust_model_code: bool = False, tta: bool | None = None
) -> Classifier:
    """A Keras file, an MLflow model directory or an MLflow model URI -> a Classifier.

    trust_model_code: load an MLflow model the MLflow way (mlflow.pyfunc), which runs the
    code it carries; otherwise only its model.keras is loaded, in Keras' safe mode.
    tta: test-time augmentation (model/tta.py); None: what the model was evaluated with (an
    MLflow model's model_config; for a .keras file, ./params.yaml's evaluate.tta if present)."""
    if trust_model_code and tta is not None:
        raise PipelineError(
            f"--tta/--no-tta: a model loaded with {TRUST_FLAG} predicts the way it was logged "
            "(its evaluate.tta); drop the flag, or drop --trust-model-code to choose"
        )
    path = Path(model)
    if path.is_dir():
        if not (path / "MLmodel").is_file():
            raise PipelineError(
                f"{model}: a directory without an MLmodel file; give a .keras file, an MLflow "
                "model directory or an MLflow URI such as models:/<name>@<alias>"
            )
        if trust_model_code:
            return _mlflow_classifier(model)
        return _keras_classifier(project_keras_file(path, model), _logged_tta(path, tta))
    if not os.path.lexists(path) and _URI_SCHEME.match(model):
        scheme = model.split(":", 1)[0]
        if scheme.lower() not in MODEL_URI_SCHEMES:
            raise PipelineError(
                f"{quote(model)}: model URIs with scheme '{quote(scheme, 20)[1:-1]}:' are not "
                "supported; give a .keras file, an MLflow model directory, models:/<name>@<alias>, "
                "models:/<name>/<version> or runs:/<run id>/model"
            )
        if trust_model_code:
            return _mlflow_classifier(model)
        return _downloaded_keras_classifier(model, tta)
    if path.exists() and not path.is_file():
        raise PipelineError(f"{model}: not a regular file; give the .keras model file")
    if not path.is_file():  # checked before Keras is imported: a quick, quiet answer
        raise PipelineError(
            f"{model}: model file not found; run `dvc repro` to train one, or give an MLflow "
            "model URI such as models:/<name>@<alias>"
        )
    return _keras_classifier(path, _project_tta() if tta is None else tta)


def _keras_classifier(path: Path, tta: bool) -> Classifier:
    from cifar10_mlops.model.build import load_model
    from cifar10_mlops.model.tta import predict_probabilities

    keras_model = load_model(path)

    def classify(images: np.ndarray) -> tuple[list[str], np.ndarray]:
        probabilities = predict_probabilities(
            lambda batch: keras_model.predict(batch, batch_size=len(batch), verbose=0),
            images,
            tta,
        )
        return labels_from_probabilities(probabilities, str(path))

    return classify


def _project_tta() -> bool:
    """evaluate.tta of the project in the working directory (its models/model.keras was
    scored that way); off outside a project."""
    from cifar10_mlops.core.config import PARAMS_FILE
    from cifar10_mlops.core.params import load_params

    return Path(PARAMS_FILE).is_file() and load_params(PARAMS_FILE).evaluate.tta


def _logged_tta(model_dir: Path, tta: bool | None) -> bool:
    """The TTA an MLflow model was logged with (its MLmodel's model_config), unless chosen."""
    if tta is not None:
        return tta
    from cifar10_mlops.core.params import read_params_yaml  # size-capped, no YAML aliases
    from cifar10_mlops.tracking.serving import logged_tta

    mlmodel = read_params_yaml(model_dir / "MLmodel") or {}
    # The file is the model's to write: any shape must end in a clear "off", not a traceback.
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    flavor = flavors.get("python_function") if isinstance(flavors, dict) else None
    config = flavor.get("config") if isinstance(flavor, dict) else None
    return logged_tta(config if isinstance(config, dict) else None)  # MLflow's model_config


def project_keras_file(directory: Path, model: str) -> Path:
    """The model.keras of this project's MLflow flavour (serving.KERAS_ARTIFACT, under
    artifacts/), or of MLflow's Keras flavour (data/model.keras); refused otherwise."""
    candidates = [
        candidate
        for candidate in (
            *sorted(directory.glob("artifacts/*.keras")),
            directory / "data/model.keras",
        )
        if candidate.is_file() and not candidate.is_symlink()
    ]
    if len(candidates) != 1:
        found = "no" if not candidates else "more than one"
        raise PipelineError(
            f"{model}: an MLflow model with {found} model.keras file of this project "
            f"(artifacts/*.keras); {_OTHER_FLAVOUR}"
        )
    return candidates[0]


def _downloaded_keras_classifier(uri: str, tta: bool | None) -> Classifier:
    """models:/ or runs:/ -> the model's files downloaded (nothing of them is run) into a
    temporary directory, removed once Keras has loaded the model.keras into memory."""
    with _tracking_store(uri) as store:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory(prefix="cifar10-mlops-model-") as scratch:
            try:
                local = Path(download_artifacts(artifact_uri=uri, dst_path=scratch))
            except Exception as exc:  # MLflow raises many kinds; each means "cannot use this"
                raise _cannot_load(uri, store, exc) from exc
            if not (local / "MLmodel").is_file():
                raise PipelineError(
                    f"{uri}: not an MLflow model (no MLmodel file); give the model's URI, e.g. "
                    "runs:/<run id>/model"
                )
            return _keras_classifier(project_keras_file(local, uri), _logged_tta(local, tta))


@contextlib.contextmanager
def _tracking_store(uri: str):
    import mlflow

    from cifar10_mlops.tracking.store import tracking_uri

    store = tracking_uri()
    if uri.startswith(("models:", "runs:")):
        _require_store(uri, store)
    mlflow.set_tracking_uri(store)
    yield store


def _cannot_load(uri: str, store: str, exc: Exception) -> PipelineError:
    from cifar10_mlops.tracking.secrets import redact_credentials

    # Redacted: the store URI, and MLflow's own message, may carry a password.
    message = (
        f"{uri}: cannot load the MLflow model ({type(exc).__name__}: {_first_line(exc)}); "
        "check the URI (models:/<name>@<alias>, models:/<name>/<version>, "
        f"runs:/<run id>/model) and the tracking store {store}"
    )
    return PipelineError(redact_credentials(message))


def _mlflow_classifier(uri: str) -> Classifier:
    """The MLflow way (trust_model_code): runs the code the model carries."""
    with _tracking_store(uri) as store:
        import mlflow.pyfunc

        try:
            pyfunc_model = mlflow.pyfunc.load_model(uri)
        except Exception as exc:  # MLflow raises many kinds; every one means "cannot use this"
            raise _cannot_load(uri, store, exc) from exc

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
    writer.writerows(rows)
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


def _summary(predicted: int, failed: int) -> str:
    line = f"predict: {predicted} image{'s' if predicted != 1 else ''}"
    if failed:
        line += f", {failed} unreadable (see the error column)"
    return line
