"""Fast inference on a loaded Keras classifier, for the served model and `cifar10-mlops predict`.

- batch_predictor: `model.predict_on_batch` on batches padded to a power of two. Keras'
  `model.predict` builds a data adapter and an epoch loop on every call (tens of ms), which
  dominates a request of one photo; `predict_on_batch` runs the compiled function directly.
  Padding keeps the number of distinct input shapes small (1, 2, 4, ..., max_batch), so JAX
  compiles at most that many programs and TensorFlow does not retrace for every size.
- CoalescingPredictor: concurrent callers (the scoring server runs each request in a thread)
  share one model call instead of competing for the same cores with several small ones.

Pure numpy around the model: no TensorFlow or JAX import here, so either Keras backend works.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 images (N, 32, 32, 3) -> (N, classes)


def padded_size(count: int, max_batch: int) -> int:
    """The smallest power of two >= count, at most max_batch."""
    return min(max_batch, 1 << max(0, count - 1).bit_length())


def batch_predictor(keras_model, max_batch: int = 256) -> Predict:
    """images -> probabilities through predict_on_batch, in chunks of at most max_batch."""

    def predict(images: np.ndarray) -> np.ndarray:
        parts = []
        for start in range(0, len(images), max_batch):
            chunk = images[start : start + max_batch]
            size = padded_size(len(chunk), max_batch)
            if size > len(chunk):  # zero images as padding; their rows are dropped below
                padding = np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, padding])
            output = np.asarray(keras_model.predict_on_batch(chunk))
            parts.append(output[: min(max_batch, len(images) - start)])
        if not parts:
            return np.zeros((0, keras_model.output_shape[-1]), np.float32)
        return np.concatenate(parts)

    return predict


class _Request:
    __slots__ = ("images", "result", "error", "done")

    def __init__(self, images: np.ndarray):
        self.images = images
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class CoalescingPredictor:
    """Calls `predict` for several concurrent callers at once: whichever caller finds the model
    idle runs one call over every request waiting (up to max_images) and hands each caller its
    rows. A lone caller pays nothing extra; eight callers pay for one bigger call, not eight.
    """

    def __init__(self, predict: Predict, max_images: int = 256):
        self._predict = predict
        self._max_images = max_images
        self._condition = threading.Condition()
        self._waiting: list[_Request] = []
        self._running = False

    def __call__(self, images: np.ndarray) -> np.ndarray:
        request = _Request(images)
        with self._condition:
            self._waiting.append(request)
            while not request.done:
                if self._running:
                    self._condition.wait()
                    continue
                batch = self._take_batch()
                self._running = True
                self._condition.release()
                try:
                    self._run(batch)
                finally:
                    self._condition.acquire()
                    self._running = False
                    self._condition.notify_all()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _take_batch(self) -> list[_Request]:
        # The oldest first; at least one request, however big (the model chunks it).
        batch: list[_Request] = []
        count = 0
        while self._waiting and (
            not batch or count + len(self._waiting[0].images) <= self._max_images
        ):
            request = self._waiting.pop(0)
            batch.append(request)
            count += len(request.images)
        return batch

    def _run(self, batch: list[_Request]) -> None:
        try:
            images = (
                batch[0].images if len(batch) == 1 else np.concatenate([r.images for r in batch])
            )
            probabilities = self._predict(images)
        except BaseException as exc:  # every waiting caller gets the error, not a hang
            for request in batch:
                request.error, request.done = exc, True
            return
        start = 0
        for request in batch:
            request.result = probabilities[start : start + len(request.images)]
            request.done = True
            start += len(request.images)
