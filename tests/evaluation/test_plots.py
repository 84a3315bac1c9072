"""The plots render real, readable PNGs and reject input they cannot draw."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.evaluation.plots import (
    ARROW,
    DPI,
    confusion_matrix_figure,
    misclassified_figure,
    plot_confusion_matrix,
    plot_misclassified,
    plot_training_curves,
    training_curves_figure,
)


def _assert_png(path):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("L"))  # decodes fully: a truncated file fails here
    assert width > 100 and height > 100
    assert pixels.std() > 10  # something is drawn: not a blank or single-colour canvas
    # No stray temp files next to the plot, no figures left open.
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]
    assert plt.get_fignums() == []
    return width, height


@pytest.fixture
def confusion():
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 20, size=(10, 10))
    matrix[np.diag_indices(10)] += 80
    return matrix


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, confusion, normalize):
    target = tmp_path / "plots" / "confusion.png"
    assert plot_confusion_matrix(confusion, CLASS_NAMES, target, normalize=normalize) == target
    _assert_png(target)


def _texts(ax):
    return {
        (round(t.get_position()[0]), round(t.get_position()[1])): t.get_text() for t in ax.texts
    }


def test_confusion_matrix_draws_the_row_normalised_values_and_the_accuracy(confusion):
    fig = confusion_matrix_figure(confusion, CLASS_NAMES, normalize=True)
    ax = fig.axes[0]
    expected = confusion / confusion.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    cells = _texts(ax)
    assert cells[(3, 2)] == f"{expected[2, 3]:.2f}"  # (column, row): predicted 3 for actual 2
    assert all(cells[(k, k)] == f"{expected[k, k]:.2f}" for k in range(10))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASS_NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES)
    accuracy = np.trace(confusion) / confusion.sum()
    assert f"accuracy {accuracy:.2%}, n={confusion.sum()}" in ax.get_title()
    plt.close(fig)


def test_confusion_matrix_counts_are_drawn_as_integers(confusion):
    fig = confusion_matrix_figure(confusion, CLASS_NAMES, normalize=False)
    cells = _texts(fig.axes[0])
    assert cells[(0, 0)] == str(confusion[0, 0]) and cells[(9, 4)] == str(confusion[4, 9])
    assert "(counts)" in fig.axes[0].get_title()
    plt.close(fig)


def test_the_png_has_the_figure_size_at_the_plot_resolution(tmp_path, confusion):
    fig = confusion_matrix_figure(confusion, CLASS_NAMES)
    expected = tuple(round(v * DPI) for v in fig.get_size_inches())
    plt.close(fig)
    target = plot_confusion_matrix(confusion, CLASS_NAMES, tmp_path / "c.png")
    assert _assert_png(target) == expected


def test_confusion_matrix_with_empty_row(tmp_path):
    # A class with no test samples must not divide by zero.
    matrix = np.array([[3, 1, 0], [0, 0, 0], [1, 0, 2]])
    target = tmp_path / "c.png"
    plot_confusion_matrix(matrix, ("a", "b", "c"), target)
    _assert_png(target)


@pytest.mark.parametrize(
    ("matrix", "names", "message"),
    [
        (np.zeros((3, 2)), ("a", "b", "c"), "square"),
        (np.zeros((3, 3)), ("a", "b"), "2 class names"),
    ],
)
def test_confusion_matrix_rejects_bad_shapes(tmp_path, matrix, names, message):
    with pytest.raises(PipelineError, match=message):
        plot_confusion_matrix(matrix, names, tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


def test_training_curves_from_csv_with_learning_rate(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n"
        "0,0.40,0.001,1.70,0.45,1.50\n"
        "1,0.55,0.001,1.20,0.58,1.10\n"
        "2,0.65,0.0001,0.95,0.62,1.05\n"
    )
    target = tmp_path / "curves.png"
    plot_training_curves(history, target)
    width, _ = _assert_png(target)
    two_panel = tmp_path / "two.png"
    plot_training_curves({"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}, two_panel)
    assert width > _assert_png(two_panel)[0]  # the learning-rate panel widens the figure


def test_training_curves_draw_each_column_per_one_based_epoch_and_mark_the_best():
    history = {
        "epoch": [0, 1, 2],
        "loss": [1.7, 1.2, 0.9],
        "val_loss": [1.5, 1.0, 1.1],
        "accuracy": [0.4, 0.55, 0.65],
        "val_accuracy": [0.45, 0.62, 0.58],
        "learning_rate": [1e-3, 1e-4, 1e-5],
    }
    fig = training_curves_figure(history)
    loss_ax, accuracy_ax, lr_ax = fig.axes
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    for name in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"):
        np.testing.assert_allclose(lines[name].get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(lines[name].get_ydata(), history[name])
    # The best validation epoch: lowest val_loss (epoch 2), highest val_accuracy (epoch 2).
    assert "best val_loss (epoch 2)" in lines
    assert lines["best val_loss (epoch 2)"].get_xdata()[0] == 2
    assert "best val_accuracy (epoch 2)" in lines
    assert lr_ax.get_yscale() == "log"  # the schedule spans two decades
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Accuracy", "Learning rate"]
    plt.close(fig)


def test_training_curves_from_mapping_without_val_columns(tmp_path):
    target = tmp_path / "curves.png"
    plot_training_curves(
        {"loss": [2.0, 1.5, 1.2], "accuracy": [0.3, 0.4, 0.5], "lr": [1e-3] * 3}, str(target)
    )
    _assert_png(target)


def test_training_curves_with_only_val_loss_and_blank_cells(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,val_loss\n0,1.0\n1,\n2,0.8\n")
    target = tmp_path / "curves.png"
    plot_training_curves(history, target)
    _assert_png(target)


def test_training_curves_errors(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "c.png")
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,loss\n")
    with pytest.raises(PipelineError, match="empty"):
        plot_training_curves(empty, tmp_path / "c.png")
    with pytest.raises(PipelineError, match="no loss or accuracy"):
        plot_training_curves({"epoch": [0, 1], "learning_rate": [0.1, 0.1]}, tmp_path / "c.png")
    with pytest.raises(PipelineError, match="different lengths"):
        plot_training_curves({"loss": [1.0, 0.5], "val_loss": [1.0]}, tmp_path / "c.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,loss\n0,abc\n")
    with pytest.raises(PipelineError, match=r"bad.csv:2: column 'loss'"):
        plot_training_curves(bad, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def _images_and_labels(n=50, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y_true = rng.integers(0, 10, size=n)
    return images, y_true


def test_misclassified_grid_with_probability_matrix(tmp_path):
    images, y_true = _images_and_labels()
    probs = np.random.default_rng(1).dirichlet(np.ones(10), size=len(y_true))
    target = tmp_path / "misclassified.png"
    plot_misclassified(images, y_true, probs.argmax(axis=1), CLASS_NAMES, target, confidences=probs)
    _assert_png(target)


def test_misclassified_grid_shows_the_most_confident_mistakes_first_with_their_pixels():
    images, y_true = _images_and_labels(n=8)
    y_pred = y_true.copy()
    wrong = [1, 4, 6]
    y_pred[wrong] = (y_true[wrong] + 3) % 10
    confidences = np.array([0.9, 0.3, 0.9, 0.9, 0.8, 0.9, 0.55, 0.9])
    fig = misclassified_figure(images, y_true, y_pred, CLASS_NAMES, confidences=confidences)
    drawn = [ax for ax in fig.axes if ax.images]
    order = [4, 6, 1]  # by confidence: 0.8, 0.55, 0.3
    assert len(drawn) == len(order)
    for ax, index in zip(drawn, order, strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), images[index])
        title = f"{CLASS_NAMES[y_true[index]]} {ARROW} {CLASS_NAMES[y_pred[index]]}"
        assert ax.get_title() == f"{title} ({confidences[index]:.2f})"
    assert "showing 3 of 3 (8 images)" in fig.texts[0].get_text()
    plt.close(fig)


def test_misclassified_small_grid_with_per_sample_confidence(tmp_path):
    images, y_true = _images_and_labels(n=8)
    y_pred = (y_true + 1) % 10
    target = tmp_path / "m.png"
    plot_misclassified(
        images,
        y_true,
        y_pred,
        CLASS_NAMES,
        target,
        max_images=4,
        confidences=np.linspace(0.2, 0.9, 8),
    )
    _assert_png(target)


def test_no_misclassified_images_still_writes_png(tmp_path):
    images, y_true = _images_and_labels(n=5)
    target = tmp_path / "m.png"
    plot_misclassified(images, y_true, y_true.copy(), CLASS_NAMES, target)
    _assert_png(target)


def test_misclassified_rejects_bad_input(tmp_path):
    images, y_true = _images_and_labels(n=4)
    with pytest.raises(PipelineError, match="uint8"):
        plot_misclassified(
            images.astype(np.float32) / 255, y_true, y_true, CLASS_NAMES, tmp_path / "m.png"
        )
    with pytest.raises(PipelineError, match="same length"):
        plot_misclassified(images, y_true[:3], y_true, CLASS_NAMES, tmp_path / "m.png")
    with pytest.raises(PipelineError, match="outside"):
        plot_misclassified(images, y_true, np.full(4, 10), CLASS_NAMES, tmp_path / "m.png")
    with pytest.raises(PipelineError, match="confidences must have shape"):
        plot_misclassified(
            images, y_true, y_true, CLASS_NAMES, tmp_path / "m.png", confidences=np.ones(3)
        )
    assert list(tmp_path.iterdir()) == []


def test_training_curves_skip_the_na_columns_keras_writes_without_validation(tmp_path):
    """train.validation_split 0: Keras' CSVLogger writes NA for every val_ cell."""
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n"
        "0,0.31,0.001,1.9,NA,NA\n"
        "1,0.52,0.0005,1.4,NA,NA\n"
    )
    fig = training_curves_figure(history)
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert {"loss", "accuracy", "learning_rate"} <= labels
    assert not any(label.startswith(("val_", "best")) for label in labels)
    plt.close(fig)
