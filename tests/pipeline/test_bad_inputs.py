"""The bad-input matrix: every broken or hostile input, run through the real stage script.

Each case: the stage exits 2, prints exactly one line on stderr (the message below, which the
error table in docs/errors.md repeats word for word), no traceback, and the stage's previous good outputs are
byte-for-byte what they were. A project with good outputs is built once (download + preprocess
on a small, valid Kaggle-layout set); every case breaks one thing in a copy of it.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import py7zr
import pytest
import yaml
from PIL import Image

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.data import synthetic
from tests.helpers import REPO
from tests.helpers.archives import encode_png, random_image, write_7z
from tests.helpers.cifar_binary import (
    long_name_archive,
    official_entries,
    tar_bytes,
    write_gzip,
    write_official_archive,
)
from tests.helpers.images import png_header_only
from tests.helpers.stages import run_stage_script

ERRORS_PAGE = REPO / "docs" / "errors.md"
GOOD_COUNT = 60


@dataclass(frozen=True)
class Project:
    root: Path  # the copy under test, with the last good outputs in data/
    source: Path  # the user's input directory (data.path)

    def write_params(self, changes: dict | None = None, text: str | None = None) -> None:
        params = {"data": {"source": "local", "path": str(self.source)}}
        for section, values in (changes or {}).items():
            params.setdefault(section, {}).update(values)
        (self.root / "params.yaml").write_text(text if text is not None else yaml.safe_dump(params))

    def rewrite_7z(self, directory: Path, images: dict[int, bytes], **kwargs) -> None:
        members = [(f"train/{image_id}.png", png) for image_id, png in images.items()]
        (directory / TRAIN_ARCHIVE).unlink(missing_ok=True)
        write_7z(directory / TRAIN_ARCHIVE, members, **kwargs)

    def rewrite_labels(self, directory: Path, rows: list[str]) -> None:
        (directory / LABELS_CSV).write_text("id,label\n" + "".join(f"{row}\n" for row in rows))


def run_stage(
    root: Path, stage: str, preexec: Callable[[], None] | None = None, **env_changes: str
) -> subprocess.CompletedProcess:
    return run_stage_script(
        root, stage, timeout=300, preexec=preexec, no_proxy="127.0.0.1,localhost", **env_changes
    )


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def good_project(tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp("good")
    project = Project(base / "project", base / "user-files")
    project.root.mkdir()
    synthetic.write_kaggle_layout(project.source, GOOD_COUNT, 0)
    project.write_params()
    for stage in ("download", "preprocess"):
        result = run_stage(project.root, stage)
        assert result.returncode == 0, result.stderr
    return project


@pytest.fixture
def project(good_project, tmp_path) -> Project:
    copy = Project(tmp_path / "project", tmp_path / "user-files")
    shutil.copytree(good_project.root, copy.root)
    shutil.copytree(good_project.source, copy.source)
    copy.write_params()
    return copy


def label_rows(p: Project) -> list[str]:
    """The good labels file's rows, without the header."""
    return (p.source / LABELS_CSV).read_text().splitlines()[1:]


def png_of(image_id: int) -> bytes:
    return encode_png(random_image(image_id))


def all_pngs(**replace: bytes) -> dict[int, bytes]:
    images = {image_id: png_of(image_id) for image_id in range(1, GOOD_COUNT + 1)}
    images.update({int(key.lstrip("_")): value for key, value in replace.items()})
    return images


def translucent_png() -> bytes:
    alpha = np.full((32, 32), 255, dtype=np.uint8)
    alpha[0, 0] = 0
    return encode_png(Image.fromarray(np.dstack([random_image(3), alpha]), mode="RGBA"))


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(random_image(3)).save(buffer, format="JPEG")
    return buffer.getvalue()


# --- the cases: (id, stage, break it, expected message) ----------------------------------------
# {src} is the user's data.path, {root} the project root; docs/errors.md shows them as <data.path>
# and <repo>.


def corrupt_7z(p: Project) -> None:
    (p.source / TRAIN_ARCHIVE).write_bytes(b"this is not a 7z archive\n" * 200)


def truncated_7z(p: Project) -> None:
    archive = p.source / TRAIN_ARCHIVE
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])


def empty_7z(p: Project) -> None:
    (p.source / TRAIN_ARCHIVE).unlink()
    with py7zr.SevenZipFile(p.source / TRAIN_ARCHIVE, "w"):
        pass


