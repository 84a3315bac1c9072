"""predict's CSV against hostile names and broken models (issue 27, item 4): names that a
spreadsheet would run as formulas are neutralised, a name that is not UTF-8 survives, and a
model with NaN weights is refused instead of printing `airplane,nan`."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.cli import one_error_line, read_csv, run_main
from tests.helpers.models import tiny_keras_model_file

CLI = [sys.executable, "-m", "cifar10_mlops.cli.main"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_keras_model_file(tmp_path_factory.mktemp("model") / "model.keras")


def _picture(path: Path) -> Path:
    Image.fromarray(np.full((32, 32, 3), 127, np.uint8)).save(path, format="PNG")
    return path


def test_a_name_a_spreadsheet_would_run_as_a_formula_is_neutralised(
    tmp_path, tiny_model, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # relative names: the path cell starts with the file's name
    names = [f"{first}HYPERLINK(1).png" for first in ("=", "+", "-", "@", "\t", "\r")]
    for name in names:
        _picture(Path(name))
    code, out, err = run_main(
        ["predict", "--quiet", "--model", str(tiny_model), "--", *names], capsys
    )
    assert code == 0, err
    rows = read_csv(out)
    # A carriage return is also written \\r: the csv module leaves it unquoted.
    assert [row["path"] for row in rows] == ["'" + name.replace("\r", "\\r") for name in names]
    assert all(row["label"] and float(row["confidence"]) > 0 for row in rows)


def test_a_name_that_is_not_utf8_survives_to_the_csv(tmp_path, tiny_model):
    folder = tmp_path / "pictures"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9-\xff.png"  # Latin-1 bytes: not UTF-8
    _picture(Path(os.fsdecode(raw)))
    _picture(folder / "plain.png")
    output = tmp_path / "out.csv"
    result = subprocess.run(
        [
            *CLI,
            "predict",
            "--quiet",
            "--model",
            str(tiny_model),
            str(folder),
            "--output",
            str(output),
        ],
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    rows = list(csv.DictReader(io.StringIO(output.read_bytes().decode("utf-8"))))
    assert [row["path"] for row in rows] == [
        f"{folder}/caf\\xe9-\\xff.png",  # the bytes that are not UTF-8, as \xNN
        f"{folder}/plain.png",
    ]
    assert all(row["label"] for row in rows)


def test_a_model_with_nan_weights_is_refused_not_printed(tmp_path, capsys):
    from cifar10_mlops.core.quiet_tensorflow import keras

    model_file = tiny_keras_model_file(tmp_path / "nan.keras")
    model = keras.saving.load_model(model_file)
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    model.save(model_file)
    output = tmp_path / "out.csv"
    output.write_text("previous good predictions\n")
    code, out, err = run_main(
        [
            "predict",
            "--quiet",
            "--model",
            str(model_file),
            str(_picture(tmp_path / "a.png")),
            "--output",
            str(output),
        ],
        capsys,
    )
    assert code == 2
    line = one_error_line(err)
    assert "not a finite number" in line and "a.png" in line
    assert output.read_text() == "previous good predictions\n"
