"""The learning rate per epoch: linear warmup, then cosine decay, a constant, or a plateau."""

from __future__ import annotations

import math

from cifar10_mlops.core.params import TrainParams


def learning_rate_at(epoch: int, train: TrainParams, current: float) -> float:
    """The learning rate for `epoch`: linear warmup over warmup_epochs, then cosine decay to
    zero at the last epoch (cosine), the peak (constant), or what ReduceLROnPlateau left
    (plateau)."""
    peak = train.learning_rate
    if epoch < train.warmup_epochs:
        return peak * (epoch + 1) / (train.warmup_epochs + 1)
    if train.lr_schedule == "cosine":
        progress = (epoch - train.warmup_epochs) / max(train.epochs - train.warmup_epochs, 1)
        return 0.5 * peak * (1.0 + math.cos(math.pi * progress))
    if train.lr_schedule == "constant" or epoch == train.warmup_epochs:
        return peak
    return current
