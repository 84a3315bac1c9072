"""Archive member names checked before a byte is extracted, the same rules for 7z, zip and tar.

No absolute paths, no `..`, no NUL or backslash, and a cap on the member count: a hostile or
broken archive fails with a one-line PipelineError instead of a write outside data/.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from cifar10_mlops.core.errors import PipelineError, quote

# The real set holds 50,000 training images; leave room for bigger user sets but not for bombs.
MAX_MEMBERS = 200_000


def check_member_name(archive: Path, name: str) -> PurePosixPath:
    """Reject names that could escape the target directory; return the normalised name."""
    if not name or "\x00" in name or "\\" in name:
        raise PipelineError(
            f"{archive}: member {quote(name)} has an invalid name; rebuild the archive"
        )
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise PipelineError(
            f"{archive}: member {quote(name)} is an absolute path; refusing to extract"
        )
    if ".." in path.parts:
        raise PipelineError(
            f"{archive}: member {quote(name)} climbs out with '..'; refusing to extract"
        )
    return path
