"""DVC stage `evaluate`: score the model on the held-out split, write reports and plots, and
finish the pipeline's MLflow run with the final metrics, the reports and the model."""

from cifar10_mlops import config, tracking
from cifar10_mlops.dataset import load_npz
from cifar10_mlops.errors import report_errors
from cifar10_mlops.model import load_model
from cifar10_mlops.params import load_params
from cifar10_mlops.reporting import evaluate_model


@report_errors
def main() -> None:
    params = load_params(config.PARAMS_FILE)
    test = load_npz(config.TEST_NPZ)
    model = load_model(config.MODEL_FILE)
    run_id = tracking.read_run_id(config.RUN_INFO_JSON)
    with tracking.resume_run(run_id):
        report = evaluate_model(model, test, config.REPORTS_DIR, params.evaluate)
        tracking.log_final_results(report.metrics, report.files, model, test.images[:4])
    print(f"evaluate: accuracy {report.metrics['accuracy']:.4f}, macro-F1 {report.metrics['macro_f1']:.4f}")


if __name__ == "__main__":
    main()
