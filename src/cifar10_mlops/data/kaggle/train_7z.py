"""train.7z read safely into memory: every member name is checked before a byte is extracted.

Rules (the same for 7z and zip): no absolute paths, no `..`, no links or special files, only
the members the layout expects, a cap on the member count, a cap on each member's declared
size, and a cap on the total bytes actually decompressed, so a hostile or broken archive
fails with a one-line PipelineError instead of a traceback, a filled disk or a write outside
data/. Nothing from a 7z is written to disk: train.7z's PNGs are read into memory.
"""

from __future__ import annotations

import lzma
import queue
import re
import threading
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TypeVar

import py7zr
import py7zr.exceptions
from py7zr.py7zr import ArchiveFile

from cifar10_mlops.core.errors import PipelineError, quote
from cifar10_mlops.data.archive_members import MAX_MEMBERS, check_member_name

T = TypeVar("T")

# What py7zr raises on unreadable or damaged archives: its own ArchiveError family, and what
# it lets through from file reads and its decompressors (LZMA, Deflate).
_ARCHIVE_ERRORS = (
    py7zr.exceptions.ArchiveError,
    EOFError,
    OSError,
    ValueError,
    lzma.LZMAError,
    zlib.error,
)
# A 32x32 RGB PNG is at most ~3.2 KB of pixels plus chunk overhead; 64 KiB is far above any
# honest member and far below what a bomb declares.
MAX_PNG_BYTES = 64 * 1024
PNG_MEMBER = re.compile(r"train/([1-9][0-9]{0,8})\.png")  # matched with fullmatch
# Extraction reads a solid block in chunks of this many decompressed bytes, a batch of PNGs
# each, and runs at most _QUEUE_DEPTH chunks ahead of the PNG decoding: big enough that the
# two threads rarely wait on each other's GIL, small enough that memory stays flat.
_CHUNK_BYTES = 1 << 20
_QUEUE_DEPTH = 4


class TrainArchive:
    """An open train.7z whose entries all passed the checks; see open_train_7z."""

    def __init__(self, path: Path, seven: py7zr.SevenZipFile, entries: dict[int, ArchiveFile]):
        self.path = path
        self._seven = seven
        self._entries = entries
        self.members = {image_id: entry.filename for image_id, entry in entries.items()}

    def read(self, on_member: Callable[[int, bytes], None]) -> None:
        """Extract every train/<id>.png into memory, calling on_member(id, png_bytes) for each.

        A worker thread decompresses while on_member runs on this thread (lzma, zlib and bz2
        release the GIL), so on two cores decompression and PNG decoding overlap. The worker
        stays at most _QUEUE_DEPTH chunks ahead, which keeps memory flat.
        """
        batches = _prefetched(_payload_batches(self.path, self._seven, self._entries), _QUEUE_DEPTH)
        with closing(batches):
            for batch in batches:
                for image_id, payload in batch:
                    on_member(image_id, payload)


@contextmanager
def open_train_7z(archive: Path, max_members: int = MAX_MEMBERS) -> Iterator[TrainArchive]:
    """Open a Kaggle-layout train.7z and check every entry before a byte is decompressed.

    The same checked entries are the ones TrainArchive.read extracts: they stand in for
    py7zr's per-member output-path checks, which the reader does not go through (it writes
    nothing to disk, so no name could escape a directory either way).
    """
    with _open_7z(archive) as seven:
        yield TrainArchive(archive, seven, _checked_pngs(archive, seven, max_members))


def list_train_7z(archive: Path, max_members: int = MAX_MEMBERS) -> dict[int, str]:
    """Check a Kaggle-layout train.7z; return {image id: member name} for its PNGs."""
    with open_train_7z(archive, max_members) as train_7z:
        return train_7z.members


def read_train_7z(
    archive: Path, on_member: Callable[[int, bytes], None], members: dict[int, str] | None = None
) -> dict[int, str]:
    """Extract every train/<id>.png into memory, calling on_member(id, png_bytes) for each.

    Extraction to memory keeps 50,000 loose files off the disk (and out of DVC's hashing).
    `members` is list_train_7z's answer when the caller already has it: the archive must
    still hold exactly those members.
    """
    with open_train_7z(archive) as train_7z:
        if members is not None and train_7z.members != members:
            raise PipelineError(f"{archive}: changed since it was checked; run the stage again")
        train_7z.read(on_member)
        return train_7z.members


