"""Multi-process training (`train.distribution: multi_worker`): who is in the cluster, joining
it within `train.cluster_timeout_s` on `jax.distributed`, and the chief's state handed to every
process.

Keras 3 trains on several machines through `keras.distribution` on the JAX backend (the
TensorFlow strategy path does not work under Keras 3: keras-team/keras#20585). Every process
runs the same program on its own share of each global batch; gradients and batch-norm
statistics are reduced over the whole batch by XLA's collectives (gloo on CPUs, NCCL on GPUs).

The cluster, in this order of precedence:
- JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES + JAX_PROCESS_ID (explicit; launchers that
  start JAX jobs set these);
- TF_CONFIG (Kubeflow's TFJob, Vertex AI, SageMaker set it): its first task (the `chief`,
  else worker 0) is process 0 and its address is the coordinator's;
- JAX's own detection: Slurm (`srun`) and Open MPI (`mpirun`).
Process 0 (the chief) is the DVC train stage; every other process runs `cifar10-mlops
worker`. Only the chief keeps backups, so after a restart the chief's state (weights, optimizer,
finished epochs) goes to every process before training continues, and a process whose params,
data, code or libraries differ from the chief's stops everyone with one clear line.

What listens: the coordinator (process 0) on exactly the address the cluster names, never a
wildcard; gloo on each process's own host address (its hostname's). Neither authenticates its
peers: the cluster needs a private network (docs/distributed.md).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import Params

EXPLICIT_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
MAX_PROCESSES = 65_536  # far above any real cluster; a garbage count fails here, not in memory
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$")


@dataclass(frozen=True)
class Cluster:
    """The cluster as this process sees it."""

    coordinator: str  # "host:port": process 0 serves the coordination service there
    size: int
    rank: int  # 0: the chief
    source: str  # where it was read: the variables' names, "TF_CONFIG", "Slurm", "Open MPI"

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


def describe_cluster(environ: Mapping[str, str] | None = None) -> Cluster:
    """Read the cluster from the environment; one clear error when nothing describes one."""
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in EXPLICIT_VARIABLES):
        return _from_explicit_variables(env)
    if env.get("TF_CONFIG"):
        return _from_tf_config(env["TF_CONFIG"])
    detected = _from_scheduler(env)
    if detected is not None:
        return detected
    raise PipelineError(
        "train.distribution is multi_worker but no cluster is described: set "
        "JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i (or TF_CONFIG), "
        "or run inside a Slurm job step (srun) or under mpirun; see docs/distributed.md"
    )


def require_chief() -> Cluster:
    """The DVC train stage runs only on the chief."""
    cluster = describe_cluster()
    if not cluster.is_chief:
        raise PipelineError(
            f"{cluster.source} names this process rank {cluster.rank} of {cluster.size}, not the "
            "chief: run `cifar10-mlops worker` here and `dvc repro` on the chief (rank 0)"
        )
    return cluster


def _count(value: str | None, name: str, low: int, high: int) -> int:
    """A whole number from an environment variable, bounded, or one line naming it."""
    text = (value or "").strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise PipelineError(
            f"{name}={value!r}: must be a whole number from {low} to {high}; "
            "see docs/distributed.md"
        )
    return int(text)


def _checked_address(address: object, where: str) -> str:
    text = address if isinstance(address, str) else ""
    match = _ADDRESS.match(text)
    if not match or not 1 <= int(match.group(2)) <= 65_535:
        raise PipelineError(
            f'{where} is {address!r}, not "host:port" with a port from 1 to 65535; '
            "see docs/distributed.md"
        )
    return text


def _from_explicit_variables(env: Mapping[str, str]) -> Cluster:
    missing = [name for name in EXPLICIT_VARIABLES if not env.get(name)]
    if missing:
        raise PipelineError(
            f"{', '.join(missing)} not set: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and "
            "JAX_PROCESS_ID describe the cluster together; see docs/distributed.md"
        )
    coordinator = _checked_address(env["JAX_COORDINATOR_ADDRESS"], "JAX_COORDINATOR_ADDRESS")
    size = _count(env["JAX_NUM_PROCESSES"], "JAX_NUM_PROCESSES", 1, MAX_PROCESSES)
    rank = _count(env["JAX_PROCESS_ID"], "JAX_PROCESS_ID", 0, size - 1)
    return Cluster(coordinator, size, rank, "JAX_COORDINATOR_ADDRESS")


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
    order: list[tuple[str, int, str]] = []
    for job in ("chief", "worker"):
        addresses = cluster.get(job) or []
        if not isinstance(addresses, list):
            raise bad(f'cluster "{job}" must be a list of "host:port" strings')
        if len(order) + len(addresses) > MAX_PROCESSES:
            raise bad(f"more than {MAX_PROCESSES} tasks")
        for index, address in enumerate(addresses):
            try:
                _checked_address(address, f'TF_CONFIG cluster "{job}"[{index}]')
            except PipelineError as error:
                raise bad(str(error).split(";")[0].removeprefix("TF_CONFIG ")) from None
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
    return Cluster(order[0][2], len(order), ranks[key], "TF_CONFIG")


def _from_scheduler(env: Mapping[str, str]) -> Cluster | None:
    """Slurm's or Open MPI's variables, read as JAX reads them; the coordinator's address is
    JAX's own choice (Slurm: the step's first node, a port from the job id; Open MPI: the
    launcher's host)."""
    if "SLURM_PROCID" in env and "SLURM_JOB_ID" in env:
        size = _count(env.get("SLURM_NTASKS"), "SLURM_NTASKS", 1, MAX_PROCESSES)
        rank = _count(env.get("SLURM_PROCID"), "SLURM_PROCID", 0, size - 1)
        return Cluster(_detected_coordinator("Slurm", env), size, rank, "Slurm")
    if "OMPI_MCA_orte_hnp_uri" in env:
        size = _count(env.get("OMPI_COMM_WORLD_SIZE"), "OMPI_COMM_WORLD_SIZE", 1, MAX_PROCESSES)
        rank = _count(env.get("OMPI_COMM_WORLD_RANK"), "OMPI_COMM_WORLD_RANK", 0, size - 1)
        return Cluster(_detected_coordinator("Open MPI", env), size, rank, "Open MPI")
    return None


