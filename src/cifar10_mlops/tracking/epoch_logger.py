"""Each epoch's metrics in the pipeline's MLflow run: a Keras callback while training, and a
catch-up from the history file afterwards.

Training code never imports a tracker: the train stage hands this callback to train_model.
train_model calls it only once an epoch is backed up, so an epoch redone after a kill is not
logged twice; but a kill between the backup and the logging leaves a finished epoch unlogged,
which the resumed training never runs again. `log_missing_epochs` fills those in at the end.
"""

from __future__ import annotations

from pathlib import Path

from cifar10_mlops.core.history import EPOCH, read_history
from cifar10_mlops.core.quiet_tensorflow import keras


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs every epoch's Keras metrics (and the learning rate) to MLflow with step=epoch.

    Keras numbers epochs from `initial_epoch`, so a fit resumed inside a reopened run
    continues the earlier attempt's series instead of writing over its steps."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import mlflow

        metrics = {key: float(value) for key, value in (logs or {}).items()}
        # Only inside the pipeline's run: never let MLflow start a stray run of its own.
        if metrics and mlflow.active_run() is not None:
            mlflow.log_metrics(metrics, step=epoch)


def log_missing_epochs(history_csv: Path) -> list[int]:
    """Log every epoch of `history_csv` (Keras' CSVLogger file) that the active run lacks;
    return those epochs. Only inside the pipeline's run."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return []
    rows = read_history(history_csv)
    if not rows:
        return []
    client = mlflow.MlflowClient()
    first_metric = next((name for name in rows[0] if name != EPOCH), None)
    if first_metric is None:
        return []
    logged = {m.step for m in client.get_metric_history(run.info.run_id, first_metric)}
    missing = []
    for row in rows:
        epoch = int(row[EPOCH])
        if epoch in logged:
            continue
        mlflow.log_metrics(
            {name: value for name, value in row.items() if name != EPOCH}, step=epoch
        )
        missing.append(epoch)
    return missing
