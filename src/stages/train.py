"""DVC stage `train`: open the pipeline's MLflow run (or reopen the unfinished run of an
earlier attempt at the same training), train (resuming after the last finished epoch of that
attempt), write models/model.keras and reports/history.csv. The run ends FINISHED, FAILED,
or KILLED on Ctrl-C / SIGTERM."""

from cifar10_mlops.core import config
from cifar10_mlops.core.failures import report_errors
from cifar10_mlops.core.params import load_params
from cifar10_mlops.data.arrays import load_npz
from cifar10_mlops.tracking.epoch_logger import EpochMetricsLogger, log_missing_epochs
from cifar10_mlops.tracking.lifecycle import run_lifecycle
from cifar10_mlops.tracking.provenance import data_version, training_digest
from cifar10_mlops.tracking.runs import log_kept_epoch, log_training_layout, start_pipeline_run
from cifar10_mlops.training.cluster import require_chief
from cifar10_mlops.training.fit import train_model


@report_errors
def main() -> None:
    with run_lifecycle():
        params = load_params(config.PARAMS_FILE)
        if params.train.distribution == "multi_worker":
            require_chief()  # the other tasks run `cifar10-mlops worker`
        train_data = load_npz(config.TRAIN_NPZ)
        version = data_version([config.TRAIN_NPZ, config.TEST_NPZ])
        start_pipeline_run(params, version, config.RUN_INFO_JSON, train_data=train_data)
        outcome = train_model(
            params,
            train_data,
            config.MODEL_FILE,
            config.HISTORY_CSV,
            config.TRAINING_STATE_DIR,
            resume_key=training_digest(params, version),
            callbacks=[EpochMetricsLogger()],
        )
        log_missing_epochs(config.HISTORY_CSV)  # finished before a kill, not yet logged
        log_training_layout(outcome.replicas, outcome.workers)
        log_kept_epoch(outcome.best_epoch)
    resumed = (
        f", resumed after epoch {outcome.resumed_from_epoch}" if outcome.resumed_from_epoch else ""
    )
    print(
        f"train: {outcome.epochs_run} epochs{resumed}, best epoch {outcome.best_epoch + 1} by "
        f"{outcome.monitor}, {outcome.replicas} replica(s) in {outcome.workers} process(es)"
    )


if __name__ == "__main__":
    main()