def _detected_coordinator(scheduler: str, env: Mapping[str, str]) -> str:
    # JAX's cluster detection is not public API; it reads os.environ, so only the process's
    # own environment can be asked.
    if env is not os.environ:
        return f"{scheduler.lower().replace(' ', '-')}-coordinator:0"
    try:
        from jax._src.clusters import ClusterEnv

        address, _, _, _ = ClusterEnv.auto_detect_unset_distributed_params(
            None, None, None, None, None, None
        )
    except Exception as error:  # its parsers raise whatever the variables provoke
        raise PipelineError(
            f"{scheduler}: JAX cannot find the coordinator from the job's variables ({error}); "
            "set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID instead"
        ) from None
    return _checked_address(address, f"{scheduler}'s coordinator address")


def warn_if_public(cluster: Cluster) -> None:
    """The coordinator and gloo accept any peer that connects: say so when the coordinator's
    address is reachable from outside a private network."""
    host = cluster.coordinator.rsplit(":", 1)[0].strip("[]")
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return  # unresolvable here: connect() reports it
    if not (address.is_loopback or address.is_private or address.is_link_local):
        warnings.warn(
            f"multi_worker: the coordinator {cluster.coordinator} is a public address; the "
            "cluster's ports accept any peer, so run it on a private network "
            "(docs/distributed.md)",
            stacklevel=2,
        )


# JAX's own join timeout is fatal (its client aborts the process with a C++ stack trace), so
# the join runs in a thread with a longer one, and this process gives up first, with one line.
JAX_JOIN_GRACE_S = 60


def connect(cluster: Cluster, timeout_s: int) -> None:
    """Join the cluster: returns once every process has joined, or fails with one line after
    `timeout_s`. A process that dies later makes the others fail (see `cluster_errors`), not
    hang."""
    import jax

    warn_if_public(cluster)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    host, port = cluster.coordinator.rsplit(":", 1)
    outcome: list[Exception | None] = []

    def join() -> None:
        try:
            bind_host = socket.gethostbyname(host.strip("[]")) if cluster.is_chief else host
            jax.distributed.initialize(
                coordinator_address=cluster.coordinator,
                num_processes=cluster.size,
                process_id=cluster.rank,
                initialization_timeout=timeout_s + JAX_JOIN_GRACE_S,
                heartbeat_timeout_seconds=timeout_s,
                shutdown_timeout_seconds=timeout_s,
                # JAX's default is every interface: only the address the cluster names.
                coordinator_bind_address=f"{bind_host}:{port}",
            )
            outcome.append(None)
        except Exception as error:  # handed to the main thread
            outcome.append(error)

    _skip_jax_shutdown_if_the_cluster_broke()
    joining = threading.Thread(target=join, name="jax-distributed-join", daemon=True)
    joining.start()
    joining.join(timeout_s)
    if not outcome:  # still waiting for a process that never came
        raise _cluster_error(TimeoutError("no answer"), cluster, timeout_s, joining=True)
    if outcome[0] is not None:
        raise _cluster_error(outcome[0], cluster, timeout_s, joining=True)
    try:
        jax.devices()  # the collectives connect here: a missing peer fails now, not mid-fit
    except (RuntimeError, ValueError) as error:
        raise _cluster_error(error, cluster, timeout_s, joining=True) from None


