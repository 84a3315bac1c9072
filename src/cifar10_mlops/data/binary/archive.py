"""The official cifar-10-binary.tar.gz, extracted safely: every member checked before any is
written (names, types, sizes, whole records), then tar's "data" filter as a second guard."""

from __future__ import annotations

import gzip
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from cifar10_mlops.core.errors import PipelineError, quote
from cifar10_mlops.data.archive_members import check_member_name
from cifar10_mlops.data.binary.batches import (
    BATCHES_DIR,
    DATA_BATCHES,
    FULL_BATCH_BYTES,
    RECORD_BYTES,
    TEST_BATCH,
    is_whole_records,
)

# Every file the archive may hold, with a cap on its size in bytes. The two text files are
# extracted but never read (batches.meta.txt lists the class names config already has).
MEMBER_CAPS = {
    **{name: FULL_BATCH_BYTES for name in (*DATA_BATCHES, TEST_BATCH)},
    "batches.meta.txt": 64 * 1024,
    "readme.html": 1024 * 1024,
}


# Every allowed file, the directory and a './' entry, each at most once: more is not CIFAR-10.
MAX_TAR_MEMBERS = len(MEMBER_CAPS) + 2
# Python's tarfile reads a whole GNU long-name / long-link block or pax header into memory
# before any member check can run: a 5 MB archive can declare a 1 GiB name. These caps are
# checked on the declared size, before the block is read. CIFAR-10's own names are short.
MAX_LONG_NAME_BYTES = 4096  # PATH_MAX on Linux
MAX_PAX_HEADER_BYTES = 64 * 1024
MAX_EXTENDED_HEADERS = 2 * MAX_TAR_MEMBERS  # also bounds tarfile's recursion through a chain
# After the end-of-archive marker only tar's padding to a whole record (10 KiB by default)
# may follow; a gzip that goes on decompressing after it is not the official archive.
MAX_TRAILING_BYTES = 1024 * 1024
_EXPECTED = f"expected only {BATCHES_DIR}/ with data_batch_1..5.bin, {TEST_BATCH}, batches.meta.txt"


def extract_binary_tar(archive: Path, target_dir: Path) -> None:
    """Check every member of a cifar-10-binary.tar.gz, then extract it into target_dir."""
    archive = Path(archive)
    if not archive.exists():
        raise PipelineError(f"{archive}: file not found; download cifar-10-binary.tar.gz again")
    if not archive.is_file():  # a FIFO would block open(); a device, read forever
        raise PipelineError(
            f"{archive}: not a regular file; give the cifar-10-binary.tar.gz file itself"
        )
    try:
        with _CappedTarFile.open(archive, mode="r:gz") as tar:
            members = _checked_members(archive, tar)
            _read_to_the_end(archive, tar.fileobj)
            # filter="data" is a second line of defence: it refuses links, devices and paths
            # outside target_dir, and drops owners and odd permission bits.
            tar.extractall(target_dir, members=members, filter="data")
    except _HostileHeader as exc:
        raise PipelineError(
            f"{archive}: {exc}; this is not the CIFAR-10 binary archive, download "
            "cifar-10-binary.tar.gz again"
        ) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise PipelineError(
            f"{archive}: not a readable gzip-compressed tar ({reason}); the file is corrupt or "
            "truncated, download it again"
        ) from None
    except OSError as exc:  # the archive read fine, so this is the target's disk
        raise PipelineError(
            f"{archive}: extracting into {target_dir} failed ({exc.strerror or exc}); free some "
            "disk space or check permissions"
        ) from None


def _read_to_the_end(archive: Path, gzip_stream) -> None:
    """tarfile stops reading at the end-of-archive marker, before gzip's CRC trailer, so a
    corrupt stored block would go unnoticed. Reading on to the end makes gzip check the CRC:
    a damaged archive fails here, before anything is extracted. Capped: gigabytes of zeros
    after the tar would otherwise be decompressed in full."""
    trailing = 0
    while chunk := gzip_stream.read(1 << 20):
        trailing += len(chunk)
        if trailing > MAX_TRAILING_BYTES:
            raise PipelineError(
                f"{archive}: more than {MAX_TRAILING_BYTES} bytes follow the end of the tar; "
                "this is not the CIFAR-10 binary archive, download cifar-10-binary.tar.gz again"
            )


