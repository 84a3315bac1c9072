"""A run's description in words: what was trained, on what data, and how it scored.

The same two lines describe the pipeline run (MLflow's `mlflow.note.content` tag: the
Description box on the run page, written by train and rewritten by evaluate) and the model
version it registers (registry.py).
"""

from __future__ import annotations

from cifar10_mlops.tracking.datasets import EVALUATION, TRAINING, logged_input
from cifar10_mlops.tracking.store import client

NOTE_TAG = "mlflow.note.content"
BACKBONES = {"resnet50": "ResNet50", "vgg16": "VGG16", "cifar_resnet": "CIFAR ResNet"}


def _dataset(run, context: str) -> str:
    """`synthetic-train (1200 images)`, or "" when the run logged no dataset for `context`."""
    found = logged_input(run, context)
    if found is None:
        return ""
    images = {tag.key: tag.value for tag in found.tags}.get("images")
    return f"{found.dataset.name} ({images} images)" if images else found.dataset.name


def describe(run) -> str:
    """Two lines: what was trained (on which data), and how it scored on which data."""
    params = run.data.params
    backbone = params.get("model.backbone", "?")
    trained_on = _dataset(run, TRAINING)
    first = (
        f"{BACKBONES.get(backbone, backbone)} backbone, {params.get('model.head', '?')} head, "
        f"weights {params.get('model.weights', '?')}, up to {params.get('train.epochs', '?')} "
        f"epochs{f', trained on {trained_on}' if trained_on else ''}."
    )
    metrics = run.data.metrics
    data = f"data {run.data.tags.get('data_source', '?')} {run.data.tags.get('data_version', '?')}"
    if "test_accuracy" not in metrics:
        return f"{first}\nNot evaluated yet; {data}."
    images = metrics.get("test_n_test")
    on = f" on {int(images)} held-out images" if images is not None else ""
    tested = logged_input(run, EVALUATION)
    on += f" ({tested.dataset.name})" if tested is not None else ""
    loss = f", loss {metrics['test_loss']:.4f}" if "test_loss" in metrics else ""
    second = (
        f"Test accuracy {metrics['test_accuracy']:.4f}, macro-F1 "
        f"{metrics.get('test_macro_f1', float('nan')):.4f}{loss}{on}; {data}."
    )
    return f"{first}\n{second}"


def write_note(run_id: str, mlflow_client=None) -> str:
    """Describe the run as it now stands in its description (the note tag); returns the text."""
    mlflow_client = mlflow_client or client()
    text = describe(mlflow_client.get_run(run_id))
    mlflow_client.set_tag(run_id, NOTE_TAG, text.replace("\n", "\n\n"))  # markdown paragraphs
    return text
