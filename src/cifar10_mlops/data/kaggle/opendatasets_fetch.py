"""The Kaggle download itself, run in a child process by `kaggle_source.fetch_competition`.

    python -m cifar10_mlops.data.kaggle.opendatasets_fetch COMPETITION DOWNLOAD_DIR

The parent starts it in a private working directory holding ./kaggle.json (the only place
opendatasets 0.1.22 reads credentials from), with stdin closed and a timeout. `import kaggle`
authenticates and prints help at import time, so it happens only here, never in the pipeline's
own process.

What opendatasets does for a competition URL: `competition_download_files` writes
DOWNLOAD_DIR/<competition>/<competition>.zip, then opendatasets unpacks EVERY member into that
folder and deletes the zip. For cifar-10 that would write the 600 MB test.7z the pipeline never
uses, so this process swaps opendatasets' unpack step for one that takes out only train.7z and
trainLabels.csv (with the same name and size checks as every other archive here).

How it ended is told by the exit status and one `kaggle-fetch: <kind> ...` line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.kaggle.zip_members import KAGGLE_ZIP_MEMBER_CAPS, extract_zip_members

EXIT_HTTP_ERROR = 3
EXIT_NETWORK_ERROR = 4
EXIT_ASKED_FOR_INPUT = 5
EXIT_ARCHIVE_ERROR = 6
REPORT_PREFIX = "kaggle-fetch:"


def competition_url(competition: str) -> str:
    return f"https://www.kaggle.com/competitions/{competition}"


def extract_wanted_members(zip_path: str, target_dir: str | None = None, *args, **kwargs) -> None:
    """Stands in for opendatasets' extract_archive(from_path, to_path), which unpacks all."""
    archive = Path(zip_path)
    try:
        extract_zip_members(archive, KAGGLE_ZIP_MEMBER_CAPS, Path(target_dir or archive.parent))
    except PipelineError as exc:
        # The temporary path means nothing to the user; the archive's name does.
        raise PipelineError(str(exc).replace(str(archive), archive.name)) from None


def download(competition: str, download_dir: Path) -> None:
    import opendatasets
    from opendatasets.utils import kaggle_api

    kaggle_api.extract_archive = extract_wanted_members
    opendatasets.download(competition_url(competition), data_dir=str(download_dir))


def network_reason(exc: Exception) -> str:
    """A few words on why the connection failed, from requests' (nested) error text."""
    import requests

    text = str(exc)
    if "NameResolutionError" in text or "Failed to resolve" in text:
        reason = "DNS lookup failed"
    elif "Connection refused" in text:
        reason = "connection refused"
    elif isinstance(exc, requests.Timeout) or "timed out" in text:
        reason = "connection timed out"
    else:
        reason = "connection failed"
    if isinstance(exc, requests.exceptions.ProxyError):
        reason += " at the HTTP proxy"
    return reason


def report(kind: str, detail: str = "") -> None:
    one_line = " ".join(detail.split())[:300]
    print(f"{REPORT_PREFIX} {kind} {one_line}".rstrip(), file=sys.stderr, flush=True)


def http_error_message(exc: Exception) -> str:
    # kagglesdk raises HTTPError(<Kaggle's JSON "message">) or requests' own
    # "403 Client Error: Forbidden for url: ..." text.
    return str(exc.args[0]) if exc.args else ""


def main(argv: list[str] | None = None) -> int:
    competition, download_dir = argv if argv is not None else sys.argv[1:]
    import click
    import requests

    try:
        download(competition, Path(download_dir))
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        report("http", f"{status} {http_error_message(exc)}")
        return EXIT_HTTP_ERROR
    except (requests.ConnectionError, requests.Timeout) as exc:
        report("network", network_reason(exc))
        return EXIT_NETWORK_ERROR
    except (click.exceptions.Abort, EOFError):
        # opendatasets prompts when ./kaggle.json is unusable; stdin is closed, so it stops.
        report("asked-for-input")
        return EXIT_ASKED_FOR_INPUT
    except PipelineError as exc:
        report("archive", str(exc))
        return EXIT_ARCHIVE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