class _HostileHeader(Exception):
    """An extended header over its cap; the message part after the archive's name."""


_LONG_NAME_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class _CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that checks an extended header's declared size before tarfile reads it."""

    def _proc_member(self, tarfile_):  # tarfile's hook for subclasses (see its comment)
        if self.type in _LONG_NAME_TYPES or self.type in _PAX_TYPES:
            if self.type in _LONG_NAME_TYPES:
                what, cap = "a GNU long name or link", MAX_LONG_NAME_BYTES
            else:
                what, cap = "a pax extended header", MAX_PAX_HEADER_BYTES
            if self.size > cap:
                raise _HostileHeader(
                    f"a tar header at byte {self.offset} declares {what} of {self.size} bytes, "
                    f"above the cap of {cap}"
                )
            tarfile_.extended_headers += 1
            if tarfile_.extended_headers > MAX_EXTENDED_HEADERS:
                raise _HostileHeader(
                    f"more than {MAX_EXTENDED_HEADERS} extended tar headers (long names or pax)"
                )
        return super()._proc_member(tarfile_)  # type: ignore[misc]  # private in typeshed


class _CappedTarFile(tarfile.TarFile):
    tarinfo = _CappedTarInfo
    extended_headers = 0


def _checked_members(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, checked before a byte is written; the ones to extract."""
    members: list[tarfile.TarInfo] = []
    seen: set[PurePosixPath] = set()
    # Iterating reads one header at a time, so the cap holds before a huge list is built.
    for count, member in enumerate(tar, start=1):
        if count > MAX_TAR_MEMBERS:
            raise PipelineError(
                f"{archive}: more than {MAX_TAR_MEMBERS} members; this is not the CIFAR-10 "
                "binary archive"
            )
        path = check_member_name(archive, member.name)
        _check_member_type(archive, member)
        if path in seen:
            raise PipelineError(
                f"{archive}: member {quote(member.name)} appears twice; refusing the archive"
            )
        seen.add(path)
        if not path.parts:  # a './' entry: the target directory itself, nothing to extract
            continue
        if member.isdir():
            _check_directory(archive, member.name, path)
        else:
            _check_file(archive, member, path)
        members.append(member)
    if not any(PurePosixPath(m.name).name in DATA_BATCHES for m in members if m.isfile()):
        raise PipelineError(
            f"{archive}: holds no {BATCHES_DIR}/data_batch_N.bin; this is not the CIFAR-10 "
            "binary archive, download cifar-10-binary.tar.gz again"
        )
    return members


def _check_member_type(archive: Path, member: tarfile.TarInfo) -> None:
    if member.issym() or member.islnk():
        raise PipelineError(
            f"{archive}: member {quote(member.name)} is a link (to {quote(member.linkname)}); "
            "refusing to extract"
        )
    if member.issparse() or not (member.isfile() or member.isdir()):
        raise PipelineError(
            f"{archive}: member {quote(member.name)} is a device, fifo or other special file; "
            "refusing to extract"
        )


def _check_directory(archive: Path, name: str, path: PurePosixPath) -> None:
    if path != PurePosixPath(BATCHES_DIR):
        raise PipelineError(f"{archive}: unexpected directory {quote(name)}; {_EXPECTED}")


def _check_file(archive: Path, member: tarfile.TarInfo, path: PurePosixPath) -> None:
    if path.parent != PurePosixPath(BATCHES_DIR) or path.name not in MEMBER_CAPS:
        raise PipelineError(f"{archive}: unexpected member {quote(member.name)}; {_EXPECTED}")
    cap = MEMBER_CAPS[path.name]
    if member.size > cap:
        raise PipelineError(
            f"{archive}: member {quote(member.name)} is {member.size} bytes, above the cap of {cap}; "
            "refusing it"
        )
    if path.name.endswith(".bin") and not is_whole_records(member.size):
        raise PipelineError(
            f"{archive}: member {quote(member.name)} is {member.size} bytes, not a positive multiple "
            f"of the {RECORD_BYTES}-byte record; the archive is corrupt, download it again"
        )
