"""The user-facing error type: bad input or bad params, told in one line."""

from __future__ import annotations

import os
import reprlib
import sys

DEBUG_ENV = "CIFAR10_MLOPS_DEBUG"
EXIT_BAD_INPUT = 2


class PipelineError(Exception):
    """Bad input or bad params. The message names what is wrong, where, and what to do."""


def debug_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


# Input quoted in a message (a member name, a params value, a path) is cut to this many
# characters: a 1 GiB name must not become a 1 GiB error line.
QUOTE_LIMIT = 100
_QUOTE_REPR = reprlib.Repr()
_QUOTE_REPR.maxlevel = 3
_QUOTE_REPR.maxstring = _QUOTE_REPR.maxother = _QUOTE_REPR.maxlong = QUOTE_LIMIT
for _name in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
    setattr(_QUOTE_REPR, _name, 6)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """User input for an error message: repr() form (quotes, newlines escaped), at most about
    `limit` characters, with the full length said when cut. Containers are summarised
    without being formatted in full (reprlib), so a huge value costs nothing to quote."""
    if isinstance(value, str | bytes):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters in all)"
    text = _QUOTE_REPR.repr(value)
    return text if len(text) <= 2 * limit else f"{text[:limit]}..."
