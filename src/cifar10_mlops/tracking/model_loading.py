"""Where `cifar10-mlops predict` gets its classifier: a .keras file, an MLflow model directory
or an MLflow model URI (models:/..., runs:/...), resolved in the tracking store.

From an MLflow model only this project's flavour is used: its model.keras file, downloaded and
loaded by Keras in safe mode (no code from the model runs). Loading it the MLflow way
(mlflow.pyfunc) runs the code the model carries, so that needs trust_model_code
(`--trust-model-code`): for models from a source you trust.

MLflow is imported only for MLflow models: a .keras file loads with Keras alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.core.errors import PipelineError, quote

# images uint8 (N, 32, 32, 3) -> (labels, confidences), one of each per image
Classifier = Callable[[np.ndarray], tuple[list[str], np.ndarray]]

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
    from cifar10_mlops.model.inference import batch_predictor
    from cifar10_mlops.model.tta import predict_probabilities

    # predict_on_batch in padded batches (model/inference.py): no per-call data pipeline, and
    # a bounded number of shapes to compile under JAX.
    model_batches = batch_predictor(load_model(path))

    def classify(images: np.ndarray) -> tuple[list[str], np.ndarray]:
        probabilities = predict_probabilities(model_batches, images, tta)
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
