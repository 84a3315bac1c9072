"""The trained classifier as an MLflow pyfunc model: what `mlflow models serve`,
`mlflow.pyfunc.load_model(...)` and `cifar10-mlops predict --model models:/...` run.

Input, either
- photo files: a DataFrame column `image` of encoded pictures (PNG, JPEG, any format Pillow
  reads), as bytes from Python or base64 in JSON (`dataframe_split`, MLflow's way to send
  files), decoded and resized by data/images.py exactly as `cifar10-mlops predict` reads the
  same file; or
- raw uint8 RGB images, shape (N, 32, 32, 3) (the model normalises itself), as an array,
  nested lists (`inputs` in JSON) or a DataFrame.
At most MAX_IMAGES_PER_REQUEST images per call; bad input is refused with a one-line message
(MLflow's INVALID_PARAMETER_VALUE: the scoring server answers 400).
With `evaluate.tta` on, the logged model's configuration says so (MLmodel: model_config tta)
and it averages the same views evaluate scored (model/tta.py).
Output: a pandas DataFrame with one row per image: `label` (class name), `confidence` (its
probability) and `p_<class>` for each of the ten classes.

The model is logged as "models from code": MLflow stores a three-line entry script that
imports Cifar10Classifier, plus this package under code/ and the model.keras file as an
artifact. Nothing is pickled, so loading needs no pickle deserialisation (which MLflow is
moving to refuse by default) and works wherever the pinned requirements are installed,
whether or not cifar10_mlops is.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

import cifar10_mlops
from cifar10_mlops.core.config import CLASS_NAMES, IMAGE_SHAPE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.images import decode_picture
from cifar10_mlops.model.inference import CoalescingPredictor, batch_predictor
from cifar10_mlops.model.tta import predict_probabilities

KERAS_ARTIFACT = "keras_model"
TTA_CONFIG_KEY = "tta"  # model_config: predict with model/tta.py's views (evaluate.tta)
PROBABILITY_COLUMNS = tuple(f"p_{name}" for name in CLASS_NAMES)
OUTPUT_COLUMNS = ("label", "confidence", *PROBABILITY_COLUMNS)
# The model sees batches of at most this many images, so a big request cannot allocate one
# huge activation tensor.
PREDICT_BATCH_SIZE = 256
# A request of more images is refused (400) before any is decoded: split it. 10,000 images
# would keep the server busy for minutes while every other client waits.
MAX_IMAGES_PER_REQUEST = 1024
IMAGE_COLUMN = "image"  # the DataFrame column of encoded photo files
WARM_BATCH_SIZES = (1, 2, 4, 8, 16)
# Photos stored as the input example (PNG, base64 in JSON): enough to show the format.
MAX_EXAMPLE_IMAGES = 3
# MLflow's signature holds tensors or columns, not both, and its schema check runs before the
# model sees the input; the model accepts both, so the input is described here (MLmodel
# metadata) and by the input example, and checked by as_image_batch.
INPUT_DESCRIPTION = (
    f"either a column '{IMAGE_COLUMN}' of encoded photo files (PNG, JPEG, ...; base64 in JSON "
    "dataframe_split) or uint8 RGB arrays of shape (N, 32, 32, 3); at most "
    f"{MAX_IMAGES_PER_REQUEST} images per request"
)
# Distributions the model needs at load time (MLflow's own requirement is added beside them):
# the Keras runtime, and what the cifar10_mlops modules it imports need (params.py: pydantic,
# pyyaml; data/images.py, which decodes the photos: pillow). Listed, not inferred: inference
# would load the model again in a subprocess.
RUNTIME_DISTRIBUTIONS = (
    "keras",
    "tensorflow",
    "numpy",
    "pandas",
    "pydantic",
    "pyyaml",
    "pillow",
)

# The "models from code" entry point MLflow runs at load time; cifar10_mlops comes from the
# model's code/ directory, which MLflow puts on sys.path first.
_ENTRY_SCRIPT = """\
import mlflow
from cifar10_mlops.tracking.serving import Cifar10Classifier

