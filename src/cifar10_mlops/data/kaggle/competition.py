"""data.source: kaggle -- the competition's train.7z + trainLabels.csv through opendatasets.

opendatasets 0.1.22 reads credentials only from ./kaggle.json, prompts on stdin when it finds
none, and reports success without downloading when its target folder holds any file. So the
download runs in a child process (`cifar10_mlops.data.kaggle.opendatasets_fetch`) whose working directory is a
private temporary directory holding a kaggle.json written from the user's credentials, with
stdin closed, a timeout that kills its whole process group, and a fresh empty target folder.
What arrives is checked here (both files, 7z signature, optional SHA-256 pins) before it is
accepted. The Kaggle key never appears in a message: quoted output is scrubbed.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cifar10_mlops.core.config import LABELS_CSV, TRAIN_ARCHIVE
from cifar10_mlops.core.digests import file_hash
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import KaggleParams
from cifar10_mlops.data.kaggle import opendatasets_fetch
from cifar10_mlops.data.kaggle.zip_members import KAGGLE_ZIP_MEMBER_CAPS, extract_zip_members

SEVEN_ZIP_SIGNATURE = b"7z\xbc\xaf\x27\x1c"
TOKEN_PAGE = "https://www.kaggle.com/settings/api"
WHERE_CREDENTIALS_GO = (
    "set KAGGLE_USERNAME and KAGGLE_KEY, or save the kaggle.json from "
    f"{TOKEN_PAGE} ('Create New Token') as ~/.kaggle/kaggle.json "
    "(or $KAGGLE_CONFIG_DIR/kaggle.json)"
)
# kaggle's verbose mode prints request headers, i.e. the encoded key, into the output.
_CHILD_ENV_DROPPED = ("VERBOSE", "VERBOSE_OUTPUT")


@dataclasses.dataclass(frozen=True)
class KaggleCredentials:
    username: str
    key: str = dataclasses.field(repr=False)
    origin: str  # where they came from, for messages

    def scrub(self, text: str) -> str:
        """Hide the key (and its HTTP Basic form) in text that is about to be shown."""
        basic = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        return text.replace(basic, "***").replace(self.key, "***")


def fetch_competition(params: KaggleParams, staging: Path) -> None:
    """Download params.competition; leave exactly train.7z and trainLabels.csv in staging."""
    credentials = find_credentials()
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    # A fresh, empty folder every time: opendatasets skips the download if it holds a file.
    download_dir = Path(tempfile.mkdtemp(prefix=".kaggle-download-", dir=staging))
    try:
        output = _run_fetch(params, credentials, download_dir)
        _collect_files(download_dir / params.competition, staging, params.competition, output)
        verify_files(staging, params)
    except PipelineError as exc:
        raise PipelineError(credentials.scrub(str(exc))) from None
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


# --- credentials -------------------------------------------------------------------------


def find_credentials() -> KaggleCredentials:
    """KAGGLE_USERNAME + KAGGLE_KEY win (as in the kaggle client), then kaggle.json."""
    username = os.environ.get("KAGGLE_USERNAME", "")
    key = os.environ.get("KAGGLE_KEY", "")
    if username and key:
        return KaggleCredentials(username, key, "KAGGLE_USERNAME/KAGGLE_KEY")
    for path in _kaggle_json_candidates():
        if path.is_file():
            return _read_kaggle_json(path)
    raise PipelineError(
        f"data.source is 'kaggle' but no Kaggle credentials were found: {WHERE_CREDENTIALS_GO}"
    )


def _kaggle_json_candidates() -> list[Path]:
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR")
    if config_dir:
        return [Path(config_dir).expanduser() / "kaggle.json"]
    xdg_config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    # kaggle 2.x falls back to the XDG location when ~/.kaggle does not exist.
    return [Path.home() / ".kaggle" / "kaggle.json", Path(xdg_config) / "kaggle" / "kaggle.json"]


def _read_kaggle_json(path: Path) -> KaggleCredentials:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not (
        isinstance(data, dict) and _is_text(data.get("username")) and _is_text(data.get("key"))
    ):
        raise PipelineError(
            f'{path}: not a usable kaggle.json (needs "username" and "key"); download a new '
            f"one from {TOKEN_PAGE}"
        )
    return KaggleCredentials(data["username"], data["key"], str(path))


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


@contextlib.contextmanager
def _private_workdir(credentials: KaggleCredentials) -> Iterator[Path]:
    """A mode-700 directory holding a mode-600 kaggle.json; removed however the block ends."""
    workdir = Path(tempfile.mkdtemp(prefix="cifar10-kaggle-"))
    try:
        workdir.chmod(0o700)
        _write_kaggle_json(workdir / "kaggle.json", credentials)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _write_kaggle_json(path: Path, credentials: KaggleCredentials) -> None:
    # Created with mode 600 from the start, so the key is never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"username": credentials.username, "key": credentials.key}, handle)


# --- the child process -------------------------------------------------------------------


def _fetch_command(competition: str, download_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cifar10_mlops.data.kaggle.opendatasets_fetch",
        competition,
        str(download_dir),
    ]


def _child_environment(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROPPED}
    # The kaggle client reads the same private kaggle.json, and its import-time
    # makedirs(config_dir) touches nothing in the user's home.
    env["KAGGLE_CONFIG_DIR"] = str(workdir)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _run_fetch(params: KaggleParams, credentials: KaggleCredentials, download_dir: Path) -> str:
    """Run the download; return its output, or raise a PipelineError saying why it failed."""
    print(
        f"downloading Kaggle competition '{params.competition}' with opendatasets "
        f"(credentials from {credentials.origin}, timeout {params.timeout_s} s)...",
        file=sys.stderr,
        flush=True,
    )
    with _private_workdir(credentials) as workdir:
        returncode, output = _run_with_timeout(
            _fetch_command(params.competition, download_dir), workdir, params.timeout_s
        )
    if returncode is None:
        raise PipelineError(
            f"the Kaggle download of '{params.competition}' did not finish within "
            f"{params.timeout_s} s and was stopped; check the network, or raise "
            "data.kaggle.timeout_s in params.yaml"
        )
    if returncode != 0:
        raise PipelineError(_describe_failure(returncode, output, params.competition, credentials))
    return output


def _run_with_timeout(command: list[str], workdir: Path, timeout_s: int) -> tuple[int | None, str]:
    """(exit status, output); the status is None when the timeout stopped it."""
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=_child_environment(workdir),
        stdin=subprocess.DEVNULL,  # opendatasets prompts on stdin; closed, it cannot hang
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a kill reaches every descendant
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_process_group(process)
        process.communicate()
        return None, ""
    except BaseException:  # Ctrl-C or any error here: leave nothing running behind
        _kill_process_group(process)
        process.communicate()
        raise
    return process.returncode, output.decode("utf-8", errors="replace")


def _kill_process_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# --- reading the outcome -----------------------------------------------------------------


def _child_report(output: str) -> tuple[str, str]:
    """(kind, detail) from the child's `kaggle-fetch:` report, or ('', '') if it wrote none."""
    # Not always at the start of a line: a prompt left without its newline may precede it.
    start = output.rfind(opendatasets_fetch.REPORT_PREFIX)
    if start < 0:
        return "", ""
    report = output[start + len(opendatasets_fetch.REPORT_PREFIX) :].splitlines()[0]
    kind, _, detail = report.strip().partition(" ")
    return kind, detail


