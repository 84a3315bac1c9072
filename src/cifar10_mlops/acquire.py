"""The download stage: put the Kaggle-layout files (train.7z + trainLabels.csv) in data/raw.

Every source ends in the same two files, so the stages after this one cannot tell the
embedded synthetic set from the real Kaggle download. The new files are assembled in a
temporary sibling directory and swapped in only when complete and checked.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cifar10_mlops import synthetic
from cifar10_mlops.archives import extract_zip_members, list_train_7z
from cifar10_mlops.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.dataset import read_labels_csv
from cifar10_mlops.errors import PipelineError
from cifar10_mlops.params import DataParams

KAGGLE_ZIP = "cifar-10.zip"
# train.7z is 104.6 MB and trainLabels.csv ~0.6 MB in the real competition files.
ZIP_MEMBER_CAPS = {TRAIN_ARCHIVE: 2 * 1024**3, LABELS_CSV: 64 * 1024**2}


def acquire(data: DataParams, raw_dir: Path) -> None:
    raw_dir = Path(raw_dir)
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.tmp-", dir=raw_dir.parent))
    try:
        if data.source == "synthetic":
            synthetic.write_kaggle_layout(staging, data.synthetic.count, data.synthetic.seed)
        elif data.source == "local":
            stage_local_files(data.path, staging)
        else:
            raise PipelineError(
                f"params.yaml: data.source '{data.source}' is not available in this version; "
                "download the Kaggle cifar-10.zip yourself and use data.source: local with "
                "data.path pointing at it"
            )
        try:
            check_kaggle_layout(staging)
        except PipelineError as exc:
            # Name the user's files, not the staging copy that is about to be deleted.
            origin = data.path if data.source == "local" else data.source
            raise PipelineError(str(exc).replace(str(staging), str(origin))) from None
        _swap_in(staging, raw_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def stage_local_files(path: str | None, staging: Path) -> None:
    """Copy user-supplied files (a directory with train.7z + trainLabels.csv, or the Kaggle
    cifar-10.zip, given as a file or a directory holding it) into staging."""
    if not path:
        raise PipelineError("params.yaml: data.source is 'local' but data.path is empty; set data.path")
    source = Path(path).expanduser()
    if not source.exists():
        raise PipelineError(f"params.yaml: data.path '{source}' does not exist; fix data.path")
    if source.is_dir():
        if (source / TRAIN_ARCHIVE).is_file() and (source / LABELS_CSV).is_file():
            shutil.copyfile(source / TRAIN_ARCHIVE, staging / TRAIN_ARCHIVE)
            shutil.copyfile(source / LABELS_CSV, staging / LABELS_CSV)
            return
        if (source / KAGGLE_ZIP).is_file():
            source = source / KAGGLE_ZIP
        else:
            raise PipelineError(
                f"data.path '{source}': holds neither {TRAIN_ARCHIVE} + {LABELS_CSV} nor "
                f"{KAGGLE_ZIP}; put the Kaggle files there"
            )
    if source.name.endswith(".zip"):
        extract_zip_members(source, ZIP_MEMBER_CAPS, staging)
        return
    raise PipelineError(
        f"data.path '{source}': unsupported file; give a directory with {TRAIN_ARCHIVE} + "
        f"{LABELS_CSV}, or {KAGGLE_ZIP}"
    )


def check_kaggle_layout(directory: Path) -> None:
    """Fail now, in the download stage, rather than after a long extraction."""
    list_train_7z(directory / TRAIN_ARCHIVE)
    read_labels_csv(directory / LABELS_CSV)


def _swap_in(staging: Path, target: Path) -> None:
    backup = target.with_name(f".{target.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    if target.exists():
        target.rename(backup)
    staging.rename(target)
    shutil.rmtree(backup, ignore_errors=True)