@contextmanager
def _open_7z(archive: Path) -> Iterator[py7zr.SevenZipFile]:
    try:
        seven = py7zr.SevenZipFile(archive, mode="r")
    except FileNotFoundError:
        raise PipelineError(f"{archive}: file not found; run the download stage first") from None
    except py7zr.exceptions.PasswordRequired:
        raise _password_protected(archive) from None
    except _ARCHIVE_ERRORS as exc:
        raise PipelineError(
            f"{archive}: not a readable 7z archive ({type(exc).__name__}); download it again"
        ) from None
    with seven:
        yield seven


def _checked_pngs(
    archive: Path, seven: py7zr.SevenZipFile, max_members: int
) -> dict[int, ArchiveFile]:
    """Every entry checked (names, kinds, declared sizes, duplicates); {image id: entry}."""
    if len(seven.files) > max_members:
        raise PipelineError(
            f"{archive}: {len(seven.files)} members, more than the cap of {max_members}; "
            "this is not a CIFAR-10 train.7z"
        )
    pngs: dict[int, ArchiveFile] = {}
    for entry in seven.files:
        image_id = _checked_png_id(archive, entry)
        if image_id is None:  # the train/ directory
            continue
        if image_id in pngs:
            raise PipelineError(
                f"{archive}: image id {image_id} appears twice; rebuild the archive"
            )
        pngs[image_id] = entry
    if not pngs:
        raise PipelineError(f"{archive}: holds no train/<id>.png images; the archive is empty")
    return pngs


def _checked_png_id(archive: Path, entry: ArchiveFile) -> int | None:
    """The image id of a train/<id>.png entry, None for the train/ directory; else an error."""
    name = entry.filename  # shown with !r in errors: a name may hold a newline
    # Fast path for the 50,000 ordinary names: a full match of the strict pattern has no
    # '..', no leading '/', no backslash and no NUL, so the general check has nothing to add.
    normalised = name if PNG_MEMBER.fullmatch(name) else str(check_member_name(archive, name))
    if entry.is_symlink or not (entry.is_file or entry.is_directory):
        raise PipelineError(
            f"{archive}: member {quote(name)} is a link or special file; refusing it"
        )
    if entry.is_directory:
        if normalised != "train":
            raise PipelineError(
                f"{archive}: unexpected directory {quote(name)}; expected only train/<id>.png"
            )
        return None
    match = PNG_MEMBER.fullmatch(normalised)
    if match is None:
        raise PipelineError(
            f"{archive}: unexpected member {quote(name)}; expected only train/<id>.png"
        )
    if entry.uncompressed is not None and entry.uncompressed > MAX_PNG_BYTES:
        raise PipelineError(
            f"{archive}: member {quote(name)} declares {entry.uncompressed} bytes, above the "
            f"{MAX_PNG_BYTES}-byte cap for a 32x32 PNG; refusing a possible archive bomb"
        )
    return int(match.group(1))


def _payload_batches(
    archive: Path, seven: py7zr.SevenZipFile, entries: dict[int, ArchiveFile]
) -> Iterator[list[tuple[int, bytes]]]:
    """(image id, bytes) of every entry, a batch per decompressed chunk."""
    empty, by_folder = _in_stream_order(seven, entries)
    # This reader asks the decompressors for exactly the declared sizes and no more, each
    # capped at MAX_PNG_BYTES by _checked_png_id: that bounds the bytes decompressed in
    # total, as py7zr's max_extract_size did.
    total = sum(entry.uncompressed for planned in by_folder.values() for _, entry in planned)
    total_cap = (len(entries) + 1) * MAX_PNG_BYTES
    if total > total_cap:
        raise PipelineError(
            f"{archive}: decompresses to more than {total_cap} bytes; refusing a possible "
            "archive bomb"
        )
    yield [(image_id, b"") for image_id in empty]
    with _extraction_errors(archive):
        for index, planned in by_folder.items():
            yield from _folder_batches(archive, seven, index, planned)