def traversal_member(p: Project) -> None:
    p.rewrite_7z(p.source, {1: png_of(1)})
    write_7z(p.source / TRAIN_ARCHIVE, [("../evil.png", png_of(1))], raw_names=True)


def symlink_member(p: Project) -> None:
    (p.source / TRAIN_ARCHIVE).unlink()
    write_7z(
        p.source / TRAIN_ARCHIVE,
        [("train/2.png", png_of(2))],
        symlinks={"train/1.png": "/etc/passwd"},
    )


def bomb_member(p: Project) -> None:
    p.rewrite_7z(p.source, all_pngs(_1=bytes(50 * 1024 * 1024)))


def missing_labels(p: Project) -> None:
    (p.source / LABELS_CSV).unlink()


def empty_labels(p: Project) -> None:
    (p.source / LABELS_CSV).write_text("")


def unknown_class(p: Project) -> None:
    p.rewrite_labels(p.source, ["1,cow", *label_rows(p)[1:]])


def duplicate_id(p: Project) -> None:
    p.rewrite_labels(p.source, [*label_rows(p), "1,cat"])


def image_without_label(p: Project) -> None:
    p.rewrite_labels(p.source, [row for row in label_rows(p) if not row.startswith("5,")])


def label_without_image(p: Project) -> None:
    p.rewrite_labels(p.source, [*label_rows(p), f"{GOOD_COUNT + 1},cat"])


def missing_data_path(p: Project) -> None:
    shutil.rmtree(p.source)


def raw_image(replace: Callable[[], bytes]) -> Callable[[Project], None]:
    def setup(p: Project) -> None:
        p.rewrite_7z(p.root / "data" / "raw", all_pngs(_3=replace()), directories=["train"])

    return setup


def class_too_small(p: Project) -> None:
    rows = [
        f"{image_id},{'truck' if image_id == 1 else 'cat'}" for image_id in range(1, GOOD_COUNT + 1)
    ]
    p.rewrite_labels(p.root / "data" / "raw", rows)


def params_change(changes: dict) -> Callable[[Project], None]:
    return lambda p: p.write_params(changes)


def wrong_size_png() -> bytes:
    return encode_png(Image.new("RGB", (31, 32), (9, 9, 9)))


# --- hostile input (issue 15): each would have cost gigabytes, hung, or passed download -----


def gnu_long_name(p: Project) -> None:
    # 4,097 name bytes (4,098 with the NUL): just over the cap; a real attack declares 1 GiB.
    archive = long_name_archive(p.source / "cifar-10-binary.tar.gz", 4097)
    p.write_params({"data": {"path": str(archive)}})


def gzip_trailing_zeros(p: Project) -> None:
    tar = tar_bytes(official_entries(data_batches=1))
    archive = write_gzip(p.source / "cifar-10-binary.tar.gz", tar + bytes(2 * 1024 * 1024))
    p.write_params({"data": {"path": str(archive)}})


def fifo_as_zip(p: Project) -> None:
    os.mkfifo(p.source / "cifar-10.zip")
    p.write_params({"data": {"path": str(p.source / "cifar-10.zip")}})


def empty_members(p: Project) -> None:
    p.rewrite_7z(p.source, {image_id: b"" for image_id in range(1, GOOD_COUNT + 1)})


def huge_png_header(p: Project) -> None:
    p.rewrite_7z(p.source, all_pngs(_3=png_header_only(13000, 13000)))


def yaml_alias_bomb(p: Project) -> None:
    levels = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
        f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 9)
    ]
    bomb = "".join(f"  {line}\n" for line in levels)
    p.write_params(text=f"data:\n  source: local\n  path: {p.source}\nx:\n{bomb}")


def params_text(text: str | bytes) -> Callable[[Project], None]:
    def setup(p: Project) -> None:
        data = text if isinstance(text, bytes) else text.encode()
        (p.root / "params.yaml").write_bytes(data)

    return setup


