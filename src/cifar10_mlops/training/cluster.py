"""Multi-worker training (`train.distribution: multi_worker`): who is in the cluster, joining
it within `train.cluster_timeout_s`, and the chief's state handed to every worker.

The cluster comes from the standard TF_CONFIG variable (Kubeflow's TFJob, Vertex AI, SageMaker
and Ray Train set it) or, without one, from Slurm's environment inside `srun`. The chief (the
`chief` task, else worker 0) is the DVC train stage; every other task runs `cifar10-mlops
worker`. Only the chief keeps backups, so after a restart the chief's state (weights, optimizer,
finished epochs) is broadcast to every worker before training continues, and a worker whose
params or data differ from the chief's stops everyone with one clear line instead of training
on something else.

TensorFlow's own C++ log (connection retries, heartbeats) goes to a log file named in errors:
stderr keeps the one-line error of the product.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import Params

SLURM_PORT_ENV = "CIFAR10_MLOPS_SLURM_PORT"  # the first port of Slurm's resolver (default 8888)


@dataclass(frozen=True)
class Cluster:
    """The cluster as this process sees it: every task's address, chief first, and its rank."""

    addresses: tuple[str, ...]
    rank: int  # 0: the chief
    source: str  # "TF_CONFIG" or "Slurm"
    task: tuple[str, int] = ("worker", 0)  # this process's job and index in the cluster

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def size(self) -> int:
        return len(self.addresses)


def describe_cluster(environ: dict[str, str] | None = None) -> Cluster:
    """Read TF_CONFIG, or Slurm's variables; a clear error when neither describes a cluster."""
    env = os.environ if environ is None else environ
    if env.get("TF_CONFIG"):
        return _from_tf_config(env["TF_CONFIG"])
    if "SLURM_PROCID" in env and ("SLURM_STEP_NUM_TASKS" in env or "SLURM_NTASKS" in env):
        tasks = int(env.get("SLURM_STEP_NUM_TASKS") or env["SLURM_NTASKS"])
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "?")
        rank = int(env["SLURM_PROCID"])
        return Cluster(tuple(f"{nodes}#{i}" for i in range(tasks)), rank, "Slurm", ("worker", rank))
    raise PipelineError(
        "train.distribution is multi_worker but no cluster is described: set TF_CONFIG "
        '(\'{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}\') '
        "or run inside a Slurm job step (srun); see docs/distributed.md"
    )


def require_chief() -> Cluster:
    """The DVC train stage runs only on the chief."""
    cluster = describe_cluster()
    if not cluster.is_chief:
        raise PipelineError(
            f"{cluster.source} names this task rank {cluster.rank} of {cluster.size}, not the "
            "chief: run `cifar10-mlops worker` here and `dvc repro` on the chief (rank 0)"
        )
    return cluster


def _from_tf_config(text: str) -> Cluster:
    def bad(what: str) -> PipelineError:
        return PipelineError(f"TF_CONFIG: {what}; see docs/distributed.md for its format")

    try:
        config = json.loads(text)
    except ValueError as error:
        raise bad(f"not valid JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise bad('no "cluster" object')
    cluster, task = config["cluster"], config.get("task")
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise bad(f"job {unknown[0]!r} is not supported: multi_worker uses 'chief' and 'worker'")
    jobs = [(job, cluster.get(job) or []) for job in ("chief", "worker")]
    order: list[tuple[str, int, str]] = []
    for job, addresses in jobs:
        if not isinstance(addresses, list):
            raise bad(f'cluster "{job}" must be a list of "host:port" strings')
        for index, address in enumerate(addresses):
            if not isinstance(address, str) or not re.fullmatch(r"[^\s:]+:\d{1,5}", address):
                raise bad(f'cluster "{job}"[{index}] is {address!r}, not "host:port"')
            order.append((job, index, address))
    if len([job for job, _, _ in order if job == "chief"]) > 1:
        raise bad('cluster "chief" holds more than one address')
    if not order:
        raise bad("the cluster lists no worker")
    if not isinstance(task, dict) or "type" not in task:
        raise bad('no "task" object with "type" and "index"')
    ranks = {(job, index): rank for rank, (job, index, _) in enumerate(order)}
    key = (task.get("type"), task.get("index", 0))
    if key not in ranks:
        raise bad(f"task {key[0]!r} index {key[1]!r} is not in the cluster")
    addresses = tuple(address for _, _, address in order)
    return Cluster(addresses, ranks[key], "TF_CONFIG", (str(key[0]), int(key[1])))


def connect(cluster: Cluster, timeout_s: int, tensorflow_log: Path | None) -> Any:
    """Create the MultiWorkerMirroredStrategy: it returns once every task has joined, or fails
    with one line after `timeout_s`. A task that stops sending heartbeats for `timeout_s` later
    makes the training of every other task fail (see `cluster_errors`), not hang."""
    import tensorflow as tf
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    if tensorflow_log is not None:
        _send_tensorflow_log_to(tensorflow_log)
    resolver = _resolver(cluster)
    spec = resolver.cluster_spec()
    leader = "chief" if "chief" in spec.jobs else "worker"
    # The settings MultiWorkerMirroredStrategy would choose, with our timeouts, and joining as a
    # barrier: without it the chief waits for a missing worker forever.
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=f"/job:{leader}/replica:0/task:0",
        cluster_register_timeout_in_ms=timeout_s * 1000,
        heartbeat_timeout_in_ms=timeout_s * 1000,
        shutdown_barrier_timeout_in_ms=timeout_s * 1000,
        coordinated_jobs=[
            coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
            for job in ("chief", "worker")
            if job in spec.jobs
        ],
    )
    context.context().coordination_service.cluster_register_with_barrier = True
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except tf.errors.OpError as error:
        raise _cluster_error(error, cluster, timeout_s, tensorflow_log, joining=True) from None
    # TensorFlow's preemption notifier takes over SIGTERM; give it back to Python, so that a
    # stopped train stage still ends its MLflow run KILLED.
    handler = signal.getsignal(signal.SIGTERM)
    if handler is not None:
        signal.signal(signal.SIGTERM, handler)
    return strategy


