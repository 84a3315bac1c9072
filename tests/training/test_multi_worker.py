"""Multi-worker training for real (jax.distributed + keras.distribution): two processes on
127.0.0.1, the chief through a real `dvc repro` under TF_CONFIG (translated to JAX's cluster),
the other through `cifar10-mlops worker` from its own clone of the same commit (its train.npz
copied in, as from a shared path or `dvc pull`).

The unit tests at the top check how the cluster's variables are read; the slow ones train: a
clean two-process run (no listener on a wildcard address), a worker that never comes, and a
worker killed mid-training whose restart (with `dvc repro` on the chief) continues after the
last finished epoch.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.training.cluster import describe_cluster, require_chief
from tests.helpers.pipeline import (
    TINY_PARAMS,
    VENV_BIN,
    deep_update,
    dvc,
    make_pipeline_repo,
    pipeline_env,
    run,
    write_params,
)

PROCESS_TIMEOUT_S = 600  # a bound on a stuck test, far above a normal run


def tf_config(ports: list[int], index: int, chief: bool = False) -> str:
    workers = [f"127.0.0.1:{port}" for port in ports]
    cluster = {"chief": workers[:1], "worker": workers[1:]} if chief else {"worker": workers}
    task = {"type": "chief", "index": 0} if chief and index == 0 else {"type": "worker"}
    if "index" not in task:
        task["index"] = index - 1 if chief else index
    return json.dumps({"cluster": cluster, "task": task})


# --- reading the cluster -------------------------------------------------------------------


def test_tf_config_worker_list_ranks_the_tasks():
    cluster = describe_cluster({"TF_CONFIG": tf_config([2222, 2223, 2224], 2)})
    assert (cluster.rank, cluster.size, cluster.is_chief) == (2, 3, False)
    assert cluster.coordinator == "127.0.0.1:2222"
    assert describe_cluster({"TF_CONFIG": tf_config([2222, 2223], 0)}).is_chief


def test_tf_config_with_a_chief_job_puts_the_chief_first():
    chief = describe_cluster({"TF_CONFIG": tf_config([2222, 2223, 2224], 0, chief=True)})
    worker = describe_cluster({"TF_CONFIG": tf_config([2222, 2223, 2224], 1, chief=True)})
    assert chief.is_chief and chief.size == 3
    assert (worker.rank, worker.coordinator) == (1, chief.coordinator)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', 'no "cluster" object'),
        ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}, "task": {}}', "job 'ps'"),
        ('{"cluster": {"worker": ["no-port"]}, "task": {}}', '"worker"[0]'),
        ('{"cluster": {"worker": ["h:0"]}, "task": {}}', "port from 1 to 65535"),
        ('{"cluster": {"worker": ["h:99999"]}, "task": {}}', "port from 1 to 65535"),
        ('{"cluster": {"worker": ["h:1"]}}', 'no "task" object'),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 3}}', "index 3"),
    ],
)
def test_a_bad_tf_config_is_one_clear_error(text, message):
    with pytest.raises(PipelineError, match="TF_CONFIG") as error:
        describe_cluster({"TF_CONFIG": text})
    assert message in str(error.value) and "\n" not in str(error.value)


SLURM = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "1", "SLURM_NTASKS": "4",
         "SLURM_STEP_NODELIST": "n[1-4]"}  # fmt: skip


def test_slurm_job_step_describes_the_cluster_without_tf_config():
    cluster = describe_cluster(SLURM)
    assert (cluster.source, cluster.rank, cluster.size) == ("Slurm", 1, 4)


def test_explicit_jax_variables_come_first():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.5:1234", "JAX_NUM_PROCESSES": "3",
           "JAX_PROCESS_ID": "2", "TF_CONFIG": tf_config([2222, 2223], 0), **SLURM}  # fmt: skip
    cluster = describe_cluster(env)
    assert (cluster.coordinator, cluster.size, cluster.rank) == ("10.0.0.5:1234", 3, 2)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**SLURM, "SLURM_PROCID": "one"}, "SLURM_PROCID='one': must be a whole number"),
        ({**SLURM, "SLURM_NTASKS": "30000000"}, "SLURM_NTASKS='30000000': must be a whole number from 1 to 65536"),
        ({**SLURM, "SLURM_PROCID": "4"}, "SLURM_PROCID='4': must be a whole number from 0 to 3"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES, JAX_PROCESS_ID not set"),
        ({"JAX_COORDINATOR_ADDRESS": "h:0", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
         "port from 1 to 65535"),
        ({"JAX_COORDINATOR_ADDRESS": "h:99999", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
         "port from 1 to 65535"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "-2", "JAX_PROCESS_ID": "0"},
         "JAX_NUM_PROCESSES='-2'"),
    ],
)  # fmt: skip
def test_bad_cluster_variables_are_one_clear_error(env, message):
    with pytest.raises(PipelineError) as error:
        describe_cluster(env)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_no_cluster_at_all_says_what_to_set():
    with pytest.raises(PipelineError, match="set JAX_COORDINATOR_ADDRESS"):
        describe_cluster({})


def test_the_train_stage_refuses_to_run_on_a_worker(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config([2222, 2223], 1))
    with pytest.raises(PipelineError, match="run `cifar10-mlops worker` here"):
        require_chief()


@pytest.mark.parametrize(
    ("arguments", "environ", "message"),
    [
        ([], {}, "train.distribution is 'none'; a worker joins multi_worker training"),
        (["-S", "train.distribution=multi_worker"], {}, "no cluster is described"),
        (
            ["-S", "train.distribution=multi_worker"],
            {"TF_CONFIG": tf_config([2222, 2223], 0)},
            "names this task the chief (rank 0 of 2): run `dvc repro` there",
        ),
        (["--weights-out", "w.h5"], {}, "--weights-out w.h5: the file name must end in"),
        (["--weights-out", "no/such/w.weights.h5"], {}, "does not exist; create it first"),
        (["-S", "train.epochs=zero"], {}, "train.epochs"),
    ],
)
def test_the_worker_command_refuses_with_one_line(arguments, environ, message, monkeypatch, capsys):
    from cifar10_mlops.cli.main import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exited:
        main(["worker", *arguments])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error:") and message in line


# --- two real workers ----------------------------------------------------------------------

MULTI_WORKER = deep_update(
    json.loads(json.dumps(TINY_PARAMS)),
    {"train": {"backend": "jax", "distribution": "multi_worker", "cluster_timeout_s": 60}},
)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


@pytest.fixture(scope="module")
def chief_and_worker(tmp_path_factory):
    """The chief's repository with data/processed ready, and a worker's clone of it."""
    base = tmp_path_factory.mktemp("multi_worker")
    chief = make_pipeline_repo(base / "chief", MULTI_WORKER)
    dvc(chief, "repro", "preprocess")
    return chief, base


def worker_clone(chief: Path, base: Path, name: str) -> Path:
    """A checkout of the chief's commit holding the chief's train.npz (a shared path)."""
    worker = base / name
    run(base, "git", "clone", "-q", str(chief), str(worker))
    (worker / "data/processed").mkdir(parents=True, exist_ok=True)
    shutil.copy2(chief / "data/processed/train.npz", worker / "data/processed/train.npz")
    return worker


def start_worker(worker: Path, config: str, weights_out: Path) -> subprocess.Popen:
    env = {**pipeline_env(worker), "TF_CONFIG": config}
    return subprocess.Popen(
        [str(VENV_BIN / "cifar10-mlops"), "worker", "--weights-out", str(weights_out)],
        cwd=worker,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def start_chief(chief: Path, config: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(VENV_BIN / "dvc"), "repro"],
        cwd=chief,
        env={**pipeline_env(chief), "TF_CONFIG": config},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    return process.returncode, out, err


def mlflow_runs(chief: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{chief / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-mlops")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def model_weights(chief: Path, weights_file: Path | None = None) -> list[np.ndarray]:
    from cifar10_mlops.core.quiet_tensorflow import keras

    model = keras.saving.load_model(chief / "models/model.keras", compile=False)
    if weights_file is not None:
        model.load_weights(weights_file)
    return model.get_weights()


def files_in(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts}


def history_losses(path: Path) -> list[float]:
    with open(path, newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def assert_same_weights(chief: Path, worker_weights: Path) -> None:
    for ours, theirs in zip(
        model_weights(chief), model_weights(chief, worker_weights), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)


class ListenerWatch(threading.Thread):
    """Every TCP address the given processes (and their children) listen on while they run."""

    def __init__(self, *processes: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.pids = [process.pid for process in processes]
        self.addresses: set[str] = set()
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.done.wait(0.2):
            for pid in self.pids:
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(pid)
                    for process in [root, *root.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):
                            self.addresses |= {
                                connection.laddr.ip
                                for connection in process.net_connections(kind="tcp")
                                if connection.status == psutil.CONN_LISTEN
                            }

    def stop(self) -> set[str]:
        self.done.set()
        self.join()
        return self.addresses


@pytest.mark.slow
def test_two_workers_train_one_model_logged_once(chief_and_worker, tmp_path):
    chief, base = chief_and_worker
    worker = worker_clone(chief, base, "worker")
    before = files_in(worker)
    ports = free_ports(2)
    worker_process = start_worker(worker, tf_config(ports, 1), tmp_path / "w.weights.h5")
    chief_process = start_chief(chief, tf_config(ports, 0))
    watch = ListenerWatch(chief_process, worker_process)
    watch.start()
    chief_code, chief_out, chief_err = finish(chief_process)
    worker_code, worker_out, worker_err = finish(worker_process)
    listening = watch.stop()
    # The coordinator and gloo listen on the loopback address the cluster names (and this
    # machine's hostname resolves to), never on every interface.
    assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
    assert chief_code == 0, chief_out[-3000:] + chief_err[-3000:]
    assert worker_code == 0, worker_out[-3000:] + worker_err[-3000:]
    assert "2 replica(s) in 2 process(es)" in chief_out
    assert "worker: rank 1 of 2 done after epoch 2" in worker_out

    (finished,) = mlflow_runs(chief)  # one run for the whole cluster, FINISHED
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["cifar10_mlops.replicas"] == "2"
    assert finished.data.tags["cifar10_mlops.workers"] == "2"
    assert "test_accuracy" in finished.data.metrics
    assert files_in(worker) == before  # the worker wrote nothing into its checkout
    assert_same_weights(chief, tmp_path / "w.weights.h5")

    # The same global batch in one process ends at a close training loss (not the same: the
    # workers split each batch, so batch-norm statistics come from half a batch each). The
    # one-process run trains on the chief's own data/processed (its train stage only).
    single = worker_clone(chief, base, "single")
    shutil.copy2(chief / "data/processed/test.npz", single / "data/processed/test.npz")
    write_params(single, deep_update(json.loads(json.dumps(MULTI_WORKER)),
                                     {"train": {"distribution": "none"}}))  # fmt: skip
    dvc(single, "repro", "--single-item", "train")
    multi_loss = history_losses(chief / "reports/history.csv")[-1]
    single_loss = history_losses(single / "reports/history.csv")[-1]
    print(f"final training loss: 2 workers {multi_loss:.4f}, 1 process {single_loss:.4f}")
    assert abs(multi_loss - single_loss) <= 0.1 * single_loss


@pytest.mark.slow
def test_a_worker_that_never_comes_fails_the_chief_within_the_timeout(chief_and_worker):
    chief, _ = chief_and_worker
    write_params(chief, deep_update(json.loads(json.dumps(MULTI_WORKER)),
                                    {"train": {"cluster_timeout_s": 8}}))  # fmt: skip
    code, out, err = finish(start_chief(chief, tf_config(free_ports(2), 0)))
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert "not every one of the 2 processes" in errors[0]
    assert "train.cluster_timeout_s=8 s" in errors[0]
    assert "cifar10-mlops worker" in errors[0]
    assert mlflow_runs(chief)[-1].info.status == "FAILED"


def backed_up_epochs(root: Path) -> int:
    names = [path.name for path in root.glob(".training_state/backup-*/epoch-*")]
    return max((int(name[6:]) for name in names if name[6:].isdigit()), default=0)


@pytest.mark.slow
def test_a_killed_worker_stops_the_chief_and_the_restart_resumes(chief_and_worker, tmp_path):
    chief, base = chief_and_worker
    params = deep_update(json.loads(json.dumps(MULTI_WORKER)),
                         {"train": {"epochs": 4, "cluster_timeout_s": 10}})  # fmt: skip
    write_params(chief, params)
    run(chief, "git", "commit", "-qam", "4 epochs, 10 s cluster timeout")
    worker = worker_clone(chief, base, "worker-killed")
    ports = free_ports(2)
    worker_process = start_worker(worker, tf_config(ports, 1), tmp_path / "unused.weights.h5")
    chief_process = start_chief(chief, tf_config(ports, 0))
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while backed_up_epochs(chief) < 1 and chief_process.poll() is None:
        assert time.monotonic() < deadline, "the chief never finished an epoch"
        time.sleep(0.05)
    os.killpg(worker_process.pid, signal.SIGKILL)
    worker_process.communicate()
    code, out, err = finish(chief_process)
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert "the cluster lost a process" in errors[0]
    assert mlflow_runs(chief)[-1].info.status == "FAILED"
    finished_before_restart = backed_up_epochs(chief)
    assert finished_before_restart >= 1

    worker_process = start_worker(worker, tf_config(ports, 1), tmp_path / "w.weights.h5")
    chief_code, chief_out, chief_err = finish(start_chief(chief, tf_config(ports, 0)))
    worker_code, worker_out, worker_err = finish(worker_process)
    assert chief_code == 0, chief_out[-3000:] + chief_err[-3000:]
    assert worker_code == 0, worker_out[-3000:] + worker_err[-3000:]
    assert f"resumed after epoch {finished_before_restart}" in chief_out
    assert f"resumed after epoch {finished_before_restart}" in worker_out
    resumed = mlflow_runs(chief)[-1]
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["cifar10_mlops.attempts"] == "2"  # the same run, continued
    assert len(history_losses(chief / "reports/history.csv")) == 4
