"""Safe archive reading: real 7z and zip files, good and hostile, built in tmp_path."""

from __future__ import annotations

import itertools
import os
import threading
import zipfile
from pathlib import Path

import py7zr
import pytest

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.archive_members import check_member_name
from cifar10_mlops.data.kaggle import train_7z
from cifar10_mlops.data.kaggle.train_7z import (
    MAX_PNG_BYTES,
    list_train_7z,
    open_train_7z,
    read_train_7z,
)
from cifar10_mlops.data.kaggle.zip_members import extract_zip_members


def snapshot(root: Path) -> set[str]:
    """Every path under root (files, dirs, links), relative: to prove nothing new appeared."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- valid archives -------------------------------------------------------------------------


def test_valid_train_7z_lists_every_png(make_train_7z, png_bytes):
    archive = make_train_7z({i: png_bytes(i) for i in (1, 2, 3, 10, 49999)})
    assert list_train_7z(archive) == {
        1: "train/1.png",
        2: "train/2.png",
        3: "train/3.png",
        10: "train/10.png",
        49999: "train/49999.png",
    }


def test_valid_archive_without_directory_entry(make_train_7z, png_bytes):
    archive = make_train_7z({1: png_bytes(1)}, with_dir=False)
    assert list_train_7z(archive) == {1: "train/1.png"}


def test_read_train_7z_delivers_every_members_bytes(make_train_7z, png_bytes):
    payloads = {i: png_bytes(i) for i in range(1, 31)}
    archive = make_train_7z(payloads)
    seen: dict[int, bytes] = {}

    def on_member(image_id: int, data: bytes) -> None:
        assert image_id not in seen
        seen[image_id] = data

    members = read_train_7z(archive, on_member)
    assert seen == payloads
    assert members == {i: f"train/{i}.png" for i in payloads}


def test_read_train_7z_extracts_nothing_to_disk(make_train_7z, tmp_path, monkeypatch):
    archive = make_train_7z()
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    read_train_7z(archive, lambda i, d: None)
    assert snapshot(tmp_path) == before


# --- unreadable archives --------------------------------------------------------------------


def test_missing_archive(tmp_path):
    path = tmp_path / "train.7z"
    with pytest.raises(PipelineError) as info:
        list_train_7z(path)
    assert str(path) in one_line(info)
    assert "not found" in str(info.value)


def test_corrupt_7z_random_bytes(tmp_path):
    path = tmp_path / "train.7z"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(PipelineError) as info:
        read_train_7z(path, lambda i, d: None)
    assert str(path) in one_line(info)
    assert "not a readable 7z archive" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "train.7z"
    path.write_bytes(b"")
    with pytest.raises(PipelineError, match="not a readable 7z archive"):
        list_train_7z(path)


def test_truncated_7z(make_train_7z):
    archive = make_train_7z()
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError) as info:
        read_train_7z(archive, lambda i, d: None)
    assert str(archive) in one_line(info)


def test_corrupt_packed_data_with_intact_header(make_train_7z):
    # The header (at the end) still lists the members; the compressed stream is damaged.
    # py7zr then raises lzma.LZMAError, which must not escape as a traceback.
    archive = make_train_7z()
    data = bytearray(archive.read_bytes())
    for offset in range(64, 96):
        data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    assert len(list_train_7z(archive)) == 20  # the header is fine ...
    with pytest.raises(PipelineError) as info:  # ... the contents are not
        read_train_7z(archive, lambda i, d: None)
    assert str(archive) in one_line(info)
    assert "corrupt or truncated" in str(info.value)


@pytest.mark.parametrize("cut", [0.25, 0.5, 0.9, 0.99])
def test_every_truncation_is_a_pipeline_error(make_train_7z, cut):
    archive = make_train_7z()
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(PipelineError):
        read_train_7z(archive, lambda i, d: None)


def test_empty_archive(tmp_path, write_7z):
    archive = write_7z(tmp_path / "train.7z", [])
    with py7zr.SevenZipFile(archive) as seven:  # a genuine, readable, empty 7z
        assert seven.list() == []
    with pytest.raises(PipelineError) as info:
        list_train_7z(archive)
    assert str(archive) in one_line(info)
    assert "no train/<id>.png" in str(info.value)


def test_archive_with_only_the_directory(tmp_path, write_7z):
    archive = write_7z(tmp_path / "train.7z", [], directories=["train"])
    with pytest.raises(PipelineError, match="no train/<id>.png"):
        list_train_7z(archive)


# --- hostile member names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.png", "train/../../x.png", "train/../1.png"])
def test_path_traversal_member_is_refused(tmp_path, monkeypatch, name, png_bytes, write_7z):
    # Written with raw_names (py7zr's public writestr refuses '..'; see conftest._write_7z).
    work = tmp_path / "work"
    archive = write_7z(
        work / "raw" / "train.7z",
        [("train/1.png", png_bytes(1)), (name, png_bytes(2))],
        raw_names=True,
    )
    with py7zr.SevenZipFile(archive) as seven:  # the hostile name really is in the archive
        assert name in [entry.filename for entry in seven.list()]
    monkeypatch.chdir(work / "raw")
    before = snapshot(tmp_path)
    for call in (list_train_7z, lambda a: read_train_7z(a, lambda i, d: None)):
        with pytest.raises(PipelineError) as info:
            call(archive)
        message = one_line(info)
        assert f"'{name}'" in message
        assert "'..'" in message
    # cwd is tmp_path/work/raw, so wherever a '..' name could land (work/evil.png,
    # work/x.png, ...) is still inside tmp_path: nothing new there means nothing written.
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.rglob("evil.png")) and not list(tmp_path.rglob("x.png"))


@pytest.mark.parametrize("name", ["/train/1.png", "/tmp/evil.png", "C:/train/1.png"])
def test_absolute_member_is_refused(tmp_path, name, png_bytes, write_7z):
    archive = write_7z(tmp_path / "train.7z", [(name, png_bytes(1))], raw_names=True)
    before = snapshot(tmp_path)
    with pytest.raises(PipelineError) as info:
        read_train_7z(archive, lambda i, d: None)
    message = one_line(info)
    assert f"'{name}'" in message
    assert "absolute path" in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "name",
    [
        "train/readme.txt",
        "readme.txt",
        "train/0.png",  # ids start at 1
        "train/01.png",  # no leading zeros: '01' and '1' would be the same image
        "train/sub/1.png",
        "test/1.png",
        "train/1.PNG",
        "train/1.png.exe",
        "train/1.png\n",  # '$' alone would match before a trailing newline
    ],
)
def test_unexpected_member_is_refused(make_train_7z, name, png_bytes):
    archive = make_train_7z(members=[("train/1.png", png_bytes(1)), (name, png_bytes(2))])
    with pytest.raises(PipelineError) as info:
        list_train_7z(archive)
    message = one_line(info)
    assert repr(name) in message
    assert "unexpected member" in message


def test_unexpected_directory_is_refused(make_train_7z, png_bytes):
    archive = make_train_7z(
        members=[("train/1.png", png_bytes(1))], directories=["train", "train/extra"]
    )
    with pytest.raises(PipelineError, match="unexpected directory 'train/extra'"):
        list_train_7z(archive)


def test_symlink_member_is_refused(tmp_path, png_bytes, write_7z):
    outside = tmp_path / "secret.txt"
    outside.write_text("do not read me")
    archive = write_7z(
        tmp_path / "a" / "train.7z",
        [("train/1.png", png_bytes(1))],
        symlinks={"train/2.png": str(outside)},
    )
    with py7zr.SevenZipFile(archive) as seven:
        assert {e.filename: e.is_symlink for e in seven.list()} == {
            "train/1.png": False,
            "train/2.png": True,
        }
    with pytest.raises(PipelineError) as info:
        read_train_7z(archive, lambda i, d: None)
    message = one_line(info)
    assert "'train/2.png'" in message
    assert "link" in message


def test_duplicate_member_name_is_refused(make_train_7z, png_bytes):
    archive = make_train_7z(members=[("train/7.png", png_bytes(1)), ("train/7.png", png_bytes(2))])
    with pytest.raises(PipelineError, match="image id 7 appears twice"):
        list_train_7z(archive)


def test_archive_bomb_is_refused_before_extraction(make_train_7z):
    bomb = bytes(5 * 1024 * 1024)  # 5 MB of zeros: compresses to a few hundred bytes
    archive = make_train_7z(members=[("train/1.png", bomb)])
    assert archive.stat().st_size < 64 * 1024
    delivered = []
    with pytest.raises(PipelineError) as info:
        read_train_7z(archive, lambda i, d: delivered.append(i))
    message = one_line(info)
    assert "'train/1.png'" in message
    assert "bomb" in message
    assert delivered == []


def test_member_just_under_the_cap_is_accepted(make_train_7z):
    payload = bytes(MAX_PNG_BYTES)  # not a PNG, but archives.py only checks sizes and names
    archive = make_train_7z(members=[("train/1.png", payload)])
    seen = {}
    read_train_7z(archive, seen.__setitem__)
    assert seen == {1: payload}


def test_member_count_cap(make_train_7z, png_bytes):
    archive = make_train_7z({i: png_bytes(0) for i in range(1, 6)})
    with pytest.raises(PipelineError, match="more than the cap of 3"):
        list_train_7z(archive, max_members=3)


@pytest.mark.parametrize("name", ["", "a\x00b", "train\\..\\x.png"])
def test_check_member_name_rejects_invalid(name):
    with pytest.raises(PipelineError):
        check_member_name(Path("a.7z"), name)


def test_check_member_name_normalises():
    assert str(check_member_name(Path("a.7z"), "train/./1.png")) == "train/1.png"


# --- the in-memory reader: chunks, folders, CRCs, its worker thread -------------------------


def read_all(archive: Path) -> dict[int, bytes]:
    seen: dict[int, bytes] = {}

    def on_member(image_id: int, data: bytes) -> None:
        assert image_id not in seen
        seen[image_id] = data

    read_train_7z(archive, on_member)
    return seen


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "7z-decompress"]


def test_members_that_straddle_chunk_boundaries(make_train_7z, png_bytes, monkeypatch):
    # Chunks of 1,000 bytes cut every ~3 KB PNG in several places, and a few chunks hold
    # the end of one member and the start of the next.
    monkeypatch.setattr(train_7z, "_CHUNK_BYTES", 1000)
    payloads = {i: png_bytes(i) for i in range(1, 41)}
    assert read_all(make_train_7z(payloads)) == payloads


@pytest.mark.parametrize(
    "filters",
    [
        None,  # py7zr's default: x86 BCJ + LZMA2, as in the real-photo sample
        [{"id": py7zr.FILTER_LZMA}],
        [{"id": py7zr.FILTER_DEFLATE}],
        [{"id": py7zr.FILTER_BZIP2}],
        [{"id": py7zr.FILTER_COPY}],
    ],
    ids=["bcj-lzma2", "lzma", "deflate", "bzip2", "copy"],
)
def test_every_codec_py7zr_reads(tmp_path, png_bytes, filters, monkeypatch):
    monkeypatch.setattr(train_7z, "_CHUNK_BYTES", 5000)  # several chunks per archive
    payloads = {i: png_bytes(i) for i in range(1, 21)}
    archive = tmp_path / "train.7z"
    with py7zr.SevenZipFile(
        archive, mode="w", **({"filters": filters} if filters else {})
    ) as seven:
        for image_id, payload in payloads.items():
            seven.writestr(payload, f"train/{image_id}.png")
    assert read_all(archive) == payloads


def test_every_folder_of_a_non_solid_archive_is_read(tmp_path, write_7z, png_bytes):
    archive = write_7z(
        tmp_path / "train.7z", [(f"train/{i}.png", png_bytes(i)) for i in range(1, 6)]
    )
    with py7zr.SevenZipFile(archive, mode="a") as seven:  # append mode adds a second folder
        for i in range(6, 11):
            seven.writestr(png_bytes(i), f"train/{i}.png")
    with py7zr.SevenZipFile(archive) as seven:
        assert seven.header.main_streams.unpackinfo.numfolders == 2
    assert read_all(archive) == {i: png_bytes(i) for i in range(1, 11)}


def test_empty_member_is_delivered_as_empty_bytes(make_train_7z, png_bytes):
    archive = make_train_7z(members=[("train/1.png", png_bytes(1)), ("train/2.png", b"")])
    assert read_all(archive) == {1: png_bytes(1), 2: b""}


def test_member_with_a_bad_crc_is_refused(tmp_path, write_7z):
    # Stored (not compressed) data: flipping a byte leaves the decompressor nothing to notice,
    # so only the member's CRC can catch it.
    archive = tmp_path / "train.7z"
    with py7zr.SevenZipFile(archive, mode="w", filters=[{"id": py7zr.FILTER_COPY}]) as seven:
        for i in (1, 2, 3):
            seven.writestr(bytes([i]) * 500, f"train/{i}.png")
    data = bytearray(archive.read_bytes())
    data[32 + 700] ^= 0xFF  # inside train/2.png (32-byte signature header, then the data)
    archive.write_bytes(bytes(data))
    delivered = []
    with pytest.raises(PipelineError) as info:
        read_train_7z(archive, lambda i, d: delivered.append(i))
    message = one_line(info)
    assert "'train/2.png' fails its CRC check" in message
    assert 2 not in delivered  # the damaged bytes never reach the decoder


def test_password_protected_archive_is_one_line(tmp_path, png_bytes):
    archive = tmp_path / "train.7z"
    with py7zr.SevenZipFile(archive, mode="w", password="secret") as seven:
        seven.writestr(png_bytes(1), "train/1.png")
    with pytest.raises(PipelineError) as info:
        read_train_7z(archive, lambda i, d: None)
    assert "password-protected" in one_line(info)


def test_archive_that_changed_since_it_was_checked(make_train_7z, png_bytes):
    archive = make_train_7z({i: png_bytes(i) for i in (1, 2)})
    with pytest.raises(PipelineError, match="changed since it was checked"):
        read_train_7z(archive, lambda i, d: None, members={1: "train/1.png"})


def test_open_train_7z_lists_and_reads_in_one_pass(make_train_7z, png_bytes):
    payloads = {i: png_bytes(i) for i in (3, 1, 2)}
    with open_train_7z(make_train_7z(payloads)) as train_7z:
        assert train_7z.members == {i: f"train/{i}.png" for i in payloads}
        seen: dict[int, bytes] = {}
        train_7z.read(seen.__setitem__)
    assert seen == payloads


def test_reader_thread_ends_with_the_read(make_train_7z):
    read_all(make_train_7z())
    assert reader_threads() == []


def test_reader_thread_stops_when_the_consumer_fails(make_train_7z, png_bytes, monkeypatch):
    monkeypatch.setattr(train_7z, "_CHUNK_BYTES", 1000)  # many batches still to come

    def on_member(image_id: int, data: bytes) -> None:
        raise PipelineError(f"decoding {image_id} failed")

    with pytest.raises(PipelineError, match="decoding 1 failed"):
        read_train_7z(make_train_7z({i: png_bytes(i) for i in range(1, 41)}), on_member)
    assert reader_threads() == []


def test_prefetched_runs_at_most_depth_items_ahead():
    produced = itertools.count()

    def endless():
        while True:
            yield next(produced)

    batches = train_7z._prefetched(endless(), depth=2)
    assert next(batches) == 0
    batches.close()  # stops and joins the worker: an endless producer must not run on
    # One taken, two queued, one in the worker's hands waiting for room.
    assert next(produced) <= 4
    assert reader_threads() == []


def test_prefetched_raises_the_workers_error_here():
    def failing():
        yield 1
        raise ValueError("broken stream")

    batches = train_7z._prefetched(failing(), depth=2)
    assert next(batches) == 1
    with pytest.raises(ValueError, match="broken stream"):
        next(batches)


# --- zip ------------------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            # ZipInfo keeps the name verbatim (even '../x'); compress so zeros stay small.
            zipped.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_zip_copies_only_wanted_members_flat(tmp_path):
    archive = make_zip(
        tmp_path / "in" / "cifar-10.zip",
        {
            "train.7z": b"7z-bytes",
            "trainLabels.csv": b"id,label\n",
            "test.7z": b"x" * 100,
            "sampleSubmission.csv": b"id,label\n",
        },
    )
    target = tmp_path / "out"
    target.mkdir()
    extract_zip_members(archive, {"train.7z": 1000, "trainLabels.csv": 1000}, target)
    assert sorted(p.name for p in target.iterdir()) == ["train.7z", "trainLabels.csv"]
    assert (target / "train.7z").read_bytes() == b"7z-bytes"
    assert (target / "trainLabels.csv").read_bytes() == b"id,label\n"


def test_zip_member_in_a_folder_is_copied_flat(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"cifar/train.7z": b"abc"})
    target = tmp_path / "out"
    target.mkdir()
    extract_zip_members(archive, {"cifar/train.7z": 10}, target)
    assert (target / "train.7z").read_bytes() == b"abc"


def test_zip_missing_member(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"train.7z": b"abc"})
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(PipelineError) as info:
        extract_zip_members(archive, {"train.7z": 10, "trainLabels.csv": 10}, target)
    message = one_line(info)
    assert str(archive) in message
    assert "'trainLabels.csv' is missing" in message


@pytest.mark.parametrize("name", ["../evil.txt", "sub/../../evil.txt", "/tmp/evil.txt"])
def test_zip_traversal_name_is_refused(tmp_path, name):
    archive = make_zip(tmp_path / "in" / "a.zip", {"train.7z": b"abc", name: b"evil"})
    target = tmp_path / "in" / "out"
    target.mkdir()
    before = snapshot(tmp_path)
    for wanted in ({"train.7z": 10}, {name: 10}):
        with pytest.raises(PipelineError) as info:
            extract_zip_members(archive, wanted, target)
        assert f"'{name}'" in one_line(info)
    assert snapshot(tmp_path) == before


def test_zip_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        info = zipfile.ZipInfo("train.7z")
        info.create_system = 3  # unix
        info.external_attr = 0o120777 << 16  # symlink
        zipped.writestr(info, "/etc/passwd")
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(PipelineError, match="'train.7z' is a symlink"):
        extract_zip_members(archive, {"train.7z": 100}, target)
    assert list(target.iterdir()) == []


def test_zip_oversized_member_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"train.7z": bytes(1_000_000)})
    assert archive.stat().st_size < 10_000  # zeros compress: a small zip, big content
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(PipelineError) as info:
        extract_zip_members(archive, {"train.7z": 1000}, target)
    message = one_line(info)
    assert "'train.7z' declares 1000000 bytes" in message
    assert list(target.iterdir()) == []


def test_zip_member_at_the_cap_is_accepted(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"train.7z": bytes(1000)})
    target = tmp_path / "out"
    target.mkdir()
    extract_zip_members(archive, {"train.7z": 1000}, target)
    assert (target / "train.7z").stat().st_size == 1000


@pytest.mark.parametrize("content", [b"not a zip at all", b"", b"PK\x03\x04" + bytes(50)])
def test_non_zip_file_is_refused(tmp_path, content):
    path = tmp_path / "cifar-10.zip"
    path.write_bytes(content)
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(PipelineError) as info:
        extract_zip_members(path, {"train.7z": 10}, target)
    assert str(path) in one_line(info)
    assert "not a readable zip" in str(info.value)


def test_zip_member_count_is_checked_from_the_end_record_before_parsing(tmp_path, monkeypatch):
    # ZipFile() would build an object per entry first; the end record's declared count is
    # checked before. The cap is lowered here: a real zip of 200,001 entries takes long to
    # build, and the 16-bit count field of a plain zip stops at 65,535.
    from cifar10_mlops.data.kaggle import zip_members

    archive = make_zip(tmp_path / "cifar-10.zip", {"train.7z": b"7z", "trainLabels.csv": b"x"})
    data = bytearray(archive.read_bytes())
    end = data.rindex(b"PK\x05\x06")  # end of central directory: counts at +8 and +10
    data[end + 8 : end + 12] = (65535).to_bytes(2, "little") * 2
    archive.write_bytes(bytes(data))
    monkeypatch.setattr(zip_members, "MAX_MEMBERS", 1000)
    with pytest.raises(PipelineError) as info:
        extract_zip_members(archive, {"train.7z": 10}, tmp_path)
    assert one_line(info) == (
        f"{archive}: declares 65535 members, above the cap of 1000; this is not the Kaggle "
        "cifar-10.zip"
    )
