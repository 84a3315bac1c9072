"""Resume through real `dvc repro` runs in a temporary copy of the pipeline.

- SIGKILL the whole `dvc repro` (DVC and the training process) in the middle of an epoch, or
  while an epoch's backup is being written; the next `dvc repro` continues after the last
  complete backup, in the same MLflow run.

Determinism (two runs, identical reports/metrics.json) is checked in
tests/pipeline/test_pipeline.py, on that module's pipeline run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers.models import SMALL_BACKBONE
from tests.helpers.pipeline import (
    TINY_PARAMS,
    VENV_BIN,
    deep_update,
    dvc,
    make_pipeline_repo,
    pipeline_env,
)

pytestmark = pytest.mark.slow

EPOCHS = 4


def finished_epochs(root) -> int:
    """The epoch count of the newest complete backup (epoch-<N>; epoch-<N>.tmp is unfinished)."""
    names = [path.name for path in root.glob(".training_state/backup-*/epoch-*")]
    return max((int(name[6:]) for name in names if name[6:].isdigit()), default=0)


def second_backup_begun(root) -> bool:
    return bool(list(root.glob(".training_state/backup-*/epoch-2.tmp")))


# When to kill, and the model trained. Each moment is an event the test waits for, then kills
# at once: no fixed sleeps. The first epoch's backup being complete means the second epoch is
# under way. A backup being written is a window as long as the write: the small backbone with
# a wide dense head (8.4M weights that cost almost no compute) writes ~130 MB with the
# optimizer's variables, long enough to be caught by polling; the small backbone alone writes
# its backup in a few milliseconds.
WIDE_HEAD = {**SMALL_BACKBONE, "head": "upsample_dense", "dense_units": 4096}
KILL_MOMENTS = {
    "in the second epoch": (lambda root: finished_epochs(root) >= 1, SMALL_BACKBONE),
    "while the second epoch's backup is written": (second_backup_begun, WIDE_HEAD),
}


def run_and_kill(root, ready) -> None:
    process = subprocess.Popen(
        [str(VENV_BIN / "dvc"), "repro"],
        cwd=root,
        env=pipeline_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not ready(root):
            assert process.poll() is None, "dvc repro ended before the moment to kill it"
            assert time.monotonic() < deadline, "that moment did not come in 10 minutes"
            time.sleep(0.005)
        assert process.poll() is None, "training finished before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.parametrize("moment", KILL_MOMENTS)
def test_a_sigkilled_training_resumes_after_the_last_finished_epoch(tmp_path, moment):
    ready, model = KILL_MOMENTS[moment]
    params = deep_update(
        json.loads(json.dumps(TINY_PARAMS)), {"model": model, "train": {"epochs": EPOCHS}}
    )
    root = make_pipeline_repo(tmp_path / "repo", params)
    run_and_kill(root, ready)
    done_before_kill = finished_epochs(root)
    assert 1 <= done_before_kill < EPOCHS
    if ready is second_backup_begun:
        assert second_backup_begun(root)  # the kill did tear a backup

    result = dvc(root, "repro")
    assert f"resumed after epoch {done_before_kill}" in result.stdout, result.stdout
    with open(root / "reports/history.csv", newline="") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(EPOCHS))
    assert not list(root.glob(".training_state/backup-*"))  # finished: nothing to resume

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-mlops")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the killed attempt's run was continued, not replaced
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["cifar10_mlops.attempts"] == "2"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert sorted(steps) == list(range(EPOCHS))  # every epoch once, none logged twice
    assert json.loads((root / "reports/mlflow_run.json").read_text())["run_id"] == run.info.run_id