RAW = "{root}/data/raw"
CASES = [
    (
        "corrupt-7z",
        "download",
        corrupt_7z,
        "{src}/train.7z: not a readable 7z archive (Bad7zFile); download it again",
    ),
    (
        "truncated-7z",
        "download",
        truncated_7z,
        "{src}/train.7z: not a readable 7z archive (Bad7zFile); download it again",
    ),
    (
        "empty-archive",
        "download",
        empty_7z,
        "{src}/train.7z: holds no train/<id>.png images; the archive is empty",
    ),
    (
        "path-traversal-member",
        "download",
        traversal_member,
        "{src}/train.7z: member '../evil.png' climbs out with '..'; refusing to extract",
    ),
    (
        "symlink-member",
        "download",
        symlink_member,
        "{src}/train.7z: member 'train/1.png' is a link or special file; refusing it",
    ),
    (
        "archive-bomb",
        "download",
        bomb_member,
        "{src}/train.7z: member 'train/1.png' declares 52428800 bytes, above the 65536-byte cap "
        "for a 32x32 PNG; refusing a possible archive bomb",
    ),
    (
        "missing-labels-csv",
        "download",
        missing_labels,
        "data.path '{src}': holds neither train.7z + trainLabels.csv, nor cifar-10.zip, nor "
        "cifar-10-binary.tar.gz; put the data set files there",
    ),
    (
        "empty-labels-csv",
        "download",
        empty_labels,
        "{src}/trainLabels.csv: empty file; expected a CSV with header id,label",
    ),
    (
        "unknown-class-name",
        "download",
        unknown_class,
        "{src}/trainLabels.csv: line 2: unknown class name 'cow'; expected one of airplane, "
        "automobile, bird, cat, deer, dog, frog, horse, ship, truck",
    ),
    (
        "duplicate-id",
        "download",
        duplicate_id,
        "{src}/trainLabels.csv: line 62: duplicate id 1; keep one row per image",
    ),
    (
        "image-without-label",
        "download",
        image_without_label,
        "{src}/trainLabels.csv: no label row for image 'train/5.png' (1 unlabelled); add the rows "
        "or remove the images",
    ),
    (
        "label-without-image",
        "download",
        label_without_image,
        "{src}/train.7z: no image 'train/61.png' for the label row with id 61 (1 missing); the "
        "archive is incomplete",
    ),
    (
        "data-path-missing",
        "download",
        missing_data_path,
        "params.yaml: data.path '{src}' does not exist; fix data.path",
    ),
    (
        "wrong-image-size",
        "preprocess",
        raw_image(wrong_size_png),
        RAW + "/train.7z: member 'train/3.png': image is 31x32; CIFAR-10 images are 32x32, "
        "resize it or remove it",
    ),
    (
        "wrong-image-mode",
        "preprocess",
        raw_image(translucent_png),
        RAW + "/train.7z: member 'train/3.png': image has transparent pixels (mode RGBA); "
        "CIFAR-10 images are opaque RGB, flatten it onto a background or remove it",
    ),
    (
        "not-a-png",
        "preprocess",
        raw_image(jpeg_bytes),
        RAW + "/train.7z: member 'train/3.png': not a readable PNG image; replace or remove it",
    ),
    (
        "class-too-small",
        "preprocess",
        class_too_small,
        "split.test_size=0.2: class 'truck' has 1 image(s) of 60, too few for a stratified split; "
        "add images or change split.test_size",
    ),
    (
        "unknown-params-key",
        "preprocess",
        params_change({"train": {"epoch": 3}}),
        "{root}/params.yaml: unknown key 'train.epoch'; remove it or fix its spelling",
    ),
    (
        "params-wrong-type",
        "preprocess",
        params_change({"train": {"epochs": "eight"}}),
        "{root}/params.yaml: key 'train.epochs' = 'eight': Input should be a valid integer; fix "
        "the value",
    ),
    (
        "test-size-1.5",
        "preprocess",
        params_change({"split": {"test_size": 1.5}}),
        "{root}/params.yaml: key 'split.test_size' = 1.5: Input should be less than 1; fix the value",
    ),
    (
        "epochs-0",
        "preprocess",
        params_change({"train": {"epochs": 0}}),
        "{root}/params.yaml: key 'train.epochs' = 0: Input should be greater than or equal to 1; "
        "fix the value",
    ),
    (
        "batch-size-minus-1",
        "preprocess",
        params_change({"train": {"batch_size": -1}}),
        "{root}/params.yaml: key 'train.batch_size' = -1: Input should be greater than or equal "
        "to 1; fix the value",
    ),
    (
        "tar-gnu-long-name",
        "download",
        gnu_long_name,
        "{src}/cifar-10-binary.tar.gz: a tar header at byte 512 declares a GNU long name or link "
        "of 4098 bytes, above the cap of 4096; this is not the CIFAR-10 binary archive, download "
        "cifar-10-binary.tar.gz again",
    ),
    (
        "gzip-trailing-zeros",
        "download",
        gzip_trailing_zeros,
        "{src}/cifar-10-binary.tar.gz: more than 1048576 bytes follow the end of the tar; this is "
        "not the CIFAR-10 binary archive, download cifar-10-binary.tar.gz again",
    ),
    (
        "fifo-as-archive",
        "download",
        fifo_as_zip,
        "data.path: '{src}/cifar-10.zip' is not a regular file (a directory, FIFO, device or "
        "socket); put the data set file itself there",
    ),
    (
        "empty-png-members",
        "download",
        empty_members,
        "{src}/train.7z: member 'train/1.png': not a readable PNG image (0 bytes); replace or "
        "remove it",
    ),
    (
        "huge-png-header",
        "download",
        huge_png_header,
        "{src}/train.7z: member 'train/3.png': image is 13000x13000; CIFAR-10 images are 32x32, "
        "resize it or remove it",
    ),
    (
        "yaml-alias-bomb",
        "preprocess",
        yaml_alias_bomb,
        "{root}/params.yaml: line 6: YAML aliases (*name) are not allowed; write the value out "
        "in full",
    ),
    (
        "params-not-utf8",
        "preprocess",
        params_text("train:\n  epochs: 3  # caf\xe9\n".encode("latin-1")),
        "{root}/params.yaml: byte 25 is not UTF-8; save the file as UTF-8 text",
    ),
    (
        "params-empty",
        "preprocess",
        params_text(""),
        "{root}/params.yaml: empty; restore it (git checkout params.yaml) or write the sections "
        "you want",
    ),
]


