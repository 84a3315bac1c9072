"""The pipeline's MLflow run as the stages see it: one run per pipeline run, opened for
training by train and finished after evaluation by evaluate.

    with training_run(params, train_data) as run:            # src/stages/train.py
        outcome = train_model(..., resume_key=run.resume_key, callbacks=[run.epoch_logger])
        run.record(outcome.best_epoch, outcome.replicas, outcome.workers)

    with evaluation_run():                                    # src/stages/evaluate.py
        ... score the model, write the reports ...
        registration = log_evaluation(params, test, report.metrics, report.files)

The train stage opens the run and writes its id to reports/mlflow_run.json (a train output
and an evaluate dependency); evaluate reopens that run, so one run holds both. When DVC
restores train and evaluate from its run cache, no stage runs and no new MLflow run is
logged: reports/mlflow_run.json then still names the run that produced the restored outputs.

- Opening, reopening a failed attempt's run, the hand-off file: run_opening.py. How a run
  ends (FINISHED, FAILED, KILLED): lifecycle.py. Runs whose process died: owners.py.
- Per-epoch metrics: epoch_logger.py; the kept epoch and its scores: kept_epoch.py; the
  model, test metrics and reports: final_results.py; the registry: registry.py; the model
  card: model_card.py.
- What a person sees in the UI: a run name that says what the run is (naming.py), the train
  and test arrays as datasets (datasets.py), a description (description.py) and, while train
  runs, system metrics (CPU, memory, ...; `mlflow.system_metrics`, needs psutil).
- No credential reaches MLflow: params are logged with URL user info redacted (secrets.py),
  environment variables are never logged, and MLflow's "View run at <tracking URI>" line is
  switched off when the URI carries a password (store.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cifar10_mlops.core import config
from cifar10_mlops.core.params import Params
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.tracking import registry
from cifar10_mlops.tracking.datasets import log_split
from cifar10_mlops.tracking.description import write_note
from cifar10_mlops.tracking.epoch_logger import EpochMetricsLogger, log_missing_epochs
from cifar10_mlops.tracking.final_results import log_final_results
from cifar10_mlops.tracking.kept_epoch import log_kept_epoch, log_kept_epoch_scores
from cifar10_mlops.tracking.lifecycle import run_lifecycle
from cifar10_mlops.tracking.model_card import publish_model_card
from cifar10_mlops.tracking.provenance import data_version, training_digest
from cifar10_mlops.tracking.run_opening import (
    clear_training_state,
    read_run_id,
    resume_run,
    start_pipeline_run,
)
from cifar10_mlops.tracking.store import configured_mlflow


@dataclass(frozen=True)
class TrainingRun:
    resume_key: str  # the training digest: only the same training resumes its backups
    epoch_logger: EpochMetricsLogger  # give it to train_model: it logs each backed-up epoch

    def record(self, kept_epoch: int, replicas: int, workers: int) -> None:
        """After training: the epochs a kill left unlogged (backed up, not yet logged), how
        many replicas and processes trained (tags, to filter runs by), and the kept epoch."""
        log_missing_epochs(config.HISTORY_CSV)
        configured_mlflow().set_tags(
            {"cifar10_mlops.replicas": str(replicas), "cifar10_mlops.workers": str(workers)}
        )
        log_kept_epoch(kept_epoch)


@contextlib.contextmanager
def training_run(params: Params, train_data: LabelledImages) -> Iterator[TrainingRun]:
    """Open the pipeline's run (or reopen the unfinished run of an earlier attempt at the same
    training) with its params, tags and training dataset; it ends by how the block ends."""
    with run_lifecycle():
        version = data_version([config.TRAIN_NPZ, config.TEST_NPZ])
        start_pipeline_run(params, version, config.RUN_INFO_JSON, train_data=train_data)
        yield TrainingRun(training_digest(params, version), EpochMetricsLogger())


@contextlib.contextmanager
def evaluation_run() -> Iterator[None]:
    """Reopen the run train opened (reports/mlflow_run.json); it ends by how the block ends.
    When it ends well the pipeline is done: the next training starts a fresh run."""
    run_id = read_run_id(config.RUN_INFO_JSON)
    with run_lifecycle():
        resume_run(run_id)
        yield
    clear_training_state(run_id)


def log_evaluation(
    params: Params,
    test: LabelledImages,
    metrics: dict[str, float],
    report_files: Iterable[Path],
) -> registry.Registration | None:
    """Inside `evaluation_run`: the test split, the model with the test metrics and the
    reports, the kept epoch's scores, the description with the test metrics; then a new
    version of `mlflow.registered_model` (None when registration is off) and the model card
    (model_card.py: an artifact, and the version's description)."""
    mlflow = configured_mlflow()
    run = mlflow.MlflowClient().get_run(mlflow.active_run().info.run_id)
    test_dataset = log_split(params.data, test, "test", run.data.tags["data_version"])
    logged = log_final_results(
        metrics,
        report_files,
        config.MODEL_FILE,
        test.images[:4],
        test_dataset,
        tta=params.evaluate.tta,
    )
    log_kept_epoch_scores(config.HISTORY_CSV, logged.model_id)
    write_note(run.info.run_id)
    name = params.mlflow.registered_model
    registration = registry.register_run_model(run.info.run_id, name) if name else None
    publish_model_card(config.PER_CLASS_CSV, config.CONFUSION_CSV, registration)
    return registration
