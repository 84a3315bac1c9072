"""File checksums, read in 1 MiB chunks so a 170 MB archive never sits in memory at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_hash(path: Path, algorithm: str = "md5", digest=None):
    """The running hash object of a file's bytes: call hexdigest(), or keep updating it (a
    resumed download continues the hash of its partial file). With `digest`, that running hash
    is continued instead (several files hashed as one stream)."""
    digest = digest if digest is not None else hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest
