"""The Kaggle cifar-10.zip: take out train.7z and trainLabels.csv (never the 600 MB test.7z),
each member name checked and each size capped, declared and actually copied."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.errors import PipelineError, quote
from cifar10_mlops.data.archive_members import MAX_MEMBERS, check_member_name

# What is taken out of the Kaggle cifar-10.zip (never the 600 MB test.7z). train.7z is
# 104.6 MB and trainLabels.csv ~0.6 MB in the real files: room for bigger sets, not for a bomb.
KAGGLE_ZIP_MEMBER_CAPS = {TRAIN_ARCHIVE: 2 * 1024**3, LABELS_CSV: 64 * 1024**2}
_ECD_ENTRIES_TOTAL = 4  # zipfile's index of the total entry count in its end record


def extract_zip_members(archive: Path, wanted: dict[str, int], target_dir: Path) -> None:
    """Copy the named members (name -> size cap in bytes) of a zip into target_dir, flat."""
    try:
        _check_declared_member_count(archive)
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
            if len(infos) > MAX_MEMBERS:
                raise PipelineError(f"{archive}: {len(infos)} members, above the cap; refusing it")
            by_name = {}
            for info in infos:
                check_member_name(archive, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise PipelineError(
                        f"{archive}: member {quote(info.filename)} is a symlink; refusing it"
                    )
                by_name[info.filename] = info
            for name, cap in wanted.items():
                member = by_name.get(name)
                if member is None:
                    raise PipelineError(
                        f"{archive}: member '{name}' is missing; expected the Kaggle cifar-10.zip"
                    )
                if member.file_size > cap:
                    raise PipelineError(
                        f"{archive}: member '{name}' declares {member.file_size} bytes, above the "
                        f"cap of {cap}; refusing it"
                    )
                target = target_dir / PurePosixPath(name).name
                with zipped.open(member) as source, open(target, "wb") as sink:
                    copied = _copy_capped(source, sink, cap)
                if copied != member.file_size:
                    raise PipelineError(
                        f"{archive}: member '{name}' is truncated; download it again"
                    )
    except zipfile.BadZipFile:
        raise PipelineError(f"{archive}: not a readable zip archive; download it again") from None


def _check_declared_member_count(archive: Path) -> None:
    """ZipFile() builds an object per central-directory entry before anything can be checked
    (gigabytes for a file of millions of tiny entries); the end record declares the count."""
    with open(archive, "rb") as raw:
        # What ZipFile itself reads first (zip64 aware); private, so typeshed omits it.
        end = zipfile._EndRecData(raw)  # type: ignore[attr-defined]
    if end is None:
        raise zipfile.BadZipFile("no end of central directory")
    declared = end[_ECD_ENTRIES_TOTAL]
    if declared > MAX_MEMBERS:
        raise PipelineError(
            f"{archive}: declares {declared} members, above the cap of {MAX_MEMBERS}; this is "
            "not the Kaggle cifar-10.zip"
        )


def _copy_capped(source, sink, cap: int) -> int:
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > cap:
            raise PipelineError(
                f"{getattr(source, 'name', 'member')}: larger than {cap} bytes; refusing it"
            )
        sink.write(chunk)
    return copied
