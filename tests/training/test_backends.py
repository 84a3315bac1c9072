"""One training code on two Keras backends, and a .keras model that answers the same on both.

Each model is trained for real by `train_model` in a fresh process under one backend
(train.backend and KERAS_BACKEND: Keras picks its backend once, at import), then loaded and
asked for probabilities, with and without test-time augmentation, in fresh processes under
each backend: the labels must agree and the probabilities within 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.models import SMALL_BACKBONE

pytestmark = pytest.mark.slow

BACKENDS = ("tensorflow", "jax")
# The compact ResNet trained on TensorFlow, the preset's airbench network (its whitening
# layer is set from the data) trained on JAX: both directions, both custom-layer families.
TRAINED_ON = {
    "tensorflow": SMALL_BACKBONE,
    "jax": {"backbone": "airbench", "airbench": {"widths": [8, 16, 16]}, "dropout": 0.0},
}

TRAIN = r"""
import json, sys
from pathlib import Path
import numpy as np
from cifar10_mlops.core.params import Params
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.training.fit import train_model
backend, model_params, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
rng = np.random.default_rng(0)
labels = np.arange(160) % 10
images = (rng.integers(0, 60, (160, 32, 32, 3)) + labels[:, None, None, None] * 19).astype(np.uint8)
params = Params.model_validate({"model": model_params, "train": {
    "epochs": 2, "batch_size": 32, "validation_split": 0.0, "backend": backend}})
train_model(params, LabelledImages(images, labels, np.arange(1, 161)), out / "model.keras",
            out / "history.csv", out / "state", verbose=0)
"""

PREDICT = r"""
import sys
from pathlib import Path
import numpy as np
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.model.build import load_model
from cifar10_mlops.model.tta import predict_probabilities
images, out = np.load(sys.argv[1]), Path(sys.argv[2])
answers = {"backend": keras.backend.backend()}
for trained_on, model_file in zip(sys.argv[3::2], sys.argv[4::2]):
    model = load_model(Path(model_file))
    predict = lambda batch: model.predict(batch, verbose=0, batch_size=64)
    for tta in (False, True):
        answers[f"{trained_on}-tta-{tta}"] = predict_probabilities(predict, images, tta=tta)
np.savez(out, **answers)
"""


def _run(code: str, backend: str, *args: str) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """Each backend's answers for both models: {backend that predicts: {what: array}}."""
    base = tmp_path_factory.mktemp("backends")
    models = []
    for backend, model_params in TRAINED_ON.items():
        _run(TRAIN, backend, backend, json.dumps(model_params), str(base / backend))
        models += [backend, str(base / backend / "model.keras")]
    rng = np.random.default_rng(1)
    labels = np.arange(48) % 10
    images = (rng.integers(0, 60, (48, 32, 32, 3)) + labels[:, None, None, None] * 19).astype(
        np.uint8
    )
    np.save(base / "images.npy", images)
    found = {}
    for backend in BACKENDS:
        out = base / f"answers-{backend}.npz"
        _run(PREDICT, backend, str(base / "images.npy"), str(out), *models)
        found[backend] = dict(np.load(out))
    return found


@pytest.mark.parametrize("trained_on", BACKENDS)
@pytest.mark.parametrize("tta", [False, True])
def test_a_model_answers_the_same_under_either_backend(answers, trained_on, tta):
    assert {str(answers[backend]["backend"]) for backend in BACKENDS} == set(BACKENDS)
    on_tf = answers["tensorflow"][f"{trained_on}-tta-{tta}"]
    on_jax = answers["jax"][f"{trained_on}-tta-{tta}"]
    assert on_tf.shape == (48, 10)
    np.testing.assert_array_equal(on_tf.argmax(axis=1), on_jax.argmax(axis=1))
    np.testing.assert_allclose(on_tf, on_jax, rtol=0, atol=1e-5)
    other = answers["tensorflow"][f"{trained_on}-tta-{not tta}"]
    assert not np.array_equal(on_tf, other)  # TTA really averaged other views
