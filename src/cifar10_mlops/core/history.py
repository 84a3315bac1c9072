"""The training history file (Keras' CSVLogger: reports/history.csv and the backups' copy):
the one reader, for training (resume, the best epoch), tracking (MLflow's per-epoch series)
and evaluation (the training curves).

One policy for every reader:
- a metric an epoch has no value for is absent from that epoch's row: Keras writes "NA"
  (every val_* cell when `train.validation_split` is 0), and an empty or non-finite cell
  counts the same;
- a torn line (a kill mid-write: too few or too many cells, or no epoch number) is skipped;
- an epoch written twice (a resumed training appends) keeps its last row;
- any other cell that is not a number is an error that names the file, line and column.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from cifar10_mlops.core.errors import PipelineError, quote

EPOCH = "epoch"  # 0-based, as Keras counts (and MLflow's steps)
NO_VALUE = ("", "NA")


def read_history(path: Path) -> list[dict[str, float]]:
    """One row per epoch, in epoch order: `epoch` (an int) and each metric that has a value."""
    by_epoch: dict[int, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for line_number, cells in enumerate(csv.DictReader(handle), start=2):
            if None in cells or None in cells.values() or not str(cells.get(EPOCH)).isdigit():
                continue  # torn
            row: dict[str, float] = {EPOCH: int(cells[EPOCH])}
            for name, text in cells.items():
                if name != EPOCH and (value := _value(text, path, line_number, name)) is not None:
                    row[name] = value
            by_epoch[int(cells[EPOCH])] = row
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _value(text: str, path: Path, line_number: int, column: str) -> float | None:
    text = text.strip()
    if text in NO_VALUE:
        return None
    try:
        value = float(text)
    except ValueError:
        raise PipelineError(
            f"{path}:{line_number}: column {quote(column)} has non-numeric value {quote(text)}; "
            "rerun the train stage (`dvc repro -f train`)"
        ) from None
    return value if math.isfinite(value) else None
