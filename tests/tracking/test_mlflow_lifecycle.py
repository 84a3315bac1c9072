"""MLflow run lifecycle with real processes: FAILED, KILLED, orphans, retries that continue.

Each child process opens a pipeline run through the tracking module against a temporary
sqlite store, then raises, waits for a signal, or is SIGKILLed.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from cifar10_mlops.core.params import Params
from cifar10_mlops.tracking import epoch_logger, lifecycle, owners, run_opening

DATA_VERSION = "sha256:00000000000000aa"

CHILD = f"""
import sys, time
from pathlib import Path
from cifar10_mlops.core.params import Params
from cifar10_mlops.tracking import epoch_logger, lifecycle, owners, run_opening

mode, workdir, epochs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
params = Params.model_validate({{"train": {{"epochs": epochs}}}})
with lifecycle.run_lifecycle():
    run_id = run_opening.start_pipeline_run(
        params, "{DATA_VERSION}", workdir / "run.json", workdir / "state.json")
    epoch_logger.EpochMetricsLogger().on_epoch_end(0, {{"loss": 2.0}})
    print(run_id, flush=True)
    if mode == "raise":
        raise RuntimeError("training blew up")
    time.sleep(300)  # until the test sends a signal
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    yield MlflowClient(tracking_uri=uri)
    while mlflow.active_run():
        mlflow.end_run()