def _in_stream_order(
    seven: py7zr.SevenZipFile, entries: dict[int, ArchiveFile]
) -> tuple[list[int], dict[int, list[tuple[int, ArchiveFile]]]]:
    """(ids of empty files, {folder index: [(id, entry)] in the folder's stream order})."""
    streams = seven.header.main_streams
    folders = streams.unpackinfo.folders if streams is not None else []
    folder_index = {id(folder): index for index, folder in enumerate(folders)}
    empty: list[int] = []
    by_folder: dict[int, list[tuple[int, ArchiveFile]]] = {}
    # `entries` keeps archive order, which lists each folder's files in stream order.
    for image_id, entry in entries.items():
        if entry.emptystream:
            empty.append(image_id)
        else:
            by_folder.setdefault(folder_index[id(entry.folder)], []).append((image_id, entry))
    return empty, dict(sorted(by_folder.items()))


def _folder_batches(
    archive: Path, seven: py7zr.SevenZipFile, index: int, planned: list[tuple[int, ArchiveFile]]
) -> Iterator[list[tuple[int, bytes]]]:
    """Decompress one 7z folder (a solid block) in big chunks and cut it at the declared sizes.

    Uses the same py7zr internals as py7zr's own extraction worker (the folder's pack
    position and its decompressor); the <2 pin in pyproject.toml keeps them stable. Skipping
    py7zr's per-member path is what saves the time: it re-validated an output path and asked
    psutil for the free memory once per member, 50,000 times.
    """
    packinfo = seven.header.main_streams.packinfo
    start = seven.afterheader + packinfo.packpositions[index]
    end = seven.afterheader + packinfo.packpositions[index + 1]
    folder = planned[0][1].folder
    seven.fp.seek(start)
    decompressor = folder.get_decompressor(end - start, reset=True)
    remaining = sum(entry.uncompressed for _, entry in planned)
    buffer, offset = b"", 0
    batch: list[tuple[int, bytes]] = []
    for image_id, entry in planned:
        while len(buffer) - offset < entry.uncompressed:
            if batch:
                yield batch
                batch = []
            chunk = _next_chunk(archive, seven.fp, decompressor, min(_CHUNK_BYTES, remaining))
            remaining -= len(chunk)
            buffer, offset = buffer[offset:] + chunk, 0
        payload = buffer[offset : offset + entry.uncompressed]
        offset += entry.uncompressed
        if entry.crc32 is not None and zlib.crc32(payload) != entry.crc32:
            raise PipelineError(
                f"{archive}: member {quote(entry.filename)} fails its CRC check; the archive is "
                "corrupt, download it again"
            )
        batch.append((image_id, payload))
    yield batch
    if seven.fp.tell() >= end and decompressor.crc is not None and not decompressor.check_crc():
        raise PipelineError(f"{archive}: a solid block fails its CRC check; download it again")


def _next_chunk(archive: Path, fp, decompressor, size: int) -> bytes:
    position = fp.tell()
    chunk = decompressor.decompress(fp, size)
    if not chunk and fp.tell() == position:  # no input left, output still owed
        raise PipelineError(
            f"{archive}: the packed data ends early; the archive is truncated, download it again"
        )
    return chunk


@contextmanager
def _extraction_errors(archive: Path) -> Iterator[None]:
    """Errors py7zr's decompressors raise on damaged data, as one line each."""
    try:
        yield
    except py7zr.exceptions.PasswordRequired:
        raise _password_protected(archive) from None
    except (*_ARCHIVE_ERRORS, KeyError) as exc:
        detail = " ".join(str(exc).split())
        raise PipelineError(
            f"{archive}: extraction failed ({type(exc).__name__}: {detail}); the archive is "
            "corrupt or truncated, download it again"
        ) from None


def _password_protected(archive: Path) -> PipelineError:
    return PipelineError(
        f"{archive}: is password-protected; CIFAR-10's train.7z is not, download it again"
    )


def _prefetched(items: Iterator[T], depth: int) -> Generator[T, None, None]:
    """Yield what `items` yields, computed in a worker thread at most `depth` items ahead.

    An exception in the worker is raised here; closing this generator stops the worker and
    waits for it, so the caller may close what the worker reads from right after.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(message: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    return
            offer(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there
            offer(("error", exc))

    worker = threading.Thread(target=work, name="7z-decompress", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join()
