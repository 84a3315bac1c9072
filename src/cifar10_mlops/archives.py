"""Reading archives safely: every member name is checked before a byte is extracted.

Rules (the same for 7z and zip): no absolute paths, no `..`, no links or special files, only
the members the layout expects, a cap on the member count, a cap on each member's declared
size, and a cap on the total bytes actually decompressed (py7zr's max_extract_size), so a
hostile or broken archive fails with a one-line PipelineError instead of a traceback, a
filled disk or a write outside data/.
"""

from __future__ import annotations

import lzma
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import py7zr
import py7zr.exceptions
from py7zr.io import Py7zIO, WriterFactory

from cifar10_mlops.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.errors import PipelineError

# The real set holds 50,000 training images; leave room for bigger user sets but not for bombs.
MAX_MEMBERS = 200_000
# Errors py7zr lets through from its decompressors on corrupt data (LZMA, Deflate), beside
# its own ArchiveError family.
_DECOMPRESSION_ERRORS = (lzma.LZMAError, zlib.error)
# A 32x32 RGB PNG is at most ~3.2 KB of pixels plus chunk overhead; 64 KiB is far above any
# honest member and far below what a bomb declares.
MAX_PNG_BYTES = 64 * 1024
PNG_MEMBER = re.compile(r"^train/([1-9][0-9]{0,8})\.png$")
# What is taken out of the Kaggle cifar-10.zip (never the 600 MB test.7z). train.7z is
# 104.6 MB and trainLabels.csv ~0.6 MB in the real files: room for bigger sets, not for a bomb.
KAGGLE_ZIP_MEMBER_CAPS = {TRAIN_ARCHIVE: 2 * 1024**3, LABELS_CSV: 64 * 1024**2}


def check_member_name(archive: Path, name: str) -> PurePosixPath:
    """Reject names that could escape the target directory; return the normalised name."""
    if not name or "\x00" in name or "\\" in name:
        raise PipelineError(f"{archive}: member {name!r} has an invalid name; rebuild the archive")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise PipelineError(f"{archive}: member '{name}' is an absolute path; refusing to extract")
    if ".." in path.parts:
        raise PipelineError(f"{archive}: member '{name}' climbs out with '..'; refusing to extract")
    return path


class _DecodingIO(Py7zIO):
    """Collects one member in memory and hands it over when py7zr closes it."""

    def __init__(self, name: str, sink: Callable[[str, bytes], None], limit: int) -> None:
        self._name = name
        self._sink = sink
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    def write(self, s: bytes | bytearray) -> int:
        self._size += len(s)
        if self._size > self._limit:
            raise PipelineError(
                f"member '{self._name}' is larger than {self._limit} bytes; not a 32x32 PNG"
            )
        self._chunks.append(bytes(s))
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        return b"".join(self._chunks)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        return None

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        if self._chunks is not None:
            self._sink(self._name, b"".join(self._chunks))
            self._chunks = []


class _DecodingFactory(WriterFactory):
    def __init__(self, sink: Callable[[str, bytes], None], limit: int) -> None:
        self._sink = sink
        self._limit = limit

    def create(self, filename: str) -> Py7zIO:
        return _DecodingIO(filename, self._sink, self._limit)


