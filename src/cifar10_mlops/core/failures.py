"""How every stage and CLI command fails: one line on stderr, a non-zero exit, a traceback only
on request, and a DVC stage's last good outputs put back.

    @report_errors
    def main() -> None: ...
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import TypeVar

from cifar10_mlops.core.errors import EXIT_BAD_INPUT, PipelineError, debug_requested

T = TypeVar("T")


def report_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Wrap a stage or CLI entry point: a PipelineError becomes one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _exit_cleanly_on_sigterm()
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            if debug_requested():
                traceback.print_exc()
            print(f"error: {exc}", file=sys.stderr)
            _put_back_last_good_outputs()
            raise SystemExit(EXIT_BAD_INPUT) from None
        except BaseException as exc:  # a bug or Ctrl-C: the traceback stays, outputs come back
            if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
                _put_back_last_good_outputs()
            raise

    return wrapper


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (`kill`, a CI timeout, DVC stopping a stage) ends Python at once by default,
    skipping every `finally`: staging directories and temporary files stayed behind. As
    SystemExit(143) it unwinds like Ctrl-C does, and the last good outputs come back."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum: int, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it outright
    raise SystemExit(128 + signum)


def _put_back_last_good_outputs() -> None:
    from cifar10_mlops.core.config import ROOT
    from cifar10_mlops.core.last_good import restore_after_failure

    restored = restore_after_failure(ROOT)
    if restored:
        print(f"kept the last good outputs: {', '.join(restored)} restored from the DVC cache")