def _resolver(cluster: Cluster):
    import tensorflow as tf

    if cluster.source != "Slurm":
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    gpus = len(tf.config.list_physical_devices("GPU"))  # it would ask nvidia-smi, absent on CPUs
    try:
        return tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=int(os.environ.get(SLURM_PORT_ENV, "8888")),
            gpus_per_node=gpus,
            auto_set_gpu=gpus > 0,
        )
    except (OSError, RuntimeError, ValueError) as error:
        raise PipelineError(
            f"Slurm: cannot resolve the job step's hosts ({error}); run the tasks with `srun` "
            "inside an allocation, or set TF_CONFIG instead"
        ) from None


def _send_tensorflow_log_to(path: Path) -> None:
    """Point file descriptor 2 (where TensorFlow's C++ code logs) at `path`; Python's
    sys.stderr keeps writing to the real stderr."""
    if getattr(sys.stderr, "cifar10_mlops_real_stderr", False):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    real = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    real.cifar10_mlops_real_stderr = True  # type: ignore[attr-defined]
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = real


@contextlib.contextmanager
def cluster_errors(cluster: Cluster, timeout_s: int, tensorflow_log: Path | None) -> Iterator[None]:
    """A lost task surfaces as one line naming it, instead of TensorFlow's page of RPC errors."""
    import tensorflow as tf

    lost = None
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError, tf.errors.InternalError) as error:  # fmt: skip
        lost = _cluster_error(error, cluster, timeout_s, tensorflow_log, joining=False)
    if lost is not None:
        _quiet_abandoned_thread_pools()
        raise lost


