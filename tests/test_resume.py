"""Resume and determinism through real `dvc repro` runs in a temporary copy of the pipeline.

- SIGKILL the whole `dvc repro` (DVC and the training process) in the middle of an epoch;
  the next `dvc repro` continues after the last finished epoch, in the same MLflow run.
- `train.deterministic: true`: two `dvc repro --force` give identical reports/metrics.json.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time

import pytest
from pipeline_helpers import (
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
    """Epochs the training state has backed up (their history rows are written first)."""
    rows = 0
    for history in root.glob(".training_state/backup-*/history.csv"):
        if list(history.parent.glob("keras/*")):
            with open(history, newline="") as handle:
                rows = max(rows, len(list(csv.DictReader(handle))))
    return rows


def kill_during_second_epoch(root) -> None:
    process = subprocess.Popen(
        [str(VENV_BIN / "dvc"), "repro"], cwd=root, env=pipeline_env(root),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while finished_epochs(root) < 1:
            assert process.poll() is None, "dvc repro ended before the first epoch finished"
            assert time.monotonic() < deadline, "no epoch finished in 10 minutes"
            time.sleep(0.2)
        time.sleep(1.0)  # into the next epoch
        assert process.poll() is None, "training finished before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_sigkilled_training_resumes_after_the_last_finished_epoch(tmp_path):
    params = deep_update(json.loads(json.dumps(TINY_PARAMS)), {
        "data": {"synthetic": {"count": 400}}, "train": {"epochs": EPOCHS},
    })
    root = make_pipeline_repo(tmp_path / "repo", params)
    kill_during_second_epoch(root)
    done_before_kill = finished_epochs(root)
    assert 1 <= done_before_kill < EPOCHS

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


def test_deterministic_training_gives_identical_metrics_twice(tmp_path):
    root = make_pipeline_repo(tmp_path / "repo", TINY_PARAMS)
    dvc(root, "repro")
    first = (root / "reports/metrics.json").read_bytes()
    dvc(root, "repro", "--force")
    assert (root / "reports/metrics.json").read_bytes() == first
