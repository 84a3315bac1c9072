"""The Keras callback that logs each epoch's metrics to the pipeline's MLflow run.

Training code never imports a tracker: the train stage hands this callback to train_model.
"""

from __future__ import annotations

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
