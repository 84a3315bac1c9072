"""The download stage: put one of the two raw layouts in data/raw.

- Kaggle layout, train.7z + trainLabels.csv: the embedded synthetic set, the Kaggle download,
  or the user's own Kaggle files (data.source: local);
- binary layout, cifar-10-batches-bin/*.bin: the official archive (data.source: cifar10,
  downloaded into data/downloads and MD5-checked) or a local cifar-10-binary.tar.gz.

The new files are assembled in a temporary sibling directory and swapped in only when
complete and checked (raw_layout.check_layout), so a failure leaves the previous data/raw.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cifar10_mlops.core import config
from cifar10_mlops.core.atomic import current_umask, disk_full_as_error
from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.errors import PipelineError, quote
from cifar10_mlops.core.params import Cifar10Params, DataParams
from cifar10_mlops.data import synthetic
from cifar10_mlops.data.binary.archive import extract_binary_tar
from cifar10_mlops.data.binary.batches import ARCHIVE_NAME as BINARY_ARCHIVE
from cifar10_mlops.data.http_download import download_verified
from cifar10_mlops.data.kaggle.competition import fetch_competition
from cifar10_mlops.data.kaggle.labels_csv import MAX_LABELS_BYTES
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
        # mkdtemp's private 0700 would become data/raw's mode: give it a directory's usual one.
        os.chmod(staging, 0o777 & ~current_umask())
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
        raise PipelineError(
            f"params.yaml: data.path {quote(str(source), 300)} does not exist; fix data.path"
        )
    if source.is_dir():
        for name in (TRAIN_ARCHIVE, LABELS_CSV, KAGGLE_ZIP, BINARY_ARCHIVE):
            _refuse_if_not_regular(source / name)
        if (source / TRAIN_ARCHIVE).is_file() and (source / LABELS_CSV).is_file():
            _copy_capped(source / TRAIN_ARCHIVE, staging, KAGGLE_ZIP_MEMBER_CAPS[TRAIN_ARCHIVE])
            _copy_capped(source / LABELS_CSV, staging, MAX_LABELS_BYTES)
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
    _refuse_if_not_regular(source)
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


def _refuse_if_not_regular(path: Path) -> None:
    """A FIFO would block the copy or the archive reader forever, a device never end."""
    if path.exists() and not path.is_file():
        raise PipelineError(
            f"data.path: {quote(str(path), 300)} is not a regular file (a directory, FIFO, "
            "device or socket); put the data set file itself there"
        )


def _copy_capped(source: Path, staging: Path, cap: int) -> None:
    size = source.stat().st_size
    if size > cap:
        raise PipelineError(
            f"{source}: {size} bytes, above the cap of {cap} for this file; this is not the "
            "CIFAR-10 data set, check data.path"
        )
    shutil.copyfile(source, staging / source.name)


def _swap_in(staging: Path, target: Path) -> None:
    backup = target.with_name(f".{target.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    if target.exists():
        target.rename(backup)
    staging.rename(target)
    shutil.rmtree(backup, ignore_errors=True)