def _quiet_abandoned_thread_pools() -> None:
    """A step aborted mid-collective leaves TensorFlow's thread pool of that step unclosed; at
    exit its __del__ writes to a pipe already closed and Python prints "Exception ignored in
    Pool.__del__" with a traceback under the one-line error. Only that message is dropped."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        from_pool = getattr(unraisable.object, "__qualname__", "") == "Pool.__del__"
        if not (from_pool and issubclass(unraisable.exc_type, OSError)):
            previous(unraisable)

    sys.unraisablehook = hook


def _cluster_error(
    error: Exception, cluster: Cluster, timeout_s: int, tensorflow_log: Path | None, joining: bool
) -> PipelineError:
    # TensorFlow names the task that reports the error and the ones it lost: name the others.
    found = re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", str(error))
    tasks = sorted({(job, int(index)) for job, index in found} - {cluster.task})
    named = ", ".join(f"{job} {index}" for job, index in tasks) or "a task"
    role = "chief" if cluster.is_chief else f"worker (rank {cluster.rank})"
    if joining:
        what = (
            f"{named} of {cluster.size} ({cluster.source}: {', '.join(cluster.addresses)}) did not "
            f"join within train.cluster_timeout_s={timeout_s} s; start `dvc repro` on the chief "
            "and `cifar10-mlops worker` on every other task"
        )
    else:
        what = (
            f"the cluster lost {named} (no answer within train.cluster_timeout_s={timeout_s} s); "
            "restart the missing task and the rest: training resumes after the last finished "
            "epoch"
        )
    log = f"; TensorFlow's log: {tensorflow_log}" if tensorflow_log else ""
    return PipelineError(f"train ({role}): {what}{log}")


def training_fingerprint(params: Params, images: np.ndarray, labels: np.ndarray) -> bytes:
    """What every task must agree on: the model and train params and the training arrays."""
    digest = hashlib.sha256()
    settings = {"model": params.model.model_dump(), "train": params.train.model_dump()}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.digest()[:16]


def share_chief_state(strategy, model, restored, finished_epochs: int, fingerprint: bytes) -> int:
    """Give every task the chief's weights, optimizer state and finished epochs; stop every
    task when one trains on other params or data. Returns the chief's finished epochs.

    `restored`: on the chief, a local model holding its backup (None: the distributed model's
    own values are the state)."""
    import tensorflow as tf

    chief = bool(strategy.extended.should_checkpoint)
    mine = np.frombuffer(fingerprint, dtype=np.uint8).astype(np.int64)
    header = np.concatenate([[finished_epochs], mine]) if chief else np.zeros(len(mine) + 1)
    header = _from_chief(strategy, [tf.constant(header, tf.int64)])[0].numpy()
    chief_epochs, chief_fingerprint = int(header[0]), header[1:]
    differs = 0 if np.array_equal(chief_fingerprint, mine) else 1
    disagreeing = int(_sum(strategy, [tf.constant(differs, tf.int64)])[0].numpy())
    if disagreeing:
        raise PipelineError(
            f"train: {disagreeing} task(s) have other params.yaml (model, train) or "
            "data/processed/train.npz than the chief; run every worker from a checkout of the "
            "chief's commit with its data (`dvc pull`)"
        )
    variables = [*model.weights, *model.optimizer.variables]
    source = restored if chief and restored is not None else model
    values = [tf.convert_to_tensor(v) for v in [*source.weights, *source.optimizer.variables]]
    values = values if chief else [tf.zeros_like(value) for value in values]
    for variable, value in zip(variables, _from_chief(strategy, values), strict=True):
        variable.assign(value)
    return chief_epochs


def _from_chief(strategy, tensors: list) -> list:
    """The chief's tensors on every task (the others contribute zeros to a sum)."""
    return _sum(strategy, tensors)


def _sum(strategy, tensors: list) -> list:
    """Each tensor summed over every task, in one traced function (run eagerly, TensorFlow
    would start a thread pool per tensor)."""
    import tensorflow as tf

    @tf.function
    def summed(values):
        return [
            strategy.reduce(
                "SUM",
                strategy.experimental_distribute_values_from_function(lambda _, v=value: v),
                axis=None,
            )
            for value in values
        ]

    return summed(tensors)


@contextlib.contextmanager
def keras_multi_worker_fit(model, strategy) -> Iterator[None]:
    """Work around keras-team/keras#20585 (still open with Keras 3.15 and TensorFlow 2.21):
    under MultiWorkerMirroredStrategy, Keras' TensorFlow trainer fails in `fit` twice.

    1. Before the first step it averages a whole input batch across workers to build the model
       (`strategy.reduce` of a tuple of PerReplica values: "unsupported type"). The model is
       built from this worker's own batch instead (only the shapes matter).
    2. After each step it reduces every logged metric with `strategy.reduce(MEAN, axis=0)`,
       which fails on scalars. Keras' metric variables are mirrored variables, summed across
       all replicas of all workers at every update, so each worker's value already is the
       global one: the local value is logged, as with one worker.
    """
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer

    def build_from_local_batch(self, iterator=None, data_batch=None):
        for _, _, batches in iterator:
            local = [strategy.experimental_local_results(v)[0] for v in next(batches)]
            with strategy.scope():
                self._symbolic_build(data_batch=tuple(local))
            break

    original = tensorflow_trainer._collective_all_reduce_multi_worker
    model._maybe_symbolic_build = types.MethodType(build_from_local_batch, model)
    tensorflow_trainer._collective_all_reduce_multi_worker = lambda strategy: False
    try:
        yield
    finally:
        tensorflow_trainer._collective_all_reduce_multi_worker = original
        del model._maybe_symbolic_build


@contextlib.contextmanager
def global_batch_norm(model) -> Iterator[None]:
    """Batch normalisation over the global batch while training on several workers: each
    worker sees only its share of every batch, so without this each would normalise by (and
    keep moving statistics of) its own share, and the workers' models would differ. The
    saved model is left as built (the flag only matters in training)."""
    from cifar10_mlops.core.quiet_tensorflow import keras

    def walk(layer):
        yield layer
        for inner in getattr(layer, "layers", []):
            yield from walk(inner)

    norms = [layer for layer in walk(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer in norms:
            layer.synchronized = False
