"""Atomic file writes: readers (DVC, MLflow, a crashed re-run) never see a half-written file.

Everything is written to a temporary file in the destination's own directory and then moved
into place with os.replace, which is atomic on POSIX and Windows when source and target are
on the same file system -- the reason the temporary file lives next to the target rather than
in /tmp.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_mlops.core.errors import PipelineError


def current_umask() -> int:
    # os.umask can only be read by setting it; restore at once. Done per call (not cached at
    # import) so a umask changed later by the process is honoured.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_path(path: Path) -> None:
    # Flush the data before the rename so that after a power cut the name never points at an
    # empty file. Best effort: some file systems (and Windows) refuse fsync on a read handle.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `final_path`; move it onto `final_path` on success.

    The temporary name is ``.<name>.tmp-XXXXXXXX<suffix>`` (e.g. ``.model.keras.tmp-k2j4.keras``):
    hidden, recognisable as litter, and ending in the final suffix so libraries that pick a
    format from the extension (Keras, matplotlib, numpy) still do the right thing.

    The temporary file already exists (empty) when yielded -- creating it reserves the name
    safely -- so the writer must overwrite it. Parent directories are created. If the block
    raises (including KeyboardInterrupt), the temporary file is deleted and whatever was at
    `final_path` before is left untouched.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Keep the mode an existing file had; a new file gets the usual umask-derived mode rather
    # than mkstemp's private 0600, which would surprise other users of a shared reports/ dir.
    try:
        mode = final.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()

    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.tmp-", suffix=final.suffix, dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with disk_full_as_error(final):
            yield tmp
            os.chmod(tmp, mode)
            fsync_path(tmp)
            os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# No space, over quota, over the file-size limit: the same cure for the user.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextlib.contextmanager
def disk_full_as_error(target: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk while writing `target` into a one-line PipelineError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise PipelineError(
            f"{target}: could not be written ({os.strerror(exc.errno)}); free disk space and "
            "run again, the previous version is untouched"
        ) from None


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically, byte for byte (no newline translation)."""
    final = Path(path)
    with atomic_path(final) as tmp, open(tmp, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
    return final


def _json_default(value: Any) -> Any:
    # numpy scalars/arrays and paths turn up in metrics and run info; convert them here instead
    # of making every caller remember to.
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write `obj` as JSON (indent=2, sorted keys, trailing newline) to `path` atomically.

    NaN and infinity are refused (ValueError): they are not JSON, and DVC's metrics parser
    would choke on them later, far from the cause.
    """
    # Serialise before touching the file system so a bad object never even creates a temp file.
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default) + "\n"
    return atomic_write_text(path, text)
