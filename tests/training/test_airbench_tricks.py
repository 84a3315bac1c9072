"""The airbench training tricks the real-photos preset can switch on: alternating flips, a
separate learning rate for batch-norm shifts, a whitening bias that learns then stops, and
Lookahead. Each is off by default, and off means the plain Keras optimizer and input."""

from __future__ import annotations

import numpy as np
import pytest

from cifar10_mlops.core.params import Params
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.model.build import build_model, set_from_training_images
from cifar10_mlops.training.inputs import ImageBatches
from cifar10_mlops.training.lookahead import Lookahead
from cifar10_mlops.training.optimization import compile_model, variable_rates


def _images(count: int, seed: int = 0) -> LabelledImages:
    rng = np.random.default_rng(seed)
    return LabelledImages(
        images=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
        labels=np.arange(count) % 10,
        ids=np.arange(1, count + 1),
    )


def _flipped_ids(batches: ImageBatches) -> set[int]:
    """The ids (labels here) of the images that came out mirrored in this epoch."""
    flipped = set()
    for index in range(len(batches)):
        chosen = batches.order[index * batches.batch_size : (index + 1) * batches.batch_size]
        images, labels = batches[index]
        for image, label, original in zip(images, labels, chosen, strict=True):
            assert label == original
            if not np.array_equal(image, batches.images[original]):
                assert np.array_equal(image, batches.images[original][:, ::-1])
                flipped.add(int(label))
    return flipped


def test_alternating_flips_mirror_every_image_on_every_other_epoch():
    data = _images(60)
    data.labels[:] = np.arange(60)  # the label names the image
    batches = ImageBatches(data, 16, 7, augment=True, crop_padding=0, flip="alternate")
    epochs = []
    for _ in range(3):
        epochs.append(_flipped_ids(batches))
        batches.on_epoch_end()
    assert 15 < len(epochs[0]) < 45  # a random half first
    assert epochs[1] == set(range(60)) - epochs[0]  # then exactly the others
    assert epochs[2] == epochs[0]
    resumed = ImageBatches(data, 16, 7, augment=True, crop_padding=0, flip="alternate")
    resumed.start_at_epoch(1)
    assert _flipped_ids(resumed) == epochs[1]  # a resumed run keeps the alternation


def test_random_flips_are_the_default_and_do_not_alternate():
    data = _images(200)
    data.labels[:] = np.arange(200)
    batches = ImageBatches(data, 50, 7, augment=True, crop_padding=0)
    first = _flipped_ids(batches)
    batches.on_epoch_end()
    second = _flipped_ids(batches)
    assert first & second  # some images mirrored twice running: random, not alternating


def _airbench(**train_overrides) -> tuple[keras.Model, Params]:
    params = Params.model_validate(
        {
            "model": {
                "backbone": "airbench",
                "airbench": {"widths": [8, 16, 16], "whiten_bias_epochs": 1},
                "dropout": 0.0,
            },
            "train": {"optimizer": "adam", "learning_rate": 0.01, **train_overrides},
        }
    )
    keras.utils.set_random_seed(0)
    model = build_model(params.model, num_classes=10)
    set_from_training_images(model, _images(64).images)
    return model, params


def _layer(model: keras.Model, name: str) -> keras.Layer:
    from cifar10_mlops.model.airbench import all_layers

    return next(layer for layer in all_layers(model) if layer.name == name)


def test_the_whitening_bias_learns_for_its_epochs_then_stops_and_its_filters_never_move():
    model, params = _airbench()
    whiten = _layer(model, "whiten")
    kernel, bias = (np.array(w) for w in whiten.get_weights())
    steps_per_epoch = 2
    compile_model(model, params.train, rates=variable_rates(model, params, steps_per_epoch))
    data = _images(64)
    batches = ImageBatches(data, 32, 0, augment=True)
    model.fit(batches, epochs=1, verbose=0, shuffle=False)
    kernel_1, bias_1 = (np.array(w) for w in whiten.get_weights())
    np.testing.assert_array_equal(kernel_1, kernel)  # the whitening filters stay
    assert not np.allclose(bias_1, bias)  # the bias learned in its epoch
    model.fit(batches, epochs=2, initial_epoch=1, verbose=0, shuffle=False)
    kernel_2, bias_2 = (np.array(w) for w in whiten.get_weights())
    np.testing.assert_array_equal(kernel_2, kernel)
    np.testing.assert_array_equal(bias_2, bias_1)  # then it stopped, weight decay included


def test_batch_norm_shifts_learn_at_their_own_rate():
    """The same first step with the shifts' rate scaled by 10: the shifts move 10x as far
    (Adam's first step is learning rate x sign), every other weight the same."""
    moves = {}
    for scale in (1.0, 10.0):
        model, params = _airbench(norm_bias_lr_scale=scale, weight_decay=0.0)
        rates = variable_rates(model, params, steps_per_epoch=1)
        compile_model(model, params.train, rates=rates)
        before = {v.path: np.array(v) for v in model.trainable_variables}
        batch = _images(32)
        model.train_on_batch(batch.images, batch.labels)
        moves[scale] = {
            v.path: np.abs(np.array(v) - before[v.path]) for v in model.trainable_variables
        }
    shifts = [path for path in moves[1.0] if path.endswith("/beta")]
    assert len(shifts) == 6  # two batch norms in each of the three groups
    for path, move in moves[1.0].items():
        expected = move * (10.0 if path in shifts else 1.0)
        np.testing.assert_allclose(moves[10.0][path], expected, rtol=1e-4, atol=1e-7)


