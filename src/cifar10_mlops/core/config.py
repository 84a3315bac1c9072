"""Path constants and fixed facts of the data set, in one place."""

from __future__ import annotations

import os
from pathlib import Path

# The ten CIFAR-10 classes, in the official label order (label byte 0..9), spelled as
# Kaggle's trainLabels.csv spells them.
CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)


def project_root() -> Path:
    """The repository root: where dvc.yaml lives.

    CIFAR10_MLOPS_ROOT wins; otherwise walk up from the working directory (DVC runs every
    stage from the root, `dvc exp run --temp` from a temporary copy of it).
    """
    env = os.environ.get("CIFAR10_MLOPS_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return here


ROOT = project_root()
PARAMS_FILE = ROOT / "params.yaml"
DATA_DIR = ROOT / "data"
RAW_DIR = DATA_DIR / "raw"
# Download cache (not a DVC output): a verified archive is reused when unrelated data params
# change, and a half-finished download (.part) survives for resuming.
DOWNLOADS_DIR = DATA_DIR / "downloads"
EXTRACTED_DIR = DATA_DIR / "extracted"
PROCESSED_DIR = DATA_DIR / "processed"
MODELS_DIR = ROOT / "models"
REPORTS_DIR = ROOT / "reports"
PLOTS_DIR = REPORTS_DIR / "plots"

TRAIN_ARCHIVE = "train.7z"
LABELS_CSV = "trainLabels.csv"
TRAIN_NPZ = PROCESSED_DIR / "train.npz"
TEST_NPZ = PROCESSED_DIR / "test.npz"
MODEL_FILE = MODELS_DIR / "model.keras"
HISTORY_CSV = REPORTS_DIR / "history.csv"
METRICS_JSON = REPORTS_DIR / "metrics.json"
CONFUSION_CSV = REPORTS_DIR / "confusion.csv"
PER_CLASS_CSV = REPORTS_DIR / "per_class.csv"
RUN_INFO_JSON = REPORTS_DIR / "mlflow_run.json"
TRAINING_STATE_DIR = ROOT / ".training_state"
