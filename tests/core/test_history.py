"""The one reader of Keras' history file and its policy for cells without a value."""

from __future__ import annotations

import pytest

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.history import read_history


def test_na_empty_and_non_finite_cells_are_absent_from_their_row(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss,val_accuracy\n0,2.0,NA,\n1,1.5,nan,0.5\n")
    assert read_history(path) == [
        {"epoch": 0, "loss": 2.0},
        {"epoch": 1, "loss": 1.5, "val_accuracy": 0.5},
    ]


def test_a_torn_line_is_skipped_and_a_rewritten_epoch_keeps_its_last_row(tmp_path):
    path = tmp_path / "history.csv"
    # A resumed training appends epoch 1 again; a kill mid-write leaves a short last line.
    path.write_text("epoch,loss,accuracy\n1,1.9,0.2\n0,2.0,0.1\n1,1.5,0.3\n2,1.4\n")
    assert [row["epoch"] for row in read_history(path)] == [0, 1]
    assert read_history(path)[1] == {"epoch": 1, "loss": 1.5, "accuracy": 0.3}


def test_a_non_numeric_cell_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,2.0\n1,lots\n")
    with pytest.raises(PipelineError, match=r"history.csv:3: column 'loss' has non-numeric"):
        read_history(path)
