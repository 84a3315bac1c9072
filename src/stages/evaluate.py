"""DVC stage `evaluate`: score the model on the held-out split, write reports and plots,
finish the pipeline's MLflow run with the final metrics, the reports and the model, and
register the model (alias `champion` when it beats the current one; see tracking/registry.py)
with its model card (tracking/model_card.py). It runs on the backend that trained
(train.backend)."""

from cifar10_mlops.core.keras_backend import use_backend_from_params

use_backend_from_params()  # train.backend: before anything below imports Keras

from cifar10_mlops.core import config
from cifar10_mlops.core.failures import report_errors
from cifar10_mlops.core.params import load_params
from cifar10_mlops.data.arrays import load_npz
from cifar10_mlops.evaluation.reports import evaluate_model
from cifar10_mlops.model.build import load_model
from cifar10_mlops.tracking.runs import evaluation_run, log_evaluation


@report_errors
def main() -> None:
    with evaluation_run():
        params = load_params(config.PARAMS_FILE)
        test = load_npz(config.TEST_NPZ)
        model = load_model(config.MODEL_FILE)
        report = evaluate_model(model, test, config.REPORTS_DIR, params.evaluate)
        registration = log_evaluation(params, test, report.metrics, report.files)
    print(
        f"evaluate: accuracy {report.metrics['accuracy']:.4f}, macro-F1 {report.metrics['macro_f1']:.4f}"
    )
    if registration is not None:
        print(registration.message())


if __name__ == "__main__":
    main()
