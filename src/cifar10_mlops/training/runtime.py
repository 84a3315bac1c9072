"""What the hardware decides (precision, XLA, replicas), and the seeds that make runs repeat."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar10_mlops.core.params import TrainParams
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.training.cluster import Cluster, connect, describe_cluster


@dataclass(frozen=True)
class Runtime:
    """What the hardware decides: precision, XLA, and how many replicas train."""

    mixed_precision: str  # a Keras dtype policy name
    jit_compile: bool
    strategy: Any  # a tf.distribute strategy
    cluster: Cluster | None = None  # multi_worker only


def resolve_runtime(train: TrainParams, tensorflow_log: Path | None = None) -> Runtime:
    """Call before any other TensorFlow op: a multi-worker strategy must come first.
    `tensorflow_log`: where TensorFlow's C++ log goes in multi-worker training (default: stderr)."""
    import tensorflow as tf

    cluster = describe_cluster() if train.distribution == "multi_worker" else None
    if cluster is not None:
        strategy = connect(cluster, train.cluster_timeout_s, tensorflow_log)
    gpus = tf.config.list_logical_devices("GPU")
    precision = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
    # On a CPU float16 is emulated (slower) and XLA recompiles for little gain.
    policy = precision.get(train.mixed_precision, "mixed_float16" if gpus else "float32")
    jit = {"on": True, "off": False}.get(train.jit_compile, bool(gpus))
    if train.distribution == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    elif cluster is None:
        strategy = tf.distribute.get_strategy()
    return Runtime(policy, jit, strategy, cluster)


def seed_everything(cfg: TrainParams) -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
