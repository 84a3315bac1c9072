"""A stage's run ends by how the stage ends: FINISHED, FAILED, or KILLED on Ctrl-C / SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from cifar10_mlops.tracking.run_opening import end_run


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that a stopped stage takes the same way out."""


@contextlib.contextmanager
def _sigterm_raises_terminated() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)
    restore = previous if previous is not None else signal.SIG_DFL

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, restore)  # a second SIGTERM is not caught again
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, restore)


@contextlib.contextmanager
def run_lifecycle() -> Iterator[None]:
    """End the active run (if one was opened inside) by how the block ends: FINISHED,
    KILLED (Ctrl-C, SIGTERM) or FAILED (any other exception). SIGTERM then exits 143."""
    with _sigterm_raises_terminated():
        try:
            yield
        except Terminated:
            end_run("KILLED")
            raise SystemExit(128 + signal.SIGTERM) from None
        except KeyboardInterrupt:
            end_run("KILLED")
            raise
        except BaseException:
            end_run("FAILED")
            raise
    end_run("FINISHED")
