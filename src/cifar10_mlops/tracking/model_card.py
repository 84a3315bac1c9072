"""The model card of a pipeline run's model: what it was trained on, how it scored overall and
per class, where it errs, what it is for and where it fails.

Written by evaluate (one call: publish_model_card) from the finished run and its two reports
(per_class.csv, confusion.csv): logged as the run's `model_card.md` artifact and, when the
model was registered, set as that version's description (the registry's version page shows it
as markdown).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.tracking.datasets import EVALUATION, TRAINING, logged_input
from cifar10_mlops.tracking.description import BACKBONES, describe

CARD_ARTIFACT = "model_card.md"
WEAKEST = 3  # classes named as the weakest
CONFUSIONS = 3  # most frequent mistakes shown
# The params a reader needs to judge or reproduce the model (all of them are on the run).
KEY_PARAMS = (
    "model.backbone",
    "model.head",
    "model.weights",
    "model.input_size",
    "train.epochs",
    "train.batch_size",
    "train.optimizer",
    "train.learning_rate",
    "train.lr_schedule",
    "train.weight_decay",
    "train.label_smoothing",
    "train.augment",
    "train.mixed_precision",
    "train.seed",
    "split.test_size",
    "split.seed",
)


def read_per_class(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_confusions(path: Path) -> Counter:
    """(actual, predicted) -> count, mistakes only."""
    with open(path, newline="", encoding="utf-8") as handle:
        pairs = ((row["actual"], row["predicted"]) for row in csv.DictReader(handle))
        return Counter(pair for pair in pairs if pair[0] != pair[1])


def _dataset_line(run, context: str) -> str:
    found = logged_input(run, context)
    if found is None:
        return "not logged"
    dataset = found.dataset
    images = {tag.key: tag.value for tag in found.tags}.get("images", "?")
    try:
        source = json.loads(dataset.source)
    except (TypeError, ValueError):
        source = dataset.source
    if isinstance(source, dict):  # MLflow's source JSON: a url, a path, or the generator
        source = source.get("url") or source.get("uri") or source.get("path") or source
    return f"`{dataset.name}`, {images} images, digest `{dataset.digest}`, source {source}"


def _number(value, digits: int = 4) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "?"


def model_card(
    run,
    per_class: list[dict[str, str]],
    confusions: Counter,
    registered: tuple[str, str] | None = None,
) -> str:
    """The card as markdown."""
    params = run.data.params
    metrics = run.data.metrics
    tags = run.data.tags
    backbone = params.get("model.backbone", "?")
    tta = params.get("evaluate.tta", "false").lower() == "true"
    title = f"{registered[0]} version {registered[1]}" if registered else run.info.run_name
    lines = [
        f"# Model card: {title}",
        "",
        # The run's two-line description first: what the version list and the run page say.
        *describe(run).replace("\n", "\n\n").splitlines(),
        "",
        f"A {BACKBONES.get(backbone, backbone)} CIFAR-10 classifier from the cifar10-mlops "
        f"pipeline, MLflow run `{run.info.run_name}` ({run.info.run_id}), git commit "
        f"`{tags.get('mlflow.source.git.commit', '?')}`.",
        "",
        "## Intended use",
        "",
        "Sorting small photos into the ten CIFAR-10 classes: " + ", ".join(CLASS_NAMES) + ". "
        "Input: photos (any size; resized whole to 32x32, not cropped) or uint8 RGB arrays "
        "(N, 32, 32, 3). Output: a class, its probability and the probability of each class.",
        "",
        "## Known limits",
        "",
        "- It always answers one of the ten classes: a photo of anything else (a person, a "
        "flower, a blank wall) still gets a class, often with a high probability. The "
        "confidence is not a check that the photo shows a CIFAR-10 class.",
        "- It sees 32x32 pixels: small, partly hidden or off-centre objects are often missed.",
        "- The test figures below come from a held-out split of the training data's own "
        "source; photos from elsewhere (other cameras, framing, lighting) score lower.",
        "",
        "## Data",
        "",
        f"- Trained on: {_dataset_line(run, TRAINING)}",
        f"- Tested on: {_dataset_line(run, EVALUATION)}",
        f"- Data source `{tags.get('data_source', '?')}`, data version "
        f"`{tags.get('data_version', '?')}`",
        "",
        "## Training",
        "",
        f"- Backend: {params.get('train.backend', 'tensorflow')}; test-time augmentation "
        f"(evaluate.tta): {'on (flips and 1-pixel shifts averaged)' if tta else 'off'}, and "
        "the served model and `cifar10-mlops predict` answer the same way",
        *(f"- `{key}`: {params[key]}" for key in KEY_PARAMS if key in params),
        f"- kept epoch (0-based): {_number(metrics.get('kept_epoch'), 0)}",
        "",
        "## Test metrics",
        "",
        f"Accuracy **{_number(metrics.get('test_accuracy'))}**, macro-F1 "
        f"**{_number(metrics.get('test_macro_f1'))}**, loss {_number(metrics.get('test_loss'))}"
        f", on {_number(metrics.get('test_n_test'), 0)} held-out images.",
        "",
        *_per_class_table(per_class),
        "",
        "## Confusion highlights",
        "",
        *_confusion_lines(per_class, confusions),
    ]
    return "\n".join(lines) + "\n"


def _per_class_table(per_class: list[dict[str, str]]) -> list[str]:
    if not per_class:
        return ["(no per-class scores)"]
    weakest = sorted(per_class, key=lambda row: float(row["f1"]))[:WEAKEST]
    names = ", ".join(f"{row['class']} (F1 {_number(row['f1'], 3)})" for row in weakest)
    return [
        "| class | precision | recall | F1 | images |",
        "|---|---|---|---|---|",
        *(
            f"| {row['class']} | {_number(row['precision'], 3)} | {_number(row['recall'], 3)} "
            f"| {_number(row['f1'], 3)} | {row['support']} |"
            for row in per_class
        ),
        "",
        f"Weakest classes: {names}.",
    ]


def _confusion_lines(per_class: list[dict[str, str]], confusions: Counter) -> list[str]:
    if not confusions:
        return ["No test image was misclassified."]
    support = {row["class"]: int(row["support"]) for row in per_class}
    lines = []
    for (actual, predicted), count in confusions.most_common(CONFUSIONS):
        of = support.get(actual, 0)
        share = f" ({100 * count / of:.0f} %)" if of else ""
        lines.append(f"- {actual} taken for {predicted}: {count} of {of} {actual} images{share}")
    return lines


def publish_model_card(
    per_class_csv: Path,
    confusion_csv: Path,
    registration=None,
    mlflow_client=None,
) -> str:
    """Inside the evaluate stage's run: write the card of the active run's model as the
    `model_card.md` artifact and, when `registration` (registry.Registration) is given, as that
    version's description. Returns the text."""
    import mlflow

    from cifar10_mlops.tracking.store import client

    mlflow_client = mlflow_client or client()
    run = mlflow_client.get_run(mlflow.active_run().info.run_id)
    registered = (registration.name, registration.version) if registration else None
    per_class, confusions = read_per_class(per_class_csv), read_confusions(confusion_csv)
    text = model_card(run, per_class, confusions, registered)
    mlflow.log_text(text, CARD_ARTIFACT)
    if registered is not None:
        mlflow_client.update_model_version(*registered, description=text)
    return text
