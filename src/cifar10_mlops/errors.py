"""User-facing errors: one line on stderr, non-zero exit, traceback only on request."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEBUG_ENV = "CIFAR10_MLOPS_DEBUG"
EXIT_BAD_INPUT = 2


class PipelineError(Exception):
    """Bad input or bad params. The message names what is wrong, where, and what to do."""


def debug_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def report_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Wrap a stage or CLI entry point: a PipelineError becomes one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
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


def _put_back_last_good_outputs() -> None:
    from cifar10_mlops.config import ROOT
    from cifar10_mlops.last_good import restore_after_failure

    restored = restore_after_failure(ROOT)
    if restored:
        print(f"kept the last good outputs: {', '.join(restored)} restored from the DVC cache")