def disk_full_limit() -> None:
    # Files may grow to 64 KiB: the first npz write fails the way a full disk does (EFBIG
    # here, ENOSPC on a real one: both are reported the same way). Python ignores SIGXFSZ.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


DISK_FULL_MESSAGE = (
    "{root}/data/processed/train.npz: could not be written (File too large); free disk space "
    "and run again, the previous version is untouched"
)
OUTPUTS = {"download": "data/raw", "preprocess": "data/processed"}


def assert_clean_failure(result, expected: str, before: dict, after: dict) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {expected}"]
    assert after == before  # the last good outputs are untouched


@pytest.mark.parametrize("case_id, stage, setup, message", CASES, ids=[case[0] for case in CASES])
def test_bad_input_fails_cleanly(project, case_id, stage, setup, message):
    outputs = project.root / OUTPUTS[stage]
    setup(project)
    before = snapshot(outputs)
    result = run_stage(project.root, stage)
    expected = message.format(src=project.source, root=project.root)
    assert_clean_failure(result, expected, before, snapshot(outputs))


def test_disk_full_while_writing_keeps_the_previous_arrays(project):
    outputs = project.root / OUTPUTS["preprocess"]
    before = snapshot(outputs)
    result = run_stage(project.root, "preprocess", preexec=disk_full_limit)
    expected = DISK_FULL_MESSAGE.format(root=project.root)
    assert_clean_failure(result, expected, before, snapshot(outputs))
    assert not [path.name for path in outputs.iterdir() if ".tmp-" in path.name]


