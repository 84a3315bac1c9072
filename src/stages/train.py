"""DVC stage `train`: open the pipeline's MLflow run (or reopen the unfinished run of an
earlier attempt at the same training), train (resuming after the last finished epoch of that
attempt), write models/model.keras and reports/history.csv. The run ends FINISHED, FAILED,
or KILLED on Ctrl-C / SIGTERM."""

from cifar10_mlops.core.keras_backend import use_backend_from_params

use_backend_from_params()  # train.backend: before anything below imports Keras

from cifar10_mlops.core import config
from cifar10_mlops.core.failures import report_errors
from cifar10_mlops.core.params import load_params
from cifar10_mlops.data.arrays import load_npz
from cifar10_mlops.tracking.runs import training_run
from cifar10_mlops.training.cluster import require_chief
from cifar10_mlops.training.fit import train_model


@report_errors
def main() -> None:
    params = load_params(config.PARAMS_FILE)
    if params.train.distribution == "multi_worker":
        require_chief()  # the other tasks run `cifar10-mlops worker`
    train_data = load_npz(config.TRAIN_NPZ)
    with training_run(params, train_data) as run:
        outcome = train_model(
            params,
            train_data,
            config.MODEL_FILE,
            config.HISTORY_CSV,
            config.TRAINING_STATE_DIR,
            resume_key=run.resume_key,
            callbacks=[run.epoch_logger],  # after each epoch's backup
        )
        run.record(outcome.best_epoch, outcome.replicas, outcome.workers)
    resumed = (
        f", resumed after epoch {outcome.resumed_from_epoch}" if outcome.resumed_from_epoch else ""
    )
    print(
        f"train: {outcome.epochs_run} epochs{resumed}, best epoch {outcome.best_epoch + 1} by "
        f"{outcome.monitor}, {outcome.replicas} replica(s) in {outcome.workers} process(es)"
    )


if __name__ == "__main__":
    main()
