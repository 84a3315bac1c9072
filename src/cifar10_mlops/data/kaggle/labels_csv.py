"""trainLabels.csv: the Kaggle layout's labels, `id,label` with class names, every row checked."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.core.errors import PipelineError, quote

# The real file is ~0.6 MB for 50,000 rows; the zip extraction caps it at the same size.
MAX_LABELS_BYTES = 64 * 1024**2


def read_labels_csv(path: Path) -> dict[int, int]:
    """trainLabels.csv -> {image id: class index}, with every row checked."""
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise PipelineError(
                f"{path}: {path.stat().st_size} bytes, above the cap of {MAX_LABELS_BYTES} for a "
                "labels file; expected a CSV with header id,label"
            )
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PipelineError(f"{path}: labels file not found; it must sit beside train.7z") from None
    except UnicodeDecodeError:
        raise PipelineError(
            f"{path}: not UTF-8 text; expected a CSV with header id,label"
        ) from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # e.g. a field above csv's 128 KiB limit
        raise PipelineError(f"{path}: not a readable CSV ({exc}); expected id,label rows") from None
    if not rows:
        raise PipelineError(f"{path}: empty file; expected a CSV with header id,label")
    header = [cell.strip() for cell in rows[0]]
    if header != ["id", "label"]:
        raise PipelineError(f"{path}: header is {quote(','.join(header))}; expected 'id,label'")
    class_index = {name: index for index, name in enumerate(CLASS_NAMES)}
    labels: dict[int, int] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise PipelineError(
                f"{path}: line {line_number} has {len(row)} fields; expected id,label"
            )
        raw_id, name = row[0].strip(), row[1].strip()
        # isascii: str.isdigit() also accepts digits such as '²' that int() refuses.
        # At most 9 digits, as the train/<id>.png names: int() refuses over 4,300 digits.
        if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 9) or int(raw_id) < 1:
            raise PipelineError(
                f"{path}: line {line_number}: id {quote(raw_id)} is not a positive integer "
                "of at most 9 digits"
            )
        if name not in class_index:
            raise PipelineError(
                f"{path}: line {line_number}: unknown class name {quote(name)}; "
                f"expected one of {', '.join(CLASS_NAMES)}"
            )
        image_id = int(raw_id)
        if image_id in labels:
            raise PipelineError(
                f"{path}: line {line_number}: duplicate id {image_id}; keep one row per image"
            )
        labels[image_id] = class_index[name]
    if not labels:
        raise PipelineError(f"{path}: has a header but no label rows")
    return labels
