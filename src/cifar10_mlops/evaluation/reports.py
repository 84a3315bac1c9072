"""The evaluate stage's reports: metrics, per-class scores, confusion data and the plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar10_mlops.core import config
from cifar10_mlops.core.params import EvaluateParams
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.evaluation import metrics, plots
from cifar10_mlops.model.tta import predict_probabilities


@dataclass(frozen=True)
class EvaluationReport:
    metrics: dict[str, float]
    files: list[Path]


def evaluate_model(
    model: keras.Model,
    test: LabelledImages,
    reports_dir: Path,
    params: EvaluateParams,
    history_csv: Path | None = None,
) -> EvaluationReport:
    probabilities = predict_probabilities(
        lambda batch: model.predict(batch, batch_size=256, verbose=0), test.images, params.tta
    )
    result = metrics.compute_metrics(test.labels, probabilities, test.class_names)
    plots_dir = reports_dir / "plots"
    files = {
        "metrics": reports_dir / config.METRICS_JSON.name,
        "confusion": reports_dir / config.CONFUSION_CSV.name,
        "per_class": reports_dir / config.PER_CLASS_CSV.name,
        "confusion_png": plots_dir / "confusion_matrix.png",
        "curves_png": plots_dir / "training_curves.png",
        "misclassified_png": plots_dir / "misclassified.png",
    }
    metrics.write_metrics_json(result, files["metrics"])
    metrics.write_confusion_csv(
        test.labels, result.predictions, test.class_names, files["confusion"]
    )
    metrics.write_per_class_csv(result, files["per_class"])
    plots.plot_confusion_matrix(result.confusion, test.class_names, files["confusion_png"])
    history = history_csv or reports_dir / config.HISTORY_CSV.name
    if history.is_file():
        plots.plot_training_curves(history, files["curves_png"])
    else:
        files.pop("curves_png")
    if params.misclassified_grid > 0:
        plots.plot_misclassified(
            test.images,
            test.labels,
            result.predictions,
            test.class_names,
            files["misclassified_png"],
            max_images=params.misclassified_grid,
            confidences=np.max(probabilities, axis=1),
        )
    else:
        files.pop("misclassified_png")
    report_files = [*files.values()]
    if history.is_file():
        report_files.append(history)
    return EvaluationReport(metrics=metrics.metrics_dict(result), files=report_files)
