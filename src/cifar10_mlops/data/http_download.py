"""Download one file over HTTP(S), resumably, and accept it only when its MD5 matches.

The bytes go to `<target>.part`; only a complete file whose MD5 matches is moved onto the
target (os.replace), so an existing target is either absent or verified by an earlier run.
A download cut off half way keeps its .part and the next call continues it with an HTTP
Range request. Every failure is a one-line PipelineError that names the URL (credentials
removed) or the file, and says what to do.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from tqdm import tqdm

from cifar10_mlops.core.digests import file_hash
from cifar10_mlops.core.errors import PipelineError

CHUNK_BYTES = 1 << 20
# A stalled connection fails after this long even when timeout_s allows more; the overall
# deadline can therefore be overshot by at most one socket timeout.
SOCKET_TIMEOUT_S = 60.0
# The official archive is 162 MiB; refuse a server that wants to fill the disk.
MAX_DOWNLOAD_BYTES = 4 * 1024**3
USER_AGENT = "cifar10-mlops (python urllib)"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def download_verified(
    url: str, target: Path, md5: str, timeout_s: int, *, params_key: str = "data.cifar10"
) -> Path:
    """Return `target` holding the file at `url` whose MD5 is `md5`.

    A target that already matches is returned without touching the network. params_key is
    the params.yaml section named in the hints (`<params_key>.url`, `.md5`, `.timeout_s`).
    """
    target = Path(target)
    md5 = md5.lower()
    if target.is_file() and file_md5(target) == md5:
        return target
    _Download(url, target, md5, timeout_s, params_key).run()
    return target


def file_md5(path: Path) -> str:
    return file_hash(path, "md5").hexdigest()


def split_credentials(url: str) -> tuple[str, str | None]:
    """'https://user:pw@host/x' -> ('https://host/x', 'Basic ...'): the URL is safe to print."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=hostport)), f"Basic {token}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Download:
    def __init__(self, url: str, target: Path, md5: str, timeout_s: int, params_key: str):
        self.url, self.authorization = split_credentials(url)
        self.host = urlsplit(self.url).hostname or self.url
        self.target = target
        self.part = target.with_name(target.name + ".part")
        self.md5 = md5
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.key = params_key

    def run(self) -> None:
        try:
            self._download()
        except PipelineError:
            self._drop_part_if_empty()
            raise

    def _download(self) -> None:
        offset = self.part.stat().st_size if self.part.is_file() else 0
        response = self._open(offset)
        if response is None:  # 416: the .part already holds the whole file, or junk
            if file_md5(self.part) == self.md5:
                os.replace(self.part, self.target)
                return
            self.part.unlink()
            offset = 0
            response = self._open(offset)
            assert response is not None  # only a resume request (offset > 0) gets a 416
        with response:
            start, total = self._expected_range(response, offset)
            digest = self._receive(response, start, total)
        self._accept(digest.hexdigest())

    # --- the request -------------------------------------------------------------------

    def _open(self, offset: int) -> http.client.HTTPResponse | None:
        """Send the request; None when a resume request is answered 416 (nothing left)."""
        request = urllib.request.Request(
            self.url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        )
        if self.authorization:
            # Unredirected: credentials never follow a redirect to another host.
            request.add_unredirected_header("Authorization", self.authorization)
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        socket_timeout = max(0.5, min(SOCKET_TIMEOUT_S, self.deadline - time.monotonic()))
        try:
            return urllib.request.urlopen(request, timeout=socket_timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                return None
            raise self._http_error(exc.code, exc.reason) from None
        except urllib.error.URLError as exc:
            raise self._unreachable_error(exc.reason) from None
        except TimeoutError:
            raise self._timeout_error(0, None) from None
        except (http.client.HTTPException, OSError, ValueError) as exc:
            raise self._unreachable_error(exc) from None

    def _expected_range(
        self, response: http.client.HTTPResponse, offset: int
    ) -> tuple[int, int | None]:
        """(first byte this response carries, total file size or None when unknown)."""
        header = response.headers.get("Content-Length")
        length = int(header) if header and header.isdigit() else None
        if response.status != 206:  # a full answer: start again from byte zero
            return 0, length
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            self.part.unlink(missing_ok=True)
            raise PipelineError(
                f"{self.url}: the server answered the resume request with the wrong byte range "
                f"({response.headers.get('Content-Range')!r}); the partial download was deleted, "
                "run again to start from the beginning"
            )
        total = match.group(3)
        if total != "*":
            return offset, int(total)
        return offset, None if length is None else offset + length

    # --- the body ----------------------------------------------------------------------

    def _receive(self, response: http.client.HTTPResponse, start: int, total: int | None):
        """Stream the body into the .part (appending from `start`); return its MD5 object."""
        if total is not None and total > MAX_DOWNLOAD_BYTES:
            raise self._too_big_error(total)
        digest = file_hash(self.part, "md5") if start else hashlib.md5()
        received = start
        try:
            self.part.parent.mkdir(parents=True, exist_ok=True)
            with (
                open(self.part, "ab" if start else "wb") as sink,
                self._progress(total, start) as bar,
            ):
                while chunk := self._read_chunk(response, received, total):
                    sink.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if received > MAX_DOWNLOAD_BYTES:
                        raise self._too_big_error(received)
        except OSError as exc:  # network errors are PipelineErrors by now: this is the disk
            raise PipelineError(
                f"{self.part}: cannot write the download ({exc.strerror or exc}); free some disk "
                "space or check the directory's permissions"
            ) from None
        if total is not None and received < total:
            raise PipelineError(
                f"{self.url}: the connection closed after {received} of {total} bytes; the partial "
                f"download is kept in {self.part}, run again to resume"
            )
        return digest

    def _read_chunk(
        self, response: http.client.HTTPResponse, received: int, total: int | None
    ) -> bytes:
        if time.monotonic() > self.deadline:
            raise self._timeout_error(received, total)
        try:
            # read1: whatever has arrived (up to 1 MiB), so progress and the deadline are
            # checked often even on a slow line.
            return response.read1(CHUNK_BYTES)
        except TimeoutError:
            raise self._timeout_error(received, total) from None
        except (http.client.HTTPException, OSError):  # IncompleteRead, reset, TLS error...
            shown_total = "an unknown number of" if total is None else str(total)
            raise PipelineError(
                f"{self.url}: the connection broke after {received} of {shown_total} bytes; the "
                f"partial download is kept in {self.part}, run again to resume"
            ) from None

    def _progress(self, total: int | None, start: int) -> tqdm:
        return tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=self.target.name,
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        )

    def _accept(self, actual_md5: str) -> None:
        if actual_md5 != self.md5:
            self.part.unlink(missing_ok=True)
            raise PipelineError(
                f"{self.url}: MD5 of the download is {actual_md5}, expected {self.md5}; the file is "
                "corrupt or not the official archive and was deleted; run again, or check "
                f"{self.key}.url and {self.key}.md5"
            )
        os.replace(self.part, self.target)

    def _drop_part_if_empty(self) -> None:
        # A failure before the first byte must not leave an empty .part lying around.
        if self.part.is_file() and self.part.stat().st_size == 0:
            self.part.unlink()

    # --- errors --------------------------------------------------------------------------

    def _http_error(self, status: int, reason: str) -> PipelineError:
        if status in (404, 410):
            hint = f"the file is not there; check {self.key}.url"
        elif status in (401, 403):
            hint = f"access denied; check {self.key}.url"
        elif status >= 500:
            hint = "the server failed; try again later, or use data.source: local with a downloaded archive"
        else:
            hint = f"check {self.key}.url"
        # The reason phrase is the server's to choose (http.client allows 64 KiB): a prefix.
        reason = _one_line(reason)[:100]
        return PipelineError(_one_line(f"{self.url}: HTTP {status} {reason}; {hint}"))

    def _unreachable_error(self, reason: object) -> PipelineError:
        if isinstance(reason, TimeoutError):
            return self._timeout_error(0, None)
        if isinstance(reason, socket.gaierror):
            why = "host name not found: no network, or DNS failed"
        elif isinstance(reason, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(reason, ssl.SSLError):
            why = f"TLS error: {reason.reason or reason}"
        elif isinstance(reason, OSError):
            why = reason.strerror or type(reason).__name__
        else:
            why = str(reason) or type(reason).__name__
        return PipelineError(
            _one_line(
                f"{self.url}: cannot reach {self.host} ({why}); check the network connection, or "
                "download the archive another way and use data.source: local with data.path "
                "pointing at it"
            )
        )

    def _timeout_error(self, received: int, total: int | None) -> PipelineError:
        if received:
            of_total = "" if total is None else f" of {total}"
            return PipelineError(
                f"{self.url}: not finished within {self.timeout_s} s ({self.key}.timeout_s); "
                f"{received}{of_total} bytes are kept in {self.part}, run again to resume or "
                f"raise {self.key}.timeout_s"
            )
        return PipelineError(
            f"{self.url}: no answer from {self.host} within {self.timeout_s} s "
            f"({self.key}.timeout_s); check the network connection, or raise {self.key}.timeout_s"
        )

    def _too_big_error(self, size: int) -> PipelineError:
        self.part.unlink(missing_ok=True)
        return PipelineError(
            f"{self.url}: the download is {size} bytes or more, above the {MAX_DOWNLOAD_BYTES}-byte "
            f"cap; this is not the CIFAR-10 archive, check {self.key}.url"
        )
