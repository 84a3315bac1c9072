"""What evaluate adds to the pipeline's run: the model (the pyfunc classifier), the test
metrics and the reports."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

MODEL_ARTIFACT = "model"


def log_final_results(
    metrics: dict[str, float],
    artifacts: Iterable[Path],
    model_file: Path,
    example_images,
    test_dataset=None,
    tta: bool = False,
):
    """The model as the pyfunc classifier (serving.py) with a signature and an input example,
    the final metrics (prefixed test_ so they never collide with the per-epoch series), and
    the reports and plots. Returns MLflow's ModelInfo of the logged model.

    The metrics go to the run and to its logged model, measured on `test_dataset` (an MLflow
    dataset): the model's page then lists that data under "Datasets used"."""
    import mlflow

    from cifar10_mlops.tracking.serving import log_classifier

    info = log_classifier(Path(model_file), MODEL_ARTIFACT, input_example=example_images, tta=tta)
    mlflow.log_metrics(
        {f"test_{key}": float(value) for key, value in metrics.items()},
        model_id=info.model_id,
        dataset=test_dataset,
    )
    for path in artifacts:
        if Path(path).is_file():
            mlflow.log_artifact(str(path), artifact_path="reports")
    return info
