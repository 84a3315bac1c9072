"""The history catch-up after a kill: epochs backed up but not yet logged reach the run."""

from __future__ import annotations

from cifar10_mlops.tracking import epoch_logger
from cifar10_mlops.tracking.store import configured_mlflow

# Keras' CSVLogger without validation data (train.validation_split: 0, the real-photos preset):
# it still writes val_* columns, every cell "NA".
HISTORY_WITHOUT_VALIDATION = (
    "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.25,2.0,NA,NA\n1,0.5,1.5,NA,NA\n"
)


def test_an_unlogged_epoch_without_validation_is_caught_up(store, tmp_path):
    history = tmp_path / "history.csv"
    history.write_text(HISTORY_WITHOUT_VALIDATION)
    with configured_mlflow().start_run() as run:  # the store's URI, whatever ran before
        # Epoch 0 was logged; the kill came after epoch 1's backup, before its logging.
        epoch_logger.EpochMetricsLogger().on_epoch_end(0, {"accuracy": 0.25, "loss": 2.0})
        assert epoch_logger.log_missing_epochs(history) == [1]
    logged = store.get_run(run.info.run_id).data.metrics
    assert logged == {"accuracy": 0.5, "loss": 1.5}  # the NA cells are not metrics
    assert [m.step for m in store.get_metric_history(run.info.run_id, "loss")] == [0, 1]
