"""DVC stage `evaluate`: score the model on the held-out split, write reports and plots,
finish the pipeline's MLflow run with the final metrics, the reports and the model, and
register the model (alias `champion` when it beats the current one; see registry.py)."""

from cifar10_mlops import config, registry, tracking
from cifar10_mlops.dataset import load_npz
from cifar10_mlops.errors import report_errors
from cifar10_mlops.model import load_model
from cifar10_mlops.params import load_params
from cifar10_mlops.reporting import evaluate_model


@report_errors
def main() -> None:
    run_id = tracking.read_run_id(config.RUN_INFO_JSON)
    with tracking.run_lifecycle():
        tracking.resume_run(run_id)
        params = load_params(config.PARAMS_FILE)
        test = load_npz(config.TEST_NPZ)
        model = load_model(config.MODEL_FILE)
        report = evaluate_model(model, test, config.REPORTS_DIR, params.evaluate)
        tracking.log_final_results(report.metrics, report.files, config.MODEL_FILE, test.images[:4])
        name = params.mlflow.registered_model
        registration = registry.register_run_model(run_id, name) if name else None
    tracking.clear_training_state(run_id)  # done: the next change starts a fresh run
    print(f"evaluate: accuracy {report.metrics['accuracy']:.4f}, macro-F1 {report.metrics['macro_f1']:.4f}")
    if registration is not None:
        print(registration.message())


if __name__ == "__main__":
    main()
