"""What the backend and the hardware decide (precision, XLA, devices, the cluster), and the
seeds that make runs repeat."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import TrainParams
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.training.cluster import Cluster, connect, describe_cluster

PRECISION_POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@dataclass(frozen=True)
class Runtime:
    """What the hardware decides: precision, XLA, and the devices that train together."""

    mixed_precision: str  # a Keras dtype policy name
    jit_compile: bool
    distribution: Any = None  # a keras.distribution.DataParallel, or None: one device
    cluster: Cluster | None = None  # multi_worker only

    @property
    def replicas(self) -> int:
        return len(self.distribution.device_mesh.devices.flat) if self.distribution else 1

    @property
    def part(self) -> tuple[int, int]:
        """This process's share of each global batch: (index, count)."""
        return (self.cluster.rank, self.cluster.size) if self.cluster else (0, 1)

    def scope(self):
        """Where the model is built and trained: over every device of the distribution."""
        return self.distribution.scope() if self.distribution else contextlib.nullcontext()


def resolve_runtime(train: TrainParams) -> Runtime:
    """Call before any other Keras op: multi_worker joins the cluster first."""
    backend = keras.backend.backend()
    if backend != train.backend:
        raise PipelineError(
            f"train.backend is {train.backend!r} but Keras runs on {backend!r}: the backend is "
            "chosen before Keras is imported (the train stage does it from params.yaml; "
            f"elsewhere set KERAS_BACKEND={train.backend})"
        )
    if train.distribution != "none" and backend != "jax":
        raise PipelineError(
            f"train.distribution {train.distribution} runs on keras.distribution, which needs "
            "train.backend: jax (TensorFlow's strategies do not work under Keras 3); set "
            "train.backend: jax"
        )
    cluster = describe_cluster() if train.distribution == "multi_worker" else None
    if cluster is not None:
        connect(cluster, train.cluster_timeout_s)
    accelerated = _has_accelerator(backend)
    # On a CPU float16 is emulated (slower); on JAX everything is compiled anyway, and
    # TensorFlow's XLA on a CPU recompiles for little gain.
    policy = PRECISION_POLICIES.get(
        train.mixed_precision, "mixed_float16" if accelerated else "float32"
    )
    jit = {"on": True, "off": False}.get(train.jit_compile, accelerated or backend == "jax")
    distribution = None
    if train.distribution != "none":
        import jax

        devices = jax.devices()  # every process's, under multi_worker
        distribution = keras.distribution.DataParallel(devices=devices)
        # Each process feeds its own share of every batch (training/inputs.py); Keras' own
        # sharding is for tf.data datasets.
        distribution.auto_shard_dataset = False
    return Runtime(policy, jit, distribution, cluster)


def _has_accelerator(backend: str) -> bool:
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def seed_everything(cfg: TrainParams) -> None:
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and keras.backend.backend() == "tensorflow":
        # JAX's XLA programs are deterministic on a CPU already; TensorFlow's kernels need it.
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