mlflow.models.set_model(Cifar10Classifier())
"""


class Cifar10Classifier(PythonModel):
    """Photo files or uint8 images (N, 32, 32, 3) -> DataFrame of label, confidence, p_<class>."""

    def __init__(self, keras_model=None, tta: bool = False):
        # A Keras model passed here is used as is (no MLflow context needed); otherwise
        # load_context loads it from the logged model.keras artifact.
        super().__init__()
        self._tta = tta
        self._probabilities = None if keras_model is None else self._predictor(keras_model)

    def load_context(self, context) -> None:
        from cifar10_mlops.model.build import load_model

        self._tta = logged_tta(context.model_config)
        self._probabilities = self._predictor(load_model(Path(context.artifacts[KERAS_ARTIFACT])))

    def _predictor(self, keras_model) -> CoalescingPredictor:
        model_batches = batch_predictor(keras_model, PREDICT_BATCH_SIZE)
        # Trace (TensorFlow) or compile (JAX) the small batch sizes now, not in the first
        # requests: one photo with TTA is a batch of 2, a few concurrent ones 4 to 16.
        for size in WARM_BATCH_SIZES:
            model_batches(np.zeros((size, *IMAGE_SHAPE), np.uint8))
        tta = self._tta
        # The scoring server answers each request in its own thread: concurrent requests
        # share one model call (model/inference.py).
        return CoalescingPredictor(
            lambda images: predict_probabilities(model_batches, images, tta), PREDICT_BATCH_SIZE
        )

    # The np.ndarray hint tells MLflow not to infer a schema from the hint; what is accepted is
    # checked by as_image_batch (see INPUT_DESCRIPTION).
    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        if self._probabilities is None:
            raise RuntimeError("the classifier has no model: load_context was not called")
        return probabilities_frame(self._probabilities(as_image_batch(model_input)))


def logged_tta(model_config) -> bool:
    """The test-time augmentation a logged model was evaluated with (its model_config)."""
    return bool((model_config or {}).get(TTA_CONFIG_KEY, False))


def as_image_batch(model_input) -> np.ndarray:
    """What a caller or the REST server hands over -> uint8 (N, 32, 32, 3), or a clear error.

    Accepts photo files (a DataFrame column of bytes or base64 text, or a list of bytes), an
    array (one image of shape (32, 32, 3) too), nested lists, or a DataFrame with one column
    of images or 3072 pixel columns. Pixel values must be whole numbers in 0..255.
    """
    _require_few_enough(model_input)
    files = _photo_files(model_input)
    if files is not None:
        return _decode_photos(files)
    array = _to_array(model_input)
    if array.shape == IMAGE_SHAPE:
        array = array[np.newaxis]
    if array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE or array.shape[0] == 0:
        raise _bad_input(f"expected images of shape (N, 32, 32, 3), got shape {array.shape}")
    return _to_uint8(array)


def _require_few_enough(model_input) -> None:
    # Checked on the container, before anything is converted or decoded.
    count = len(model_input) if hasattr(model_input, "__len__") else 1
    if isinstance(model_input, np.ndarray) and model_input.shape == IMAGE_SHAPE:
        count = 1
    if count > MAX_IMAGES_PER_REQUEST:
        raise _bad_input(
            f"{count} images in one request, at most {MAX_IMAGES_PER_REQUEST}; "
            "send them in several requests"
        )


def _photo_files(model_input) -> list | None:
    """The encoded photo files in the input (bytes or base64 text), or None for pixel input."""
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN in model_input.columns:
            cells = model_input[IMAGE_COLUMN].tolist()
        elif model_input.shape[1] == 1:
            cells = model_input.iloc[:, 0].tolist()
        else:
            return None
    elif isinstance(model_input, (list, tuple)) or (
        isinstance(model_input, np.ndarray) and model_input.dtype.kind in "OSU"
    ):
        cells = list(model_input)
    else:
        return None
    if cells and all(isinstance(cell, (bytes, bytearray, str)) for cell in cells):
        return cells
    if any(isinstance(cell, (bytes, bytearray, str)) for cell in cells):
        raise _bad_input(
            f"mixed cells: give every row of '{IMAGE_COLUMN}' as a photo file (bytes or base64)"
        )
    return None


def _decode_photos(files: list) -> np.ndarray:
    images = []
    for row, cell in enumerate(files):
        data = _file_bytes(cell, row)
        try:
            images.append(decode_picture(data))
        except PipelineError as exc:  # the decoder's own one-line reason
            raise _bad_input(f"row {row}: {exc}") from None
        # Pillow raises OSError, SyntaxError, ValueError, EOFError, ... for a broken file
        except Exception as exc:
            kind = type(exc).__name__
            raise _bad_input(
                f"row {row}: not a picture Pillow can read ({kind}); send the photo file's "
                "bytes (PNG, JPEG, ...), base64-encoded in JSON"
            ) from None
    return np.stack(images)


def _file_bytes(cell, row: int) -> bytes:
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    # base64 text, as MLflow writes it (with line breaks) or as one line; padding checked
    text = "".join(cell.split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_input(
            f"row {row}: not valid base64 ({len(text)} characters); send each photo file "
            "base64-encoded (standard alphabet, with padding)"
        ) from None


def _to_array(model_input) -> np.ndarray:
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] == 1:  # one column, one image (nested lists/arrays) per row
            cells = [np.asarray(cell) for cell in model_input.iloc[:, 0]]
            return np.stack(cells) if cells else np.empty((0,))
        flat = model_input.to_numpy()  # 3072 pixel columns, row-major like IMAGE_SHAPE
        if flat.shape[1] != int(np.prod(IMAGE_SHAPE)):
            raise _bad_input(
                f"a DataFrame needs 1 image column or 3072 pixel columns, got {flat.shape[1]}"
            )
        return flat.reshape((-1, *IMAGE_SHAPE))
    try:
        return np.asarray(model_input)
    except ValueError as exc:  # ragged nested lists
        raise _bad_input(f"images of different shapes ({exc})") from None


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise _bad_input(f"pixel values must be numbers, got dtype {array.dtype}")
    # Refuse rather than clip or rescale: floats in 0..1 would silently become black images.
    if not np.all((array >= 0) & (array <= 255) & (array == np.round(array))):
        raise _bad_input("pixel values must be whole numbers in 0..255 (raw uint8 RGB, not scaled)")
    return array.astype(np.uint8)


def _bad_input(reason: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE: the scoring server answers 400 with this message, not 500.
    return MlflowException.invalid_parameter_value(f"cifar10 classifier input: {reason}")


def probabilities_frame(probabilities: np.ndarray) -> pd.DataFrame:
    """(N, 10) class probabilities -> the output DataFrame (columns OUTPUT_COLUMNS)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    best = probabilities.argmax(axis=1)
    frame = pd.DataFrame(
        {
            "label": [CLASS_NAMES[index] for index in best],
            "confidence": probabilities[np.arange(len(best)), best],
        }
    )
    for column, values in zip(PROBABILITY_COLUMNS, probabilities.T, strict=True):
        frame[column] = values
    return frame