_cluster_broken = False


def _skip_jax_shutdown_if_the_cluster_broke() -> None:
    """After a lost peer, JAX's shutdown barrier at exit waits for it, times out and aborts the
    process (SIGABRT, a C++ stack trace under the one-line error). Registered after JAX's own
    exit handler, so it runs first: the run has already been closed FAILED and the error
    printed, and the process ends with its exit code without that barrier."""

    def exit_now() -> None:
        if _cluster_broken:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(_exit_code)

    atexit.register(exit_now)


_exit_code = 2  # a PipelineError's; a signal's or an interrupt's replaces it


def _set_exit_code(error: BaseException) -> None:
    global _exit_code
    if isinstance(error, SystemExit) and isinstance(error.code, int):
        _exit_code = error.code
    elif isinstance(error, KeyboardInterrupt):
        _exit_code = 130
    else:
        _exit_code = 1


@contextlib.contextmanager
def cluster_errors(cluster: Cluster, timeout_s: int) -> Iterator[None]:
    """A lost process surfaces as one line naming the cluster, instead of a page of gloo
    errors and a core dump at exit."""
    global _cluster_broken
    try:
        yield
    except (RuntimeError, ValueError) as error:
        if not _is_cluster_failure(error):
            raise
        _cluster_broken = True
        raise _cluster_error(error, cluster, timeout_s, joining=False) from None
    except BaseException as error:
        # Ctrl-C / SIGTERM mid-collective: the peers cannot agree on a clean shutdown either.
        _cluster_broken = True
        _set_exit_code(error)
        raise


def _is_cluster_failure(error: Exception) -> bool:
    text = str(error)
    return any(
        sign in text
        for sign in ("Gloo", "gloo", "DEADLINE_EXCEEDED", "UNAVAILABLE", "Connection", "heartbeat")
    )


def _cluster_error(
    error: Exception, cluster: Cluster, timeout_s: int, joining: bool
) -> PipelineError:
    global _cluster_broken
    _cluster_broken = True
    role = "chief" if cluster.is_chief else f"worker (rank {cluster.rank})"
    reason = (
        str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    )
    if joining:
        what = (
            f"not every one of the {cluster.size} processes ({cluster.source}, coordinator "
            f"{cluster.coordinator}) joined within train.cluster_timeout_s={timeout_s} s "
            f"({reason}); start `dvc repro` on the chief and `cifar10-mlops worker` on every "
            "other process"
        )
    else:
        what = (
            f"the cluster lost a process ({reason}); restart the missing process and the rest: "
            "training resumes after the last finished epoch"
        )
    return PipelineError(f"train ({role}): {what}")


def training_fingerprint(params: Params, images: np.ndarray, labels: np.ndarray) -> bytes:
    """What every process must agree on: the model and train params, the training arrays, this
    package's code and the versions of the libraries that compute."""
    digest = hashlib.sha256()
    settings = {"model": params.model.model_dump(), "train": params.train.model_dump()}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    for name in ("keras", "jax", "jaxlib", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            digest.update(f"{name}=={metadata.version(name)}".encode())
    package = Path(__file__).resolve().parents[1]
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode())
        digest.update(source.read_bytes())
    return digest.digest()[:16]


def share_chief_state(
    values: list[np.ndarray], finished_epochs: int, fingerprint: bytes, chief: bool
):
    """Every process gets the chief's `values` (weights and optimizer variables) and finished
    epochs; when any process trains on other params, data or code, every process stops.

    `values`: on the chief, its state (a backup or its fresh model); elsewhere arrays of the
    same shapes, whose contents are ignored."""
    from jax.experimental import multihost_utils

    mine = np.frombuffer(fingerprint, dtype=np.uint8)
    everyone = np.asarray(multihost_utils.process_allgather(mine))
    disagreeing = int(np.sum(np.any(everyone != everyone[0], axis=1)))
    if disagreeing:
        raise PipelineError(
            f"train: {disagreeing} process(es) have other params.yaml (model, train), "
            "data/processed/train.npz, code or library versions than the chief; run every worker "
            "from a checkout of the chief's commit with its data (`dvc pull`) and environment"
        )
    epochs = np.asarray([finished_epochs if chief else 0], dtype=np.int64)
    shared = multihost_utils.broadcast_one_to_all((epochs, values), is_source=chief)
    return int(np.asarray(shared[0])[0]), [np.asarray(value) for value in shared[1]]