def test_the_defaults_keep_the_plain_keras_optimizer():
    params = Params()
    model, _ = _airbench()
    assert variable_rates(model, params, steps_per_epoch=10) == {}
    compile_model(model, params.train)
    assert type(model.optimizer) is keras.optimizers.AdamW


def test_lookahead_pulls_the_weights_to_a_slow_average_that_grows_with_progress():
    model, params = _airbench()
    compile_model(model, params.train)
    lookahead = Lookahead(every=2, total_steps=4)
    lookahead.set_model(model)
    lookahead.on_train_begin()
    start = [np.array(v) for v in model.trainable_variables]
    batch = _images(32)
    for step in range(1, 5):
        model.train_on_batch(batch.images, batch.labels)
        fast = [np.array(v) for v in model.trainable_variables]
        lookahead.on_train_batch_end(step - 1)
        pulled = [np.array(v) for v in model.trainable_variables]
        if step == 2:  # progress 1/2: decay 0.95**2 / 8 toward the start
            decay = 0.95**2 * 0.5**3
            for s, f, p in zip(start, fast, pulled, strict=True):
                np.testing.assert_allclose(p, decay * s + (1 - decay) * f, rtol=1e-5, atol=1e-6)
            start = pulled
        elif step == 4:  # the end: decay 0.95**2
            decay = 0.95**2
            for s, f, p in zip(start, fast, pulled, strict=True):
                np.testing.assert_allclose(p, decay * s + (1 - decay) * f, rtol=1e-5, atol=1e-6)
        else:
            for f, p in zip(fast, pulled, strict=True):
                np.testing.assert_array_equal(p, f)  # between pulls the weights are left alone


@pytest.mark.parametrize(
    "bad", [{"flip": "sometimes"}, {"norm_bias_lr_scale": 0}, {"lookahead_every": -1}]
)
def test_bad_trick_params_are_refused(bad):
    with pytest.raises(ValueError):
        Params.model_validate({"train": bad})


_TRAIN_WITH_THE_TRICKS = """
import sys
from pathlib import Path
import numpy as np
from cifar10_mlops.core.params import Params
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.training.fit import train_model

out, lookahead, backend = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
data = LabelledImages(
    images=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
    labels=np.arange(64) % 10,
    ids=np.arange(1, 65),
    class_names=tuple(str(c) for c in range(10)),
)
params = Params.model_validate({
    "model": {"backbone": "airbench", "dropout": 0.0,
              "airbench": {"widths": [8, 16, 16], "whiten_bias_epochs": 1}},
    "train": {"epochs": 2, "batch_size": 32, "validation_split": 0.0,
              "optimizer": "adam", "learning_rate": 0.01, "flip": "alternate",
              "norm_bias_lr_scale": 4.0, "lookahead_every": lookahead,
              "backend": backend},
})
whiten = {}

class KeepWhiten(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        layer = self.model.get_layer("airbench_8_16_16").get_layer("whiten")
        for name, value in zip(("kernel", "bias"), layer.get_weights()):
            whiten[f"{name}_{epoch}"] = np.array(value)

outcome = train_model(
    params, data, out / "model.keras", out / "history.csv", out / "backup", verbose=0,
    callbacks=[KeepWhiten()],
)
np.savez(out / "weights.npz", *outcome.model.get_weights(), **whiten)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_train_stage_runs_the_tricks_on_either_backend(tmp_path, backend):
    """train_model with the tricks on, under each backend: the whitening filters never move,
    its bias moves in the first epoch only; Lookahead changes where training ends (its pulls
    reach the weights JAX trains on, not only the Keras variables)."""
    import os
    import subprocess
    import sys

    from cifar10_mlops.model.airbench import whitening_kernel
    from cifar10_mlops.model.build import CIFAR_MEAN, CIFAR_STD

    saved = {}
    for lookahead in (0, 2):
        out = tmp_path / f"lookahead-{lookahead}"
        out.mkdir()
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run(
            [sys.executable, "-c", _TRAIN_WITH_THE_TRICKS, str(out), str(lookahead), backend],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        saved[lookahead] = np.load(out / "weights.npz")
    plain = saved[0]
    kernel, bias = whitening_kernel(_images(64).images, (CIFAR_MEAN, CIFAR_STD))
    np.testing.assert_allclose(plain["kernel_0"], kernel, rtol=1e-6)
    np.testing.assert_array_equal(plain["kernel_1"], plain["kernel_0"])
    assert not np.allclose(plain["bias_0"], bias)  # learned in epoch 1
    np.testing.assert_array_equal(plain["bias_1"], plain["bias_0"])  # then stopped
    final = [name for name in plain.files if name.startswith("arr_")]
    assert any(not np.allclose(plain[n], saved[2][n]) for n in final)  # Lookahead acted
