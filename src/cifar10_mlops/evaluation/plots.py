"""PNG plots for the reports: confusion matrix, training curves, misclassified test images.

Each `*_figure` function builds a matplotlib figure from arrays (or a history CSV), so what is
drawn can be checked; each `plot_*` function writes that figure as one PNG atomically and
closes it, so a long pipeline run does not accumulate open figures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

# Headless: the pipeline runs under DVC and CI with no display. Must precede the pyplot import.
matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from cifar10_mlops.core.atomic import atomic_path
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.history import read_history

DPI = 100
ARROW = "\u2192"  # "→" in the misclassified titles

# Keras names (current and pre-2.3), in the order they are looked up.
LOSS_KEYS = ("loss",)
VAL_LOSS_KEYS = ("val_loss",)
ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy")
VAL_ACCURACY_KEYS = ("val_accuracy", "val_acc", "val_sparse_categorical_accuracy")
LEARNING_RATE_KEYS = ("learning_rate", "lr")


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    final = Path(path)
    try:
        with atomic_path(final) as tmp:
            # Explicit format: the temp name keeps the caller's suffix, which may not be .png.
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return final


# --------------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    normalize: bool = True,
) -> Path:
    """Write `confusion_matrix_figure` as a PNG at `path` (atomically)."""
    return _save(confusion_matrix_figure(confusion, class_names, normalize), path)


def confusion_matrix_figure(
    confusion: np.ndarray, class_names: Sequence[str], normalize: bool = True
) -> Any:
    """Heatmap of a C x C confusion matrix (rows actual, columns predicted), cells annotated.

    With `normalize`, each row is divided by its support, so a cell reads as "fraction of this
    class predicted as that one"; rows with no samples stay zero. The title carries the
    overall accuracy (trace / total).
    """
    counts = np.asarray(confusion)
    n_classes = len(class_names)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise PipelineError(f"confusion matrix must be square (C x C), got shape {counts.shape}")
    if counts.shape[0] != n_classes:
        raise PipelineError(
            f"confusion matrix is {counts.shape[0]} x {counts.shape[1]} but {n_classes} class names were given"
        )
    counts = counts.astype(np.float64)
    total = counts.sum()
    accuracy_text = f"accuracy {np.trace(counts) / total:.2%}" if total > 0 else "accuracy n/a"

    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
        vmax = 1.0
        cell_format = "{:.2f}"
    else:
        values = counts
        vmax = max(float(values.max()), 1.0)
        cell_format = "{:.0f}"

    side = max(5.0, 0.6 * n_classes + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n_classes)
    ax.set_xticks(ticks, labels=[str(name) for name in class_names], rotation=45, ha="right")
    ax.set_yticks(ticks, labels=[str(name) for name in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    kind = "row-normalised" if normalize else "counts"
    ax.set_title(f"Confusion matrix ({kind}) - {accuracy_text}, n={int(total)}")

    # Annotating 10x10 cells is cheap; for very many classes the text would be unreadable.
    if n_classes <= 30:
        _annotate_cells(ax, values, cell_format, vmax)
    fig.tight_layout()
    return fig


def _annotate_cells(ax: Any, values: np.ndarray, cell_format: str, vmax: float) -> None:
    font_size = 9 if len(values) <= 12 else 6
    for row in range(len(values)):
        for col in range(len(values)):
            value = values[row, col]
            # White text on dark cells, dark text on light ones.
            colour = "white" if value > 0.5 * vmax else "black"
            ax.text(
                col,
                row,
                cell_format.format(value),
                ha="center",
                va="center",
                color=colour,
                fontsize=font_size,
            )


# --------------------------------------------------------------------------- training curves


def _read_history_csv(path: Path) -> dict[str, list[float]]:
    """Columns of the history file (core/history.py), NaN where an epoch has no value; a
    column with no value at all (val_* when train.validation_split is 0) is not drawn."""
    if not path.is_file():
        raise PipelineError(f"training history {path} not found; run the train stage first")
    rows = read_history(path)
    names = list(dict.fromkeys(name for row in rows for name in row))
    return {name: [row.get(name, math.nan) for row in rows] for name in names}


def _first_present(
    history: Mapping[str, np.ndarray], keys: Sequence[str]
) -> tuple[str, np.ndarray] | None:
    for key in keys:
        if key in history:
            return key, history[key]
    return None


def _plot_pair(ax: Any, epochs: np.ndarray, train: Any, val: Any, title: str, best: str) -> None:
    """Draw a metric and its val_ counterpart; mark the best validation epoch."""
    plotted = False
    for series, style in ((train, "-"), (val, "--")):
        if series is not None:
            name, values = series
            ax.plot(epochs, values, style, marker="o", markersize=3, label=name)
            plotted = True
    if val is not None and np.any(np.isfinite(val[1])):
        values = val[1]
        best_index = int(np.nanargmin(values) if best == "min" else np.nanargmax(values))
        ax.axvline(
            epochs[best_index],
            color="grey",
            linestyle=":",
            linewidth=1,
            label=f"best {val[0]} (epoch {epochs[best_index]:g})",
        )
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def plot_training_curves(
    history: Mapping[str, Sequence[float]] | str | os.PathLike[str],
    path: str | os.PathLike[str],
) -> Path:
    """Write `training_curves_figure` as a PNG at `path` (atomically)."""
    return _save(training_curves_figure(history), path)


def training_curves_figure(history: Mapping[str, Sequence[float]] | str | os.PathLike[str]) -> Any:
    """Loss and accuracy (with their val_ counterparts) per epoch, plus learning rate if logged.

    `history` is a Keras `History.history`-style mapping or the path of a CSVLogger file
    (`epoch,accuracy,loss,val_accuracy,val_loss,learning_rate`; any subset). Epochs are shown
    1-based. Missing val_ columns are simply not drawn.
    """
    if isinstance(history, str | os.PathLike):
        raw = _read_history_csv(Path(history))
    else:
        raw = {str(key): list(values) for key, values in history.items()}

    lengths = {key: len(values) for key, values in raw.items()}
    if len(set(lengths.values())) > 1:
        raise PipelineError(f"training history columns have different lengths: {lengths}")
    n_epochs = next(iter(lengths.values()), 0)
    if n_epochs == 0:
        raise PipelineError("training history is empty: no epochs were recorded")
    series = {key: np.asarray(values, dtype=np.float64) for key, values in raw.items()}

    # CSVLogger's epoch column is 0-based; people count epochs from 1.
    if "epoch" in series and np.all(np.isfinite(series["epoch"])):
        epochs = series["epoch"] + 1
    else:
        epochs = np.arange(1, n_epochs + 1, dtype=np.float64)

    loss, val_loss = _first_present(series, LOSS_KEYS), _first_present(series, VAL_LOSS_KEYS)
    accuracy = _first_present(series, ACCURACY_KEYS)
    val_accuracy = _first_present(series, VAL_ACCURACY_KEYS)
    learning_rate = _first_present(series, LEARNING_RATE_KEYS)
    if not any((loss, val_loss, accuracy, val_accuracy)):
        raise PipelineError(
            f"training history has no loss or accuracy columns (found: {', '.join(sorted(series))})"
        )

    n_panels = 3 if learning_rate is not None else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(5.0 * n_panels, 4.0))
    _plot_pair(axes[0], epochs, loss, val_loss, "Loss", best="min")
    _plot_pair(axes[1], epochs, accuracy, val_accuracy, "Accuracy", best="max")
    if learning_rate is not None:
        name, values = learning_rate
        ax = axes[2]
        ax.plot(epochs, values, marker="o", markersize=3, label=name)
        finite = values[np.isfinite(values)]
        # Schedules span decades; a log axis shows each drop, but only works for positive values.
        if finite.size and np.all(finite > 0) and finite.max() / finite.min() >= 10:
            ax.set_yscale("log")
        ax.set_title("Learning rate")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- misclassified


def _confidence_per_sample(confidences: Any, predictions: np.ndarray) -> np.ndarray:
    values = np.asarray(confidences, dtype=np.float64)
    n = predictions.shape[0]
    if values.ndim == 2 and values.shape[0] == n:
        # A full probability matrix: take the probability of the predicted class.
        if np.any(predictions >= values.shape[1]):
            raise PipelineError("y_pred has labels beyond the columns of confidences")
        return values[np.arange(n), predictions]
    if values.ndim == 1 and values.shape[0] == n:
        return values
    raise PipelineError(f"confidences must have shape ({n},) or ({n}, classes), got {values.shape}")


def plot_misclassified(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    max_images: int = 36,
    confidences: np.ndarray | None = None,
) -> Path:
    """Write `misclassified_figure` as a PNG at `path` (atomically)."""
    figure = misclassified_figure(images, y_true, y_pred, class_names, max_images, confidences)
    return _save(figure, path)


def misclassified_figure(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    max_images: int = 36,
    confidences: np.ndarray | None = None,
) -> Any:
    """Grid of up to `max_images` misclassified images titled "true → pred (conf)".

    `images` are the raw uint8 test images (N, H, W, 3). `confidences` is optional: either the
    predicted class's probability per sample (N,) or the full probability matrix (N, C). With
    confidences the most confident mistakes are shown first (the most telling ones); without,
    the first mistakes in test-set order. With no mistakes the PNG says so.
    """
    pixels = np.asarray(images)
    actual = np.asarray(y_true).reshape(-1).astype(np.int64)
    predicted = np.asarray(y_pred).reshape(-1).astype(np.int64)
    _check_misclassified_inputs(pixels, actual, predicted, len(class_names), max_images)

    confidence = None if confidences is None else _confidence_per_sample(confidences, predicted)
    wrong = np.flatnonzero(actual != predicted)
    if confidence is not None:
        # Stable sort keeps test-set order among equal confidences: deterministic output.
        wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    shown = wrong[:max_images]

    if shown.size == 0:
        fig, ax = plt.subplots(figsize=(4.0, 2.0))
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        ax.set_title(f"Misclassified (0 of {actual.shape[0]})", fontsize=10)
        ax.axis("off")
        return fig

    titles = []
    for index in shown.tolist():
        title = f"{class_names[actual[index]]} {ARROW} {class_names[predicted[index]]}"
        if confidence is not None:
            title += f" ({confidence[index]:.2f})"
        titles.append(title)
    fig = _image_grid(pixels[shown], titles)
    fig.suptitle(
        f"Misclassified: showing {shown.size} of {wrong.size} ({actual.shape[0]} images)",
        fontsize=10,
    )
    return fig


def _check_misclassified_inputs(
    pixels: np.ndarray, actual: np.ndarray, predicted: np.ndarray, n_classes: int, max_images: int
) -> None:
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise PipelineError(
            f"images must be uint8 (N, H, W, 3) raw pixels, got {pixels.dtype} {pixels.shape}; "
            "pass the test images before preprocessing"
        )
    if not pixels.shape[0] == actual.shape[0] == predicted.shape[0]:
        raise PipelineError(
            f"images ({pixels.shape[0]}), y_true ({actual.shape[0]}) and y_pred "
            f"({predicted.shape[0]}) must have the same length"
        )
    if max_images < 1:
        raise PipelineError(f"max_images must be at least 1, got {max_images}")
    for what, labels in (("y_true", actual), ("y_pred", predicted)):
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise PipelineError(f"{what} has labels outside 0..{n_classes - 1}")


def _image_grid(pixels: np.ndarray, titles: list[str]) -> Any:
    """A near-square grid of the images, each under its title; the top left for a suptitle."""
    n_cols = math.ceil(math.sqrt(len(titles)))
    n_rows = math.ceil(len(titles) / n_cols)
    # At least 4 in wide so the overall title fits even over a single image.
    width, height = max(1.8 * n_cols, 4.0), 1.8 * n_rows + 0.7
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False)
    # Fixed margins instead of tight_layout, which costs about a second on a 6x6 grid.
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - 0.7 / height, wspace=0.15, hspace=0.3
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, pixels, titles, strict=False):
        # "nearest": 32x32 images blurred by interpolation hide exactly what went wrong.
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    return fig
