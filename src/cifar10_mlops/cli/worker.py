"""`cifar10-mlops worker`: one non-chief task of multi-worker training.

Run from the repository root of a checkout of the chief's commit, with its params.yaml and
data/processed/train.npz (`dvc pull`, or a shared path), and the cluster's variables naming
this process (JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES + JAX_PROCESS_ID, TF_CONFIG, Slurm or
Open MPI: training/cluster.py). It trains in lockstep with the chief and exits 0 when training ends. It writes nothing
into the repository: its scratch files (its backups, its model) live in a temporary
directory, removed on success and named in the error otherwise.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cifar10_mlops.core import config
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.keras_backend import use_backend
from cifar10_mlops.core.params import Params, load_params, parse_params, read_params_yaml
from cifar10_mlops.data.arrays import load_npz
from cifar10_mlops.training.cluster import describe_cluster


def run_worker(weights_out: Path | None = None, assignments: Sequence[str] = ()) -> int:
    """Train as this task of the cluster; `weights_out`: also save the final (best-epoch)
    weights there, e.g. to compare them with the chief's. `assignments`: KEY=VALUE changes to
    params.yaml, the ones the chief's `dvc exp run -S` got (the file itself is not written)."""
    if weights_out is not None and not weights_out.name.endswith(".weights.h5"):
        raise PipelineError(f"--weights-out {weights_out}: the file name must end in .weights.h5")
    if weights_out is not None and not weights_out.absolute().parent.is_dir():
        raise PipelineError(
            f"--weights-out {weights_out}: folder {weights_out.absolute().parent} does not "
            "exist; create it first (checked before training, not after)"
        )
    params = _params_with(assignments)
    if params.train.distribution != "multi_worker":
        raise PipelineError(
            f"{config.PARAMS_FILE}: train.distribution is {params.train.distribution!r}; a "
            "worker joins multi_worker training: set train.distribution: multi_worker here and "
            "on the chief"
        )
    cluster = describe_cluster()
    if cluster.is_chief:
        raise PipelineError(
            f"{cluster.source} names this task the chief (rank 0 of {cluster.size}): run "
            "`dvc repro` there; `cifar10-mlops worker` is for the other tasks"
        )
    train_data = load_npz(config.TRAIN_NPZ)
    use_backend(params.train.backend)  # before training imports Keras
    from cifar10_mlops.training.fit import train_model

    scratch = Path(tempfile.mkdtemp(prefix=f"cifar10-mlops-worker-{cluster.rank}-"))
    try:
        outcome = train_model(
            params,
            train_data,
            scratch / "model.keras",
            scratch / "history.csv",
            scratch / "state",
            resume_key="worker",
        )
        if weights_out is not None:
            outcome.model.save_weights(weights_out)
    except BaseException:
        print(f"worker: scratch files kept in {scratch}")
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    resumed = (
        f", resumed after epoch {outcome.resumed_from_epoch}" if outcome.resumed_from_epoch else ""
    )
    print(
        f"worker: rank {cluster.rank} of {cluster.size} done after epoch {params.train.epochs}"
        f"{resumed}, {outcome.replicas} replica(s)"
    )
    return 0


def _params_with(assignments: Sequence[str]) -> Params:
    from cifar10_mlops.cli.presets import apply_overrides, parse_assignment

    params = load_params(config.PARAMS_FILE)  # the file's own errors first
    if not assignments:
        return params
    raw = read_params_yaml(config.PARAMS_FILE)
    for text in assignments:
        apply_overrides(raw, parse_assignment(text))
    return parse_params(raw, config.PARAMS_FILE)
