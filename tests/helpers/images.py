"""Hostile pictures built for real: a PNG whose header declares any size, with no pixels."""

from __future__ import annotations

import struct
import zlib


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR (8-bit RGB) declaring width x height, one empty IDAT
    and IEND: decoding it fails, so only a check of the header can report its size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"")
        + png_chunk(b"IEND", b"")
    )
