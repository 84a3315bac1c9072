"""The official binary CIFAR-10 format: safe extraction of cifar-10-binary.tar.gz, parsing of
the 3073-byte records, the raw-layout choice in preprocess, and data.source cifar10 / local
end to end (against a real HTTP server on 127.0.0.1). All archives are generated here."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import DataParams, SplitParams
from cifar10_mlops.data.acquire import acquire
from cifar10_mlops.data.arrays import load_npz
from cifar10_mlops.data.binary.archive import MAX_TAR_MEMBERS, extract_binary_tar
from cifar10_mlops.data.binary.batches import FULL_BATCH_BYTES, load_binary_batches, read_batches
from cifar10_mlops.data.raw_layout import detect_layout, load_split
from tests.helpers import REPO
from tests.helpers.cifar_binary import (
    BATCHES_DIR,
    RECORD_BYTES,
    dir_entry,
    file_entry,
    image_for,
    label_for,
    link_entry,
    make_batch,
    md5_of,
    official_entries,
    official_members,
    special_entry,
    unused_port,
    write_batches_dir,
    write_official_archive,
    write_tar_gz,
)
from tests.helpers.stages import run_stage_script


def one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


# --- parsing: the record layout ---------------------------------------------------------------


def test_record_layout_round_trips_to_the_exact_hwc_image(tmp_path):
    # Every pixel distinct per channel: a mix-up of rows, columns or planes shows at once.
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([rows * 8, cols * 8, (rows + cols) % 256], axis=-1).astype(np.uint8)
    record = bytearray([7])
    for channel in range(3):  # the CIFAR page: 1024 red, then 1024 green, then 1024 blue
        for row in range(32):
            for col in range(32):
                record.append(int(image[row, col, channel]))
    assert len(record) == RECORD_BYTES
    batch = tmp_path / "data_batch_1.bin"
    batch.write_bytes(bytes(record))

    data = read_batches([batch])
    assert data.images.shape == (1, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.images.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(data.images[0], image)
    assert data.labels.tolist() == [7] and data.ids.tolist() == [1]


def test_ids_run_over_the_data_batches_and_test_ids_follow(tmp_path):
    batches = write_batches_dir(
        tmp_path, official_members(data_batches=3, per_batch=30, test_count=30)
    )
    train, test = load_binary_batches(batches, official_test=True, test_size=0.2, seed=0)
    assert train.ids.tolist() == list(range(1, 91))
    assert test.ids.tolist() == list(range(91, 121))
    assert train.labels.tolist() == [label_for(i) for i in range(1, 91)]
    np.testing.assert_array_equal(train.images[44], image_for(45))
    np.testing.assert_array_equal(test.images[0], image_for(1000))  # test batch content
    assert train.labels.dtype == np.int64 and train.ids.dtype == np.int64


def test_without_official_test_the_data_batches_are_split_and_test_batch_unused(tmp_path):
    batches = write_batches_dir(
        tmp_path, official_members(data_batches=3, per_batch=30, test_count=30)
    )
    train, test = load_binary_batches(batches, official_test=False, test_size=0.2, seed=1)
    assert len(test.ids) == 18 and len(train.ids) == 72
    assert sorted(train.ids.tolist() + test.ids.tolist()) == list(range(1, 91))
    assert set(np.bincount(test.labels, minlength=10).tolist()) <= {1, 2}  # 9 per class: stratified
    again, _ = load_binary_batches(batches, official_test=False, test_size=0.2, seed=1)
    assert again.ids.tolist() == train.ids.tolist()  # seeded
    for row, image_id in enumerate(test.ids[:3]):
        np.testing.assert_array_equal(test.images[row], image_for(int(image_id)))


def test_fewer_batches_than_the_full_set_are_valid(tmp_path):
    batches = write_batches_dir(
        tmp_path, official_members(data_batches=1, per_batch=40, test_count=10)
    )
    train, test = load_binary_batches(batches, official_test=True, test_size=0.2, seed=0)
    assert len(train.ids) == 40 and test.ids.tolist() == list(range(41, 51))


def test_official_test_without_test_batch_says_how_to_fix(tmp_path):
    batches = write_batches_dir(tmp_path, official_members(test_count=0))
    with pytest.raises(PipelineError) as info:
        load_binary_batches(batches, official_test=True, test_size=0.2, seed=0)
    message = one_line(info)
    assert str(batches / "test_batch.bin") in message
    assert "split.official_test: false" in message


def test_label_out_of_range_names_the_file_and_record(tmp_path):
    batch = tmp_path / "data_batch_1.bin"
    data = bytearray(make_batch(1, 10))
    data[7 * RECORD_BYTES] = 10  # record 7's label byte
    batch.write_bytes(bytes(data))
    with pytest.raises(PipelineError) as info:
        read_batches([batch])
    message = one_line(info)
    assert str(batch) in message and "record 7" in message and "label 10" in message


@pytest.mark.parametrize(
    "size", [0, RECORD_BYTES - 1, 2 * RECORD_BYTES + 5, FULL_BATCH_BYTES + RECORD_BYTES]
)
def test_batch_size_must_be_whole_records(tmp_path, size):
    batch = tmp_path / "data_batch_1.bin"
    batch.write_bytes(bytes(size))
    with pytest.raises(PipelineError) as info:
        read_batches([batch])
    message = one_line(info)
    assert str(batch) in message and f"{size} bytes" in message


def test_no_data_batch_is_an_error(tmp_path):
    batches = write_batches_dir(tmp_path, {f"{BATCHES_DIR}/test_batch.bin": make_batch(1, 5)})
    with pytest.raises(PipelineError) as info:
        load_binary_batches(batches, official_test=False, test_size=0.2, seed=0)
    assert str(batches) in one_line(info) and "data_batch" in str(info.value)


# --- the raw layout preprocess reads -----------------------------------------------------------


def test_layout_detection(tmp_path, make_kaggle_dir):
    kaggle, _, _ = make_kaggle_dir(20)
    assert detect_layout(kaggle) == "kaggle"
    write_batches_dir(tmp_path / "bin", official_members())
    assert detect_layout(tmp_path / "bin") == "binary"
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError) as info:
        detect_layout(tmp_path / "empty")
    assert str(tmp_path / "empty") in one_line(info)


def test_load_split_reads_the_binary_layout(tmp_path):
    write_batches_dir(tmp_path, official_members())
    train, test = load_split(tmp_path, SplitParams(official_test=True))
    assert len(train.ids) == 90 and len(test.ids) == 30


def test_official_test_with_the_kaggle_layout_is_a_clear_error(make_kaggle_dir):
    kaggle, _, _ = make_kaggle_dir(20)
    with pytest.raises(PipelineError) as info:
        load_split(kaggle, SplitParams(official_test=True))
    message = one_line(info)
    assert "split.official_test" in message and str(kaggle) in message
    assert "split.official_test: false" in message and "data.source: cifar10" in message
    train, test = load_split(kaggle, SplitParams(official_test=False, test_size=0.5))
    assert len(train.ids) + len(test.ids) == 20


def test_preprocess_stage_writes_the_official_split(tmp_path):
    root = tmp_path / "proj"
    write_batches_dir(root / "data" / "raw", official_members())
    (root / "dvc.yaml").write_text("")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.setdefault("split", {})["official_test"] = True
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_stage_script(root, "preprocess")
    assert result.returncode == 0, result.stderr
    train = load_npz(root / "data" / "processed" / "train.npz")
    test = load_npz(root / "data" / "processed" / "test.npz")
    assert train.ids.tolist() == list(range(1, 91)) and test.ids.tolist() == list(range(91, 121))


# --- extraction ---------------------------------------------------------------------------------


def test_extract_writes_exactly_the_archive_members(tmp_path):
    archive = write_official_archive(tmp_path / "cifar-10-binary.tar.gz")
    target = tmp_path / "out"
    extract_binary_tar(archive, target)
    members = official_members()
    assert snapshot(target) == {BATCHES_DIR, *members}
    for name, payload in members.items():
        assert (target / name).read_bytes() == payload


def test_extract_accepts_dot_slash_names(tmp_path):
    entries = [dir_entry(".")] + [
        file_entry(f"./{name}", payload) for name, payload in official_members().items()
    ]
    archive = write_tar_gz(tmp_path / "a.tar.gz", entries)
    extract_binary_tar(archive, tmp_path / "out")
    assert (tmp_path / "out" / BATCHES_DIR / "data_batch_1.bin").read_bytes() == make_batch(1, 30)


def _valid_plus(entry):
    return official_entries() + [entry]


HOSTILE = {
    "traversal": (_valid_plus(file_entry(f"{BATCHES_DIR}/../../evil.bin", b"x")), "'..'"),
    "absolute": (_valid_plus(file_entry("/tmp/evil.bin", b"x")), "absolute"),
    "symlink": (_valid_plus(link_entry(f"{BATCHES_DIR}/data_batch_4.bin", "/etc/passwd")), "link"),
    "hardlink": (
        _valid_plus(
            link_entry(
                f"{BATCHES_DIR}/data_batch_4.bin", f"{BATCHES_DIR}/data_batch_1.bin", hard=True
            )
        ),
        "link",
    ),
    "char-device": (
        _valid_plus(special_entry(f"{BATCHES_DIR}/data_batch_4.bin", tarfile.CHRTYPE)),
        "device",
    ),
    "fifo": (
        _valid_plus(special_entry(f"{BATCHES_DIR}/data_batch_4.bin", tarfile.FIFOTYPE)),
        "fifo",
    ),
    "unexpected-file": (
        _valid_plus(file_entry(f"{BATCHES_DIR}/run.sh", b"#!/bin/sh\n")),
        "unexpected member",
    ),
    "unexpected-top-level": (
        _valid_plus(file_entry("data_batch_4.bin", make_batch(1, 1))),
        "unexpected member",
    ),
    "unexpected-dir": (_valid_plus(dir_entry("other")), "unexpected directory"),
    "oversized-batch": (
        _valid_plus(
            file_entry(f"{BATCHES_DIR}/data_batch_4.bin", bytes(FULL_BATCH_BYTES + RECORD_BYTES))
        ),
        "above the cap",
    ),
    "oversized-meta": (
        [
            dir_entry(BATCHES_DIR),
            file_entry(f"{BATCHES_DIR}/data_batch_1.bin", make_batch(1, 2)),
            file_entry(f"{BATCHES_DIR}/batches.meta.txt", b"x" * 100_000),
        ],
        "above the cap",
    ),
    "partial-record": (
        _valid_plus(file_entry(f"{BATCHES_DIR}/data_batch_4.bin", make_batch(1, 2)[:-1])),
        "multiple",
    ),
    "empty-batch": (_valid_plus(file_entry(f"{BATCHES_DIR}/data_batch_4.bin", b"")), "multiple"),
    "duplicate": (
        _valid_plus(file_entry(f"{BATCHES_DIR}/data_batch_1.bin", make_batch(1, 1))),
        "twice",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused_before_anything_is_written(tmp_path, case):
    entries, phrase = HOSTILE[case]
    archive = write_tar_gz(tmp_path / "in" / "cifar-10-binary.tar.gz", entries)
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(PipelineError) as info:
        extract_binary_tar(archive, target)
    message = one_line(info)
    assert str(archive) in message
    assert f"'{entries[-1].info.name}'" in message  # names the member
    assert phrase in message
    assert snapshot(target) == set()
    assert snapshot(tmp_path) == {"in", "in/cifar-10-binary.tar.gz", "out"}  # nothing escaped


def test_too_many_members_are_refused(tmp_path):
    entries = [dir_entry("."), *official_entries(data_batches=5)]
    entries.append(file_entry(f"{BATCHES_DIR}/extra.bin", b""))
    assert len(entries) == MAX_TAR_MEMBERS + 1
    archive = write_tar_gz(tmp_path / "a.tar.gz", entries)
    with pytest.raises(PipelineError) as info:
        extract_binary_tar(archive, tmp_path / "out")
    assert str(archive) in one_line(info) and f"more than {MAX_TAR_MEMBERS} members" in str(
        info.value
    )


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 64):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _html(path: Path) -> None:
    path.write_bytes(b"<html><body>404 Not Found</body></html>\n")


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage", [_corrupt, _truncate, _html, _zero_bytes], ids=lambda f: f.__name__[1:]
)
def test_unreadable_archives_say_download_again(tmp_path, damage):
    archive = write_official_archive(tmp_path / "cifar-10-binary.tar.gz")
    damage(archive)
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(PipelineError) as info:
        extract_binary_tar(archive, target)
    message = one_line(info)
    assert str(archive) in message and "download it again" in message
    assert snapshot(target) == set()


def test_an_empty_tar_is_refused(tmp_path):
    archive = write_tar_gz(tmp_path / "cifar-10-binary.tar.gz", [])
    with pytest.raises(PipelineError) as info:
        extract_binary_tar(archive, tmp_path / "out")
    assert str(archive) in one_line(info) and "data_batch" in str(info.value)


def test_an_archive_without_data_batches_is_refused(tmp_path):
    entries = [
        dir_entry(BATCHES_DIR),
        file_entry(f"{BATCHES_DIR}/test_batch.bin", make_batch(1, 3)),
    ]
    archive = write_tar_gz(tmp_path / "cifar-10-binary.tar.gz", entries)
    with pytest.raises(PipelineError) as info:
        extract_binary_tar(archive, tmp_path / "out")
    assert str(archive) in one_line(info) and "data_batch" in str(info.value)


# --- acquire: data.source local with the binary archive -----------------------------------------


@pytest.fixture
def raw_dir(tmp_path) -> Path:
    return tmp_path / "project" / "data" / "raw"


def raw_files(raw_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(raw_dir)): p.read_bytes() for p in raw_dir.rglob("*") if p.is_file()}


def test_local_binary_archive_as_a_file(tmp_path, raw_dir):
    archive = write_official_archive(tmp_path / "dl" / "my-copy.tar.gz")
    acquire(DataParams(source="local", path=str(archive)), raw_dir)
    assert raw_files(raw_dir) == official_members()
    assert sorted(p.name for p in raw_dir.parent.iterdir()) == ["raw"]


def test_local_binary_archive_in_a_directory(tmp_path, raw_dir):
    archive = write_official_archive(tmp_path / "dl" / "cifar-10-binary.tar.gz", data_batches=2)
    acquire(DataParams(source="local", path=str(archive.parent)), raw_dir)
    assert raw_files(raw_dir) == official_members(data_batches=2)
    train, test = load_split(raw_dir, SplitParams(official_test=True))
    assert len(train.ids) == 60 and len(test.ids) == 30


@pytest.fixture
def previous_raw(raw_dir, make_kaggle_dir):
    make_kaggle_dir(20, directory=raw_dir)
    return raw_files(raw_dir)


def test_local_bad_archive_leaves_the_previous_raw_intact(tmp_path, raw_dir, previous_raw):
    archive = write_official_archive(tmp_path / "dl" / "cifar-10-binary.tar.gz")
    _truncate(archive)
    with pytest.raises(PipelineError) as info:
        acquire(DataParams(source="local", path=str(archive.parent)), raw_dir)
    assert str(archive) in one_line(info)
    assert raw_files(raw_dir) == previous_raw
    assert sorted(p.name for p in raw_dir.parent.iterdir()) == ["raw"]


def test_local_binary_archive_with_a_bad_label_fails_in_the_download_stage(
    tmp_path, raw_dir, previous_raw
):
    members = official_members()
    batch = bytearray(members[f"{BATCHES_DIR}/data_batch_2.bin"])
    batch[3 * RECORD_BYTES] = 200
    members[f"{BATCHES_DIR}/data_batch_2.bin"] = bytes(batch)
    archive = write_tar_gz(
        tmp_path / "dl" / "cifar-10-binary.tar.gz", [file_entry(n, p) for n, p in members.items()]
    )
    with pytest.raises(PipelineError) as info:
        acquire(DataParams(source="local", path=str(archive)), raw_dir)
    message = one_line(info)
    assert "data_batch_2.bin" in message and "record 3" in message
    assert ".raw.tmp" not in message  # names the user's archive, not the deleted staging copy
    assert raw_files(raw_dir) == previous_raw


# --- acquire: data.source cifar10 against a local HTTP server -------------------------------------


def cifar10_params(url: str, md5: str) -> DataParams:
    return DataParams(source="cifar10", cifar10={"url": url, "md5": md5, "timeout_s": 10})


def test_cifar10_source_downloads_verifies_and_extracts(
    tmp_path, raw_dir, previous_raw, archive_server
):
    archive = write_official_archive(tmp_path / "site" / "cifar-10-binary.tar.gz")
    url = archive_server.serve("/~kriz/cifar-10-binary.tar.gz", archive.read_bytes())
    downloads = tmp_path / "project" / "data" / "downloads"
    acquire(cifar10_params(url, md5_of(archive)), raw_dir, downloads_dir=downloads)

    assert raw_files(raw_dir) == official_members()  # the old Kaggle files are gone
    assert sorted(p.name for p in raw_dir.parent.iterdir()) == ["downloads", "raw"]
    assert (downloads / "cifar-10-binary.tar.gz").read_bytes() == archive.read_bytes()
    train, test = load_split(raw_dir, SplitParams(official_test=True))
    assert len(train.ids) == 90 and len(test.ids) == 30

    # A second run (e.g. after another data param changed) reuses the verified archive.
    acquire(cifar10_params(url, md5_of(archive)), raw_dir, downloads_dir=downloads)
    assert len(archive_server.requests) == 1
    assert raw_files(raw_dir) == official_members()


@pytest.mark.parametrize("failure", ["404", "md5"])
def test_cifar10_source_failure_leaves_the_previous_raw_intact(
    tmp_path, raw_dir, previous_raw, archive_server, failure
):
    archive = write_official_archive(tmp_path / "site" / "cifar-10-binary.tar.gz")
    url = archive_server.serve(
        "/c.tar.gz", archive.read_bytes(), "404" if failure == "404" else "ok"
    )
    md5 = "f" * 32 if failure == "md5" else md5_of(archive)
    downloads = tmp_path / "project" / "data" / "downloads"
    with pytest.raises(PipelineError) as info:
        acquire(cifar10_params(url, md5), raw_dir, downloads_dir=downloads)
    assert url in one_line(info)
    assert raw_files(raw_dir) == previous_raw
    assert not (downloads / "cifar-10-binary.tar.gz").exists()
    assert not any(p.name.startswith(".raw") for p in raw_dir.parent.iterdir())  # no staging left


def test_cifar10_source_resumes_a_cut_download_on_the_next_run(tmp_path, raw_dir, archive_server):
    archive = write_official_archive(tmp_path / "site" / "cifar-10-binary.tar.gz")
    url = archive_server.serve("/c.tar.gz", archive.read_bytes(), "cut", "ok")
    downloads = tmp_path / "downloads"
    params = cifar10_params(url, md5_of(archive))
    with pytest.raises(PipelineError, match="resume"):
        acquire(params, raw_dir, downloads_dir=downloads)
    assert not raw_dir.exists()
    acquire(params, raw_dir, downloads_dir=downloads)
    assert archive_server.range_headers()[1] is not None
    assert raw_files(raw_dir) == official_members()


def test_download_stage_reports_an_unreachable_server_in_one_line(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "dvc.yaml").write_text("")
    url = f"http://127.0.0.1:{unused_port()}/cifar-10-binary.tar.gz"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = {"source": "cifar10", "cifar10": {"url": url, "timeout_s": 5}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_stage_script(root, "download")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {url}: cannot reach 127.0.0.1")
    assert "Traceback" not in result.stderr
    assert not (root / "data" / "raw").exists()
