"""The download stage: put one of the two raw layouts in data/raw.

- Kaggle layout, train.7z + trainLabels.csv: the embedded synthetic set, the Kaggle download,
  or the user's own Kaggle files (data.source: local);
- binary layout, cifar-10-batches-bin/*.bin: the official archive (data.source: cifar10,
  downloaded into data/downloads and MD5-checked) or a local cifar-10-binary.tar.gz.

The new files are assembled in a temporary sibling directory and swapped in only when
complete and checked (raw_layout.check_layout), so a failure leaves the previous data/raw.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cifar10_mlops.core import config
from cifar10_mlops.core.atomic import disk_full_as_error
from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import Cifar10Params, DataParams
from cifar10_mlops.data import synthetic
from cifar10_mlops.data.binary.archive import extract_binary_tar
from cifar10_mlops.data.binary.batches import ARCHIVE_NAME as BINARY_ARCHIVE
from cifar10_mlops.data.http_download import download_verified
from cifar10_mlops.data.kaggle.competition import fetch_competition
from cifar10_mlops.data.kaggle.zip_members import KAGGLE_ZIP_MEMBER_CAPS, extract_zip_members
from cifar10_mlops.data.raw_layout import check_layout

KAGGLE_ZIP = "cifar-10.zip"


def acquire(data: DataParams, raw_dir: Path, downloads_dir: Path | None = None) -> None:
    """Fill raw_dir from data.source. downloads_dir (default config.DOWNLOADS_DIR) caches
    downloaded archives between runs."""
    raw_dir = Path(raw_dir)
    cached_archive = Path(downloads_dir or config.DOWNLOADS_DIR) / BINARY_ARCHIVE
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.tmp-", dir=raw_dir.parent))
    try:
        with disk_full_as_error(raw_dir):
            _fill_staging(data, staging, cached_archive)
        try:
            check_layout(staging)
        except PipelineError as exc:
            # Name the user's files, not the staging copy that is about to be deleted.
            origins = {"local": data.path, "cifar10": cached_archive}
            origin = origins.get(data.source, data.source)
            raise PipelineError(str(exc).replace(str(staging), str(origin))) from None
        _swap_in(staging, raw_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fill_staging(data: DataParams, staging: Path, cached_archive: Path) -> None:
    if data.source == "synthetic":
        synthetic.write_kaggle_layout(staging, data.synthetic.count, data.synthetic.seed)
    elif data.source == "local":
        stage_local_files(data.path, staging)
    elif data.source == "cifar10":
        stage_official_archive(data.cifar10, cached_archive, staging)
    else:
        fetch_competition(data.kaggle, staging)


def stage_official_archive(cifar10: Cifar10Params, archive: Path, staging: Path) -> None:
    """Download cifar-10-binary.tar.gz to `archive` (or reuse it there when its MD5 matches)
    and extract it into staging."""
    download_verified(cifar10.url, archive, cifar10.md5, cifar10.timeout_s)
    extract_binary_tar(archive, staging)


def stage_local_files(path: str | None, staging: Path) -> None:
    """Copy or extract user-supplied files into staging: a directory with train.7z +
    trainLabels.csv, the Kaggle cifar-10.zip, or the official cifar-10-binary.tar.gz (the
    archives given as a file or a directory holding one). Local files carry no checksum."""
    if not path:
        raise PipelineError(
            "params.yaml: data.source is 'local' but data.path is empty; set data.path"
        )
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
        elif (source / BINARY_ARCHIVE).is_file():
            source = source / BINARY_ARCHIVE
        else:
            raise PipelineError(
                f"data.path '{source}': holds neither {TRAIN_ARCHIVE} + {LABELS_CSV}, nor "
                f"{KAGGLE_ZIP}, nor {BINARY_ARCHIVE}; put the data set files there"
            )
    if source.name.endswith(".zip"):
        extract_zip_members(source, KAGGLE_ZIP_MEMBER_CAPS, staging)
        return
    if source.name.endswith((".tar.gz", ".tgz")):
        extract_binary_tar(source, staging)
        return
    raise PipelineError(
        f"data.path '{source}': unsupported file; give a directory with {TRAIN_ARCHIVE} + "
        f"{LABELS_CSV}, or {KAGGLE_ZIP}, or {BINARY_ARCHIVE}"
    )


def _swap_in(staging: Path, target: Path) -> None:
    backup = target.with_name(f".{target.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    if target.exists():
        target.rename(backup)
    staging.rename(target)
    shutil.rmtree(backup, ignore_errors=True)