class Child:
    """A process that opened a pipeline run and printed its id."""

    def __init__(self, workdir: Path, mode: str, epochs: int = 2):
        script = workdir / "child.py"
        script.write_text(CHILD)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        self.process = subprocess.Popen(
            [sys.executable, str(script), mode, str(workdir), str(epochs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            # A shell that starts the suite in the background ignores SIGINT, and a child
            # inherits that: Python would then never raise KeyboardInterrupt.
            preexec_fn=_default_sigint,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 180)
        self.run_id = self.process.stdout.readline().strip() if ready else ""
        if not self.run_id:
            self.process.kill()
            raise AssertionError(f"child did not start a run:\n{self.process.communicate()[1]}")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.wait()

    def wait(self) -> int:
        _, self.stderr = self.process.communicate(timeout=120)
        return self.process.returncode


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(workdir: Path, epochs: int = 2) -> str:
    params = Params.model_validate({"train": {"epochs": epochs}})
    return run_opening.start_pipeline_run(
        params, DATA_VERSION, workdir / "run.json", workdir / "state.json"
    )


def test_an_exception_marks_the_run_failed_and_a_retry_continues_it(store, tmp_path, capsys):
    child = Child(tmp_path, "raise")
    assert child.wait() == 1
    assert "training blew up" in child.stderr
    run = store.get_run(child.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[owners.PID_TAG] == str(child.process.pid)
    assert run.data.tags[owners.HOST_TAG] == socket.gethostname()
    assert run.data.tags[run_opening.ATTEMPTS_TAG] == "1"

    # The same params and data version again: the same run, attempt 2, owned by this process.
    assert start(tmp_path) == child.run_id
    assert (
        f"continuing run {child.run_id} (attempt 2; the last attempt ended FAILED)"
        in capsys.readouterr().out
    )
    run = store.get_run(child.run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags[run_opening.ATTEMPTS_TAG] == "2"
    assert run.data.tags[owners.PID_TAG] == str(os.getpid())
    # A fit resumed at epoch 1 continues the series: steps are epochs, nothing overlaps.
    epoch_logger.EpochMetricsLogger().on_epoch_end(1, {"loss": 1.5})
    run_opening.end_run()
    assert [(m.step, m.value) for m in store.get_metric_history(child.run_id, "loss")] == [
        (0, 2.0),
        (1, 1.5),
    ]
    assert store.get_run(child.run_id).info.status == "FINISHED"
    assert store.get_run(child.run_id).data.params["train.epochs"] == "2"


def test_ctrl_c_marks_the_run_killed(store, tmp_path):
    child = Child(tmp_path, "wait")
    assert child.stop(signal.SIGINT) != 0
    assert "KeyboardInterrupt" in child.stderr
    assert store.get_run(child.run_id).info.status == "KILLED"


def test_sigterm_marks_the_run_killed_and_exits_143(store, tmp_path):
    child = Child(tmp_path, "wait")
    assert child.stop(signal.SIGTERM) == 128 + signal.SIGTERM
    assert store.get_run(child.run_id).info.status == "KILLED"


def test_a_sigkilled_run_is_marked_killed_when_the_next_pipeline_run_starts(store, tmp_path):
    child = Child(tmp_path, "wait")
    assert child.stop(signal.SIGKILL) == -signal.SIGKILL
    orphan = store.get_run(child.run_id)
    assert orphan.info.status == "RUNNING"  # nothing could end it
    assert orphan.data.tags[owners.PID_TAG] == str(child.process.pid)  # now a dead pid

    new_run_id = start(tmp_path, epochs=3)  # another training: a new run
    run_opening.end_run()

    orphan = store.get_run(child.run_id)
    assert new_run_id != child.run_id
    assert orphan.info.status == "KILLED"
    reason = orphan.data.tags[owners.KILLED_REASON_TAG]
    assert (
        f"owner process {child.process.pid} on {socket.gethostname()} no longer existed" in reason
    )


def test_a_retry_after_sigkill_continues_the_same_run(store, tmp_path):
    child = Child(tmp_path, "wait")
    child.stop(signal.SIGKILL)

    assert start(tmp_path) == child.run_id
    run_opening.end_run()
    run = store.get_run(child.run_id)
    assert run.data.tags[run_opening.ATTEMPTS_TAG] == "2"
    assert owners.KILLED_REASON_TAG in run.data.tags  # what happened to attempt 1
    assert run.info.status == "FINISHED"


def test_different_params_after_a_failure_start_a_new_run(store, tmp_path):
    with pytest.raises(ValueError), lifecycle.run_lifecycle():
        failed = start(tmp_path)
        raise ValueError("bad")
    assert store.get_run(failed).info.status == "FAILED"

    assert start(tmp_path, epochs=3) != failed
    run_opening.end_run()
    assert store.get_run(failed).info.status == "FAILED"


def test_a_finished_run_is_never_reopened(store, tmp_path):
    first = start(tmp_path)
    run_opening.end_run()  # train finished; evaluate never ran, so the state file is still there
    assert (tmp_path / "state.json").is_file()
    second = start(tmp_path)
    run_opening.end_run()
    assert second != first


def test_a_finished_pipeline_clears_the_training_state(store, tmp_path):
    run_id = start(tmp_path)
    run_opening.end_run()
    run_opening.clear_training_state("some-other-run", tmp_path / "state.json")
    assert (tmp_path / "state.json").is_file()  # names another run: left alone
    run_opening.clear_training_state(run_id, tmp_path / "state.json")
    assert not (tmp_path / "state.json").exists()


def test_evaluate_takes_over_the_run(store, tmp_path):
    run_id = start(tmp_path)
    run_opening.end_run()
    with lifecycle.run_lifecycle():
        run_opening.resume_run(run_id)
    run = store.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[owners.PID_TAG] == str(os.getpid())


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_only_runs_whose_owner_on_this_host_is_gone_are_marked_killed(store):
    experiment_id = store.create_experiment("owners")
    here, me = socket.gethostname(), str(os.getpid())
    space = {owners.PID_SPACE_TAG: owners.owner_tags()[owners.PID_SPACE_TAG]}
    tags_by_case = {
        "dead": {owners.HOST_TAG: here, owners.PID_TAG: str(dead_pid()), **space},
        "pid-reused": {
            owners.HOST_TAG: here,
            owners.PID_TAG: me,
            owners.PID_START_TAG: "1",
            **space,
        },
        "alive": owners.owner_tags(),
        "other-host": {owners.HOST_TAG: "elsewhere.invalid", owners.PID_TAG: str(dead_pid())},
        "not-ours": {},
    }
    run_ids = {
        name: store.create_run(experiment_id, tags=tags).info.run_id
        for name, tags in tags_by_case.items()
    }

    killed = owners.mark_orphaned_runs_killed(store, experiment_id)

    assert sorted(killed) == sorted([run_ids["dead"], run_ids["pid-reused"]])
    status = {name: store.get_run(run_id).info.status for name, run_id in run_ids.items()}
    assert status == {
        "dead": "KILLED",
        "pid-reused": "KILLED",
        "alive": "RUNNING",
        "other-host": "RUNNING",
        "not-ours": "RUNNING",
    }
