"""The regression gate's recipe (presets/ci-gate.yaml) and its data, for the gate's
calibration (benchmarks/gate_calibration.py) and its test: params.yaml with the preset applied,
and the preset's embedded images split as the preprocess stage splits them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from cifar10_mlops.cli.presets import apply_overrides
from cifar10_mlops.core import config
from cifar10_mlops.core.params import Params, parse_params
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.data.raw_layout import load_split
from cifar10_mlops.data.synthetic import write_kaggle_layout

GATE_PRESET = "ci-gate"


def gate_recipe_params(
    root: Path | None = None, seed: int | None = None, backend: str | None = None
) -> Params:
    """The committed params.yaml with presets/ci-gate.yaml applied; `seed` and `backend`
    replace train.seed and train.backend when given."""
    root = root or config.project_root()
    raw = yaml.safe_load((root / "params.yaml").read_text())
    preset = root / "presets" / f"{GATE_PRESET}.yaml"
    apply_overrides(raw, yaml.safe_load(preset.read_text()))
    changes = {k: v for k, v in (("seed", seed), ("backend", backend)) if v is not None}
    apply_overrides(raw, {"train": changes})
    return parse_params(raw, preset)


def gate_recipe_data(params: Params) -> tuple[LabelledImages, LabelledImages]:
    """(train, test): the recipe's embedded images, split as the preprocess stage does."""
    with tempfile.TemporaryDirectory(prefix="gate-recipe-") as scratch:
        write_kaggle_layout(Path(scratch), params.data.synthetic.count, params.data.synthetic.seed)
        return load_split(Path(scratch), params.split)