def list_train_7z(archive: Path, max_members: int = MAX_MEMBERS) -> dict[int, str]:
    """Check a Kaggle-layout train.7z; return {image id: member name} for its PNGs."""
    try:
        with py7zr.SevenZipFile(archive, mode="r") as seven:
            entries = seven.list()
    except FileNotFoundError:
        raise PipelineError(f"{archive}: file not found; run the download stage first") from None
    except (py7zr.exceptions.ArchiveError, EOFError, OSError, ValueError, *_DECOMPRESSION_ERRORS) as exc:
        raise PipelineError(
            f"{archive}: not a readable 7z archive ({type(exc).__name__}); download it again"
        ) from None
    if len(entries) > max_members:
        raise PipelineError(
            f"{archive}: {len(entries)} members, more than the cap of {max_members}; "
            "this is not a CIFAR-10 train.7z"
        )
    members: dict[int, str] = {}
    for entry in entries:
        name = entry.filename
        path = check_member_name(archive, name)
        if entry.is_symlink or not (entry.is_file or entry.is_directory):
            raise PipelineError(f"{archive}: member '{name}' is a link or special file; refusing it")
        if entry.is_directory:
            if str(path) != "train":
                raise PipelineError(
                    f"{archive}: unexpected directory '{name}'; expected only train/<id>.png"
                )
            continue
        match = PNG_MEMBER.match(str(path))
        if not match:
            raise PipelineError(
                f"{archive}: unexpected member '{name}'; expected only train/<id>.png"
            )
        if entry.uncompressed is not None and entry.uncompressed > MAX_PNG_BYTES:
            raise PipelineError(
                f"{archive}: member '{name}' declares {entry.uncompressed} bytes, above the "
                f"{MAX_PNG_BYTES}-byte cap for a 32x32 PNG; refusing a possible archive bomb"
            )
        image_id = int(match.group(1))
        if image_id in members:
            raise PipelineError(f"{archive}: image id {image_id} appears twice; rebuild the archive")
        members[image_id] = name
    if not members:
        raise PipelineError(f"{archive}: holds no train/<id>.png images; the archive is empty")
    return members


def read_train_7z(
    archive: Path, on_member: Callable[[int, bytes], None], members: dict[int, str] | None = None
) -> dict[int, str]:
    """Extract every train/<id>.png into memory, calling on_member(id, png_bytes) for each.

    Extraction to memory keeps 50,000 loose files off the disk (and out of DVC's hashing).
    `members` is list_train_7z's answer when the caller already has it.
    """
    if members is None:
        members = list_train_7z(archive)

    def sink(filename: str, payload: bytes) -> None:
        match = re.search(r"([1-9][0-9]{0,8})\.png$", filename)
        if match is None:  # cannot happen: names were checked above
            raise PipelineError(f"{archive}: unexpected member '{filename}'")
        on_member(int(match.group(1)), payload)

    total_cap = (len(members) + 1) * MAX_PNG_BYTES
    try:
        with py7zr.SevenZipFile(archive, mode="r", max_extract_size=total_cap) as seven:
            seven.extractall(factory=_DecodingFactory(sink, MAX_PNG_BYTES))
    except py7zr.exceptions.DecompressionBombError:
        raise PipelineError(
            f"{archive}: decompresses to more than {total_cap} bytes; refusing a possible "
            "archive bomb"
        ) from None
    except (
        py7zr.exceptions.ArchiveError, EOFError, OSError, ValueError, KeyError, *_DECOMPRESSION_ERRORS
    ) as exc:
        raise PipelineError(
            f"{archive}: extraction failed ({type(exc).__name__}: {exc}); the archive is "
            "corrupt or truncated, download it again"
        ) from None
    return members


def extract_zip_members(archive: Path, wanted: dict[str, int], target_dir: Path) -> None:
    """Copy the named members (name -> size cap in bytes) of a zip into target_dir, flat."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
            if len(infos) > MAX_MEMBERS:
                raise PipelineError(f"{archive}: {len(infos)} members, above the cap; refusing it")
            by_name = {}
            for info in infos:
                check_member_name(archive, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise PipelineError(f"{archive}: member '{info.filename}' is a symlink; refusing it")
                by_name[info.filename] = info
            for name, cap in wanted.items():
                info = by_name.get(name)
                if info is None:
                    raise PipelineError(
                        f"{archive}: member '{name}' is missing; expected the Kaggle cifar-10.zip"
                    )
                if info.file_size > cap:
                    raise PipelineError(
                        f"{archive}: member '{name}' declares {info.file_size} bytes, above the "
                        f"cap of {cap}; refusing it"
                    )
                target = target_dir / PurePosixPath(name).name
                with zipped.open(info) as source, open(target, "wb") as sink:
                    copied = _copy_capped(source, sink, cap)
                if copied != info.file_size:
                    raise PipelineError(f"{archive}: member '{name}' is truncated; download it again")
    except zipfile.BadZipFile:
        raise PipelineError(f"{archive}: not a readable zip archive; download it again") from None


def _copy_capped(source, sink, cap: int) -> int:
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > cap:
            raise PipelineError(f"{getattr(source, 'name', 'member')}: larger than {cap} bytes; refusing it")
        sink.write(chunk)
    return copied
