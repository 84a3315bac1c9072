"""model/inference.py on a real tiny Keras model: padded batches give Keras' own answers, and
concurrent callers sharing one model call each get their own rows."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cifar10_mlops.model.inference import CoalescingPredictor, batch_predictor, padded_size
from tests.helpers.models import tiny_keras_model_file


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    from cifar10_mlops.model.build import load_model

    return load_model(tiny_keras_model_file(tmp_path_factory.mktemp("model") / "model.keras"))


def test_padded_sizes_are_powers_of_two_up_to_the_cap():
    assert [padded_size(n, 256) for n in (1, 2, 3, 5, 8, 9, 200, 256)] == [
        1, 2, 4, 8, 8, 16, 256, 256,
    ]  # fmt: skip
    assert padded_size(300, 256) == 256


@pytest.mark.parametrize("count", [1, 3, 17, 40])
def test_batch_predictor_answers_as_keras_predict(keras_model, count):
    images = np.random.default_rng(count).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    expected = keras_model.predict(images, verbose=0)
    np.testing.assert_allclose(batch_predictor(keras_model, 16)(images), expected, atol=1e-6)


def test_concurrent_callers_get_their_own_rows(keras_model):
    model_calls = []

    def predict(images):
        model_calls.append(len(images))
        return batch_predictor(keras_model)(images)

    coalesced = CoalescingPredictor(predict, max_images=64)
    rng = np.random.default_rng(0)
    requests = [rng.integers(0, 256, (1 + i % 3, 32, 32, 3), dtype=np.uint8) for i in range(24)]
    answers: dict[int, np.ndarray] = {}

    def call(index):
        answers[index] = coalesced(requests[index])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, images in enumerate(requests):
        expected = keras_model.predict(images, verbose=0)
        np.testing.assert_allclose(answers[index], expected, atol=1e-6)
    assert sum(model_calls) == sum(len(images) for images in requests)


def test_an_error_reaches_every_caller_and_the_next_call_works(keras_model):
    def predict(images):
        if len(images) == 5:
            raise ValueError("five")
        return batch_predictor(keras_model)(images)

    coalesced = CoalescingPredictor(predict)
    with pytest.raises(ValueError, match="five"):
        coalesced(np.zeros((5, 32, 32, 3), np.uint8))
    assert coalesced(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 10)
