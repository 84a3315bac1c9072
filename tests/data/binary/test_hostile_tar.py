"""cifar-10-binary.tar.gz built to exhaust memory or time (issue 15): extended headers that
declare huge names, chains of them, and gigabytes after the end of the tar. Each archive is
real (Python's tarfile and gzip write it), sized just over the cap so the tests stay fast."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.binary.archive import (
    MAX_EXTENDED_HEADERS,
    MAX_LONG_NAME_BYTES,
    MAX_PAX_HEADER_BYTES,
    MAX_TRAILING_BYTES,
    extract_binary_tar,
)
from tests.helpers.cifar_binary import BATCHES_DIR, official_entries, tar_bytes
from tests.helpers.cifar_binary import write_gzip as gzipped


def with_member_name(name: str, tar_format=tarfile.GNU_FORMAT, **pax) -> bytes:
    """The official entries, the first data batch renamed (GNU writes a long-name block for a
    name over 100 bytes, pax an extended header)."""
    entries = official_entries(data_batches=1)
    entries[1].info.name = name
    entries[1].info.pax_headers = pax
    return tar_bytes(entries, tar_format)


def refused(archive: Path, target: Path) -> str:
    target.mkdir()
    with pytest.raises(PipelineError) as info:
        extract_binary_tar(archive, target)
    assert not list(target.iterdir())  # nothing was extracted
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_gnu_long_name_just_over_the_cap_is_refused_before_it_is_read(tmp_path):
    name = f"{BATCHES_DIR}/" + "n" * MAX_LONG_NAME_BYTES
    archive = gzipped(tmp_path / "cifar-10-binary.tar.gz", with_member_name(name))
    message = refused(archive, tmp_path / "out")
    # The block holds the name and its NUL; the header of the first member (the directory)
    # takes bytes 0-511, so the long-name header is the second.
    assert message == (
        f"{archive}: a tar header at byte 512 declares a GNU long name or link of "
        f"{len(name) + 1} bytes, above the cap of {MAX_LONG_NAME_BYTES}; this is not the "
        "CIFAR-10 binary archive, download cifar-10-binary.tar.gz again"
    )


def test_a_pax_header_over_the_cap_is_refused_before_it_is_read(tmp_path):
    data = with_member_name(
        f"{BATCHES_DIR}/data_batch_1.bin", tarfile.PAX_FORMAT, comment="c" * MAX_PAX_HEADER_BYTES
    )
    archive = gzipped(tmp_path / "cifar-10-binary.tar.gz", data)
    message = refused(archive, tmp_path / "out")
    assert message.startswith(
        f"{archive}: a tar header at byte 512 declares a pax extended header of "
    )
    assert f"above the cap of {MAX_PAX_HEADER_BYTES};" in message


def test_a_chain_of_small_long_name_headers_is_capped_too(tmp_path):
    # Each block is under the cap; tarfile would recurse once per block (RecursionError past
    # ~1000) and keep them all. The count of extended headers is capped instead.
    block = tarfile.TarInfo._create_gnu_long_header(  # what tarfile writes for a long name
        "x" * 200, tarfile.GNUTYPE_LONGNAME, "utf-8", "surrogateescape"
    )
    data = block * (MAX_EXTENDED_HEADERS + 1) + tar_bytes(official_entries(data_batches=1))
    archive = gzipped(tmp_path / "cifar-10-binary.tar.gz", data)
    message = refused(archive, tmp_path / "out")
    assert message == (
        f"{archive}: more than {MAX_EXTENDED_HEADERS} extended tar headers (long names or pax); "
        "this is not the CIFAR-10 binary archive, download cifar-10-binary.tar.gz again"
    )


def test_a_long_name_under_the_cap_is_quoted_as_a_short_prefix(tmp_path):
    name = f"{BATCHES_DIR}/" + "n" * 4000
    archive = gzipped(tmp_path / "cifar-10-binary.tar.gz", with_member_name(name))
    message = refused(archive, tmp_path / "out")
    assert message.startswith(f"{archive}: unexpected member '{BATCHES_DIR}/nnn")
    assert f"... ({len(name)} characters in all); expected only" in message
    assert len(message) < 400


def test_gzip_data_after_the_end_of_the_tar_is_capped(tmp_path):
    tar = tar_bytes(official_entries(data_batches=1))
    archive = gzipped(tmp_path / "cifar-10-binary.tar.gz", tar + bytes(MAX_TRAILING_BYTES + 1))
    # The zeros add ~1 KB to the file (gzip compresses them ~1000:1): small file, big stream.
    assert archive.stat().st_size < len(gzip.compress(tar)) + 5_000
    message = refused(archive, tmp_path / "out")
    assert message == (
        f"{archive}: more than {MAX_TRAILING_BYTES} bytes follow the end of the tar; this is "
        "not the CIFAR-10 binary archive, download cifar-10-binary.tar.gz again"
    )


def test_tar_padding_after_the_end_is_still_accepted(tmp_path):
    # GNU tar pads to a 10 KiB record; a few such records must not trip the cap.
    data = tar_bytes(official_entries(data_batches=1)) + bytes(10 * 10240)
    archive = gzipped(tmp_path / "cifar-10-binary.tar.gz", data)
    extract_binary_tar(archive, tmp_path / "out")
    assert (tmp_path / "out" / BATCHES_DIR / "data_batch_1.bin").is_file()


def test_a_fifo_given_as_the_archive_is_refused_without_blocking(tmp_path):
    import os

    archive = tmp_path / "cifar-10-binary.tar.gz"
    os.mkfifo(archive)
    message = refused(archive, tmp_path / "out")
    assert message == (
        f"{archive}: not a regular file; give the cifar-10-binary.tar.gz file itself"
    )
