"""DVC stage `evaluate`: score the model on the held-out split, write reports and plots,
finish the pipeline's MLflow run with the final metrics, the reports and the model, and
register the model (alias `champion` when it beats the current one; see tracking/registry.py)
with its model card (tracking/model_card.py)."""

from cifar10_mlops.core import config
from cifar10_mlops.core.failures import report_errors
from cifar10_mlops.core.params import load_params
from cifar10_mlops.data.arrays import load_npz
from cifar10_mlops.evaluation.reports import evaluate_model
from cifar10_mlops.model.build import load_model
from cifar10_mlops.tracking import registry
from cifar10_mlops.tracking.datasets import log_split
from cifar10_mlops.tracking.description import write_note
from cifar10_mlops.tracking.epoch_logger import log_kept_epoch_scores
from cifar10_mlops.tracking.lifecycle import run_lifecycle
from cifar10_mlops.tracking.model_card import publish_model_card
from cifar10_mlops.tracking.runs import (
    clear_training_state,
    log_final_results,
    read_run_id,
    resume_run,
)


@report_errors
def main() -> None:
    run_id = read_run_id(config.RUN_INFO_JSON)
    with run_lifecycle():
        run = resume_run(run_id)
        params = load_params(config.PARAMS_FILE)
        test = load_npz(config.TEST_NPZ)
        model = load_model(config.MODEL_FILE)
        report = evaluate_model(model, test, config.REPORTS_DIR, params.evaluate)
        test_dataset = log_split(params.data, test, "test", run.data.tags["data_version"])
        logged = log_final_results(
            report.metrics,
            report.files,
            config.MODEL_FILE,
            test.images[:4],
            test_dataset,
            tta=params.evaluate.tta,
        )
        log_kept_epoch_scores(config.HISTORY_CSV, logged.model_id)
        write_note(run_id)  # the description, now with the test metrics
        name = params.mlflow.registered_model
        registration = registry.register_run_model(run_id, name) if name else None
        publish_model_card(config.PER_CLASS_CSV, config.CONFUSION_CSV, registration)
    clear_training_state(run_id)  # done: the next change starts a fresh run
    print(
        f"evaluate: accuracy {report.metrics['accuracy']:.4f}, macro-F1 {report.metrics['macro_f1']:.4f}"
    )
    if registration is not None:
        print(registration.message())


if __name__ == "__main__":
    main()