def test_debug_output_adds_the_traceback(project):
    missing_data_path(project)
    env_result = subprocess.run(
        [sys.executable, str(REPO / "src" / "stages" / "download.py"), "--debug"],
        cwd=project.root,
        env={**os.environ, "CIFAR10_MLOPS_ROOT": str(project.root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert env_result.returncode == 2
    assert "Traceback" in env_result.stderr
    assert env_result.stderr.rstrip().endswith("fix data.path")


# --- downloads: the official archive from a local HTTP server, Kaggle without credentials ----

CHECKSUM_MESSAGE = (
    "{url}: MD5 of the download is {actual}, expected {expected}; the file is corrupt or not "
    "the official archive and was deleted; run again, or check data.cifar10.url and "
    "data.cifar10.md5"
)
CUT_OFF_MESSAGE = (
    "{url}: the connection closed after {got} of {total} bytes; the partial download is kept "
    "in {root}/data/downloads/cifar-10-binary.tar.gz.part, run again to resume"
)
NO_KAGGLE_CREDENTIALS_MESSAGE = (
    "data.source is 'kaggle' but no Kaggle credentials were found: set KAGGLE_USERNAME and "
    "KAGGLE_KEY, or save the kaggle.json from https://www.kaggle.com/settings/api ('Create New "
    "Token') as ~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR/kaggle.json)"
)


def official_download(
    project: Project, server, behaviour: str, md5: str | None = None
) -> tuple[str, bytes]:
    archive = write_official_archive(project.source.parent / "served" / "cifar-10-binary.tar.gz")
    payload = archive.read_bytes()
    url = server.serve("/cifar-10-binary.tar.gz", payload, behaviour)
    cifar10 = {"url": url, "md5": md5 or hashlib.md5(payload).hexdigest(), "timeout_s": 20}
    project.write_params({"data": {"source": "cifar10", "cifar10": cifar10}})
    return url, payload


def test_checksum_mismatch_fails_cleanly(project, archive_server):
    url, payload = official_download(project, archive_server, "ok", md5="0" * 32)
    before = snapshot(project.root / "data/raw")
    result = run_stage(project.root, "download")
    expected = CHECKSUM_MESSAGE.format(
        url=url, actual=hashlib.md5(payload).hexdigest(), expected="0" * 32
    )
    assert_clean_failure(result, expected, before, snapshot(project.root / "data/raw"))
    assert not list((project.root / "data/downloads").glob("*"))  # the bad file is gone


def test_download_cut_off_half_way_fails_cleanly_and_resumes(project, archive_server):
    url, payload = official_download(project, archive_server, "cut")
    before = snapshot(project.root / "data/raw")
    result = run_stage(project.root, "download")
    expected = CUT_OFF_MESSAGE.format(
        url=url, got=len(payload) // 2, total=len(payload), root=project.root
    )
    assert_clean_failure(result, expected, before, snapshot(project.root / "data/raw"))
    archive_server.behaviours["/cifar-10-binary.tar.gz"] = ["ok"]
    assert run_stage(project.root, "download").returncode == 0
    assert archive_server.range_headers()[-1] == f"bytes={len(payload) // 2}-"
    assert (project.root / "data/raw/cifar-10-batches-bin/data_batch_1.bin").is_file()


def staging_dirs(project: Project) -> list[str]:
    return [path.name for path in (project.root / "data").iterdir() if ".tmp-" in path.name]


def test_sigterm_during_download_removes_the_staging_directory(project, archive_server):
    official_download(project, archive_server, "hang")  # the request is never answered
    before = snapshot(project.root / "data/raw")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIFAR10_MLOPS_", "DVC_"))}
    stage = subprocess.Popen(
        [sys.executable, str(REPO / "src" / "stages" / "download.py")],
        cwd=project.root,
        env={**env, "CIFAR10_MLOPS_ROOT": str(project.root), "no_proxy": "127.0.0.1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(1200):  # the stage has asked the server: it waits inside the download
            if archive_server.requests or stage.poll() is not None:
                break
            time.sleep(0.1)
        assert archive_server.requests, stage.communicate()
        assert staging_dirs(project)  # what SIGTERM used to leave behind
        stage.send_signal(signal.SIGTERM)
        _, stderr = stage.communicate(timeout=120)
    finally:
        stage.kill()
    assert stage.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert staging_dirs(project) == []
    assert snapshot(project.root / "data/raw") == before


def test_kaggle_without_credentials_fails_cleanly(project, tmp_path):
    project.write_params({"data": {"source": "kaggle"}})
    before = snapshot(project.root / "data/raw")
    home = tmp_path / "empty-home"
    home.mkdir()
    result = run_stage(
        project.root, "download", HOME=str(home), XDG_CONFIG_HOME=str(home / ".config")
    )
    assert_clean_failure(
        result, NO_KAGGLE_CREDENTIALS_MESSAGE, before, snapshot(project.root / "data/raw")
    )


def docs_form(message: str) -> str:
    return message.format(
        src="<data.path>",
        root="<repo>",
        url="<data.cifar10.url>",
        actual="<actual md5>",
        expected="<data.cifar10.md5>",
        got="<N>",
        total="<M>",
    )


def test_the_error_table_in_the_docs_shows_every_message_word_for_word():
    page = ERRORS_PAGE.read_text(encoding="utf-8")
    messages = [case[3] for case in CASES] + [
        DISK_FULL_MESSAGE,
        CHECKSUM_MESSAGE,
        CUT_OFF_MESSAGE,
        NO_KAGGLE_CREDENTIALS_MESSAGE,
    ]
    missing = [docs_form(m) for m in messages if docs_form(m) not in page]
    assert not missing, "docs/errors.md bad-input table is out of date:\n" + "\n".join(missing)
