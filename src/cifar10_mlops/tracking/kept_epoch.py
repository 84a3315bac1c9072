"""The kept epoch: which epoch's weights models/model.keras holds (train logs `kept_epoch`,
0-based as the metrics' steps), and that epoch's scores from the history file (evaluate logs
them as `kept_<name>`, beside the model they belong to)."""

from __future__ import annotations

from pathlib import Path

from cifar10_mlops.core.history import EPOCH, read_history
from cifar10_mlops.tracking.datasets import TRAINING, logged_input
from cifar10_mlops.tracking.store import configured_mlflow

KEPT_EPOCH = "kept_epoch"


def log_kept_epoch(epoch: int) -> None:
    configured_mlflow().log_metric(KEPT_EPOCH, epoch)


def log_kept_epoch_scores(history_csv: Path, model_id: str | None) -> dict[str, float]:
    """The scores of the epoch whose weights were kept (the run's `kept_epoch`), from the
    history file, as `kept_<name>` metrics of the active run and of its logged model
    `model_id`, measured on the run's training dataset (validation is a held-out part of it):
    the model's page then lists the training data under "Datasets used". Returns them."""
    import mlflow

    active = mlflow.active_run()
    if active is None:
        return {}
    run = mlflow.MlflowClient().get_run(active.info.run_id)
    kept = run.data.metrics.get(KEPT_EPOCH)
    if kept is None:
        return {}
    row = next((r for r in read_history(history_csv) if r[EPOCH] == int(kept)), None)
    if row is None:
        return {}
    scores = {
        f"kept_{name}": value for name, value in row.items() if name not in (EPOCH, "learning_rate")
    }
    trained_on = logged_input(run, TRAINING)
    mlflow.log_metrics(
        scores,
        model_id=model_id,
        dataset=None if trained_on is None else trained_on.dataset,
    )
    return scores
