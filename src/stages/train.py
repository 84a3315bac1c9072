"""DVC stage `train`: open the pipeline's MLflow run (or reopen the unfinished run of an
earlier attempt at the same training), train (resuming after the last finished epoch of that
attempt), write models/model.keras and reports/history.csv. The run ends FINISHED, FAILED,
or KILLED on Ctrl-C / SIGTERM."""

from cifar10_mlops import config, tracking
from cifar10_mlops.dataset import load_npz
from cifar10_mlops.errors import report_errors
from cifar10_mlops.params import load_params
from cifar10_mlops.training import train_model


@report_errors
def main() -> None:
    with tracking.run_lifecycle():
        params = load_params(config.PARAMS_FILE)
        train_data = load_npz(config.TRAIN_NPZ)
        version = tracking.data_version([config.TRAIN_NPZ, config.TEST_NPZ])
        tracking.start_pipeline_run(params, version, config.RUN_INFO_JSON)
        outcome = train_model(
            params, train_data, config.MODEL_FILE, config.HISTORY_CSV, config.TRAINING_STATE_DIR,
            resume_key=tracking.training_digest(params, version),
        )
    resumed = f", resumed after epoch {outcome.resumed_from_epoch}" if outcome.resumed_from_epoch else ""
    print(
        f"train: {outcome.epochs_run} epochs{resumed}, best epoch {outcome.best_epoch + 1} by "
        f"{outcome.monitor}, {outcome.replicas} replica(s)"
    )


if __name__ == "__main__":
    main()