def _last_output_line(output: str) -> str:
    lines = [line.strip() for line in output.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _describe_failure(
    returncode: int, output: str, competition: str, credentials: KaggleCredentials
) -> str:
    kind, detail = _child_report(output)
    if kind == "http":
        status, _, message = detail.partition(" ")
        return _describe_http_error(int(status or 0), message, competition, credentials)
    if kind == "network":
        return (
            f"cannot reach Kaggle ({detail}) to download '{competition}'; check the internet "
            "connection and any proxy or firewall settings, then run again"
        )
    if kind == "asked-for-input":
        return (
            f"opendatasets could not use the Kaggle credentials from {credentials.origin} and "
            f"asked for them on the terminal; {WHERE_CREDENTIALS_GO}"
        )
    if kind == "archive":
        return (
            f"data.kaggle.competition '{competition}': the download is incomplete or not the "
            f"CIFAR-10 files: {detail}"
        )
    return (
        f"the Kaggle download of '{competition}' failed (exit status {returncode}: "
        f"{_last_output_line(output)}); run again"
    )


def _describe_http_error(
    status: int, message: str, competition: str, credentials: KaggleCredentials
) -> str:
    if status == 401:
        return (
            f"Kaggle rejected the credentials from {credentials.origin} (HTTP 401); create a "
            f"new API token at {TOKEN_PAGE} and update them"
        )
    if status == 403:
        return (
            f"Kaggle refused the download of '{competition}' (HTTP 403: {message}); accept the "
            f"competition rules at https://www.kaggle.com/competitions/{competition}/rules "
            f"while logged in as '{credentials.username}', then run again"
        )
    if status == 404:
        return (
            f"Kaggle has no competition '{competition}' (HTTP 404); fix "
            "data.kaggle.competition in params.yaml"
        )
    return f"Kaggle answered HTTP {status} for '{competition}' ({message}); try again later"


# --- what arrived ------------------------------------------------------------------------


def _collect_files(arrived: Path, staging: Path, competition: str, output: str) -> None:
    """Move the two wanted files from what the download left into staging."""
    loose = [arrived / TRAIN_ARCHIVE, arrived / LABELS_CSV]
    zipped = arrived / f"{competition}.zip"
    if all(path.is_file() for path in loose):
        for path in loose:
            shutil.move(path, staging / path.name)
    elif zipped.is_file():  # an opendatasets that leaves the zip as it is
        try:
            extract_zip_members(zipped, KAGGLE_ZIP_MEMBER_CAPS, staging)
        except PipelineError as exc:
            raise PipelineError(
                f"data.kaggle.competition '{competition}': "
                + str(exc).replace(str(zipped), zipped.name)
            ) from None
    else:
        found = sorted(p.name for p in arrived.iterdir()) if arrived.is_dir() else []
        raise PipelineError(
            f"the Kaggle download of '{competition}' reported success but delivered "
            f"{', '.join(found) or 'nothing'} instead of {TRAIN_ARCHIVE} + {LABELS_CSV} "
            f"(last output: {_last_output_line(output)}); run again"
        )


def verify_files(directory: Path, params: KaggleParams) -> None:
    """Refuse empty or wrong files, and files that do not match a pinned SHA-256."""
    for name in (TRAIN_ARCHIVE, LABELS_CSV):
        if (directory / name).stat().st_size == 0:
            raise PipelineError(f"Kaggle delivered an empty {name}; run the download again")
    with open(directory / TRAIN_ARCHIVE, "rb") as handle:
        if handle.read(len(SEVEN_ZIP_SIGNATURE)) != SEVEN_ZIP_SIGNATURE:
            raise PipelineError(
                f"Kaggle delivered a {TRAIN_ARCHIVE} that is not a 7z archive; run the download again"
            )
    _check_pin(directory / TRAIN_ARCHIVE, params.train_7z_sha256, "data.kaggle.train_7z_sha256")
    _check_pin(directory / LABELS_CSV, params.labels_sha256, "data.kaggle.labels_sha256")


def _check_pin(path: Path, expected: str | None, key: str) -> None:
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise PipelineError(
            f"{path.name} from Kaggle has SHA-256 {actual}, but {key} in params.yaml pins "
            f"{expected}; Kaggle changed the file or the pin is wrong: fix the pin"
        )


def sha256_of(path: Path) -> str:
    return file_hash(path, "sha256").hexdigest()
