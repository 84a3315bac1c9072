"""The team stack's error: one line saying what to install, look at or delete."""

from __future__ import annotations

from cifar10_mlops.core.errors import PipelineError


class StackError(PipelineError):
    """The stack cannot start or stop; the message says what to install or look at."""
