"""The user-facing error type: bad input or bad params, told in one line."""

from __future__ import annotations

import os
import sys

DEBUG_ENV = "CIFAR10_MLOPS_DEBUG"
EXIT_BAD_INPUT = 2


class PipelineError(Exception):
    """Bad input or bad params. The message names what is wrong, where, and what to do."""


def debug_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")