def signature() -> ModelSignature:
    # No input schema: MLflow's schema check would refuse one of the two kinds of input
    # before the model sees it (INPUT_DESCRIPTION says what the model accepts).
    outputs = Schema(
        [
            ColSpec("string", "label"),
            ColSpec("double", "confidence"),
            *(ColSpec("double", column) for column in PROBABILITY_COLUMNS),
        ]
    )
    return ModelSignature(inputs=None, outputs=outputs)


def pip_requirements() -> list[str]:
    pins = [f"mlflow=={mlflow.__version__}"]
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:  # e.g. tensorflow-cpu instead of tensorflow
            pins.append(name)
    return pins


def _model_kwargs(keras_model_file: Path, entry_script: Path, input_example, tta: bool) -> dict:
    """What log_model and save_model share."""
    keras_model_file = Path(keras_model_file)
    if not keras_model_file.is_file():
        raise FileNotFoundError(f"{keras_model_file}: no such Keras model file")
    entry_script.write_text(_ENTRY_SCRIPT, encoding="utf-8")
    if input_example is not None:
        input_example = photos_frame(as_image_batch(input_example)[:MAX_EXAMPLE_IMAGES])
    return {
        "python_model": str(entry_script),
        "artifacts": {KERAS_ARTIFACT: str(keras_model_file)},
        "code_paths": [str(Path(cifar10_mlops.__file__).parent)],
        "signature": signature(),
        "input_example": input_example,
        "pip_requirements": pip_requirements(),
        "model_config": {TTA_CONFIG_KEY: bool(tta)},
        "metadata": {"input": INPUT_DESCRIPTION},
    }


def photos_frame(images: np.ndarray) -> pd.DataFrame:
    """uint8 images -> the photo-file input: a column `image` of PNG files (lossless, so the
    model sees exactly these pixels)."""
    import io

    from PIL import Image

    files = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    return pd.DataFrame({IMAGE_COLUMN: files})


def log_classifier(
    keras_model_file: Path,
    artifact_path: str = "model",
    input_example: np.ndarray | None = None,
    tta: bool = False,
) -> ModelInfo:
    """Log the model.keras file as the pyfunc classifier into the active MLflow run.

    MLflow 3 stores it as a LoggedModel linked to the run: `info.model_uri` is
    `models:/<model id>`, and `runs:/<run id>/<artifact_path>` resolves to the same model
    (for `mlflow.pyfunc.load_model`, `mlflow.register_model` and `mlflow models serve`).
    With an input example (at most MAX_EXAMPLE_IMAGES images are kept), MLflow also runs it
    through the loaded model once, so a model that cannot serve fails here, not in production.
    """
    if mlflow.active_run() is None:
        # Never let MLflow start a stray run of its own.
        raise RuntimeError("log_classifier needs an active MLflow run (inside mlflow.start_run())")
    with tempfile.TemporaryDirectory() as scratch:
        kwargs = _model_kwargs(
            keras_model_file, Path(scratch) / "cifar10_classifier.py", input_example, tta
        )
        return mlflow.pyfunc.log_model(name=artifact_path, **kwargs)


def save_classifier(
    keras_model_file: Path,
    path: Path,
    input_example: np.ndarray | None = None,
    tta: bool = False,
) -> Path:
    """Write the pyfunc classifier to a local directory, e.g. for `mlflow models serve -m DIR`
    or `cifar10-mlops predict --model DIR`. `path` must not exist or be empty."""
    with tempfile.TemporaryDirectory() as scratch:
        kwargs = _model_kwargs(
            keras_model_file, Path(scratch) / "cifar10_classifier.py", input_example, tta
        )
        mlflow.pyfunc.save_model(str(path), **kwargs)
    return Path(path)
