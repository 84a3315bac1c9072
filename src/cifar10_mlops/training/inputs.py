"""Training input: batches of uint8 images straight from the arrays, in numpy.

One input path for every Keras backend: it needs no TensorFlow (the JAX backend runs on
machines without it), and on the CPU it keeps up with the tf.data pipeline it replaced
(benchmarks/input_pipeline.py). Augmentation (random crop after reflection padding,
horizontal flip, at random or alternating per image, then optionally TrivialAugment's one
random operation per image: training/augment_policy.py) is drawn per batch from (seed, epoch,
batch index), so an epoch's batches are the same whatever order Keras asks for them in, and a
resumed run sees the epochs it would have seen. The model casts, normalises and resizes inside itself: no float32 or resized copy of the
data set exists.
"""

from __future__ import annotations

import math

import numpy as np

from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.training.augment_policy import trivial_augment


class ImageBatches(keras.utils.PyDataset):
    """uint8 (images, labels) batches for `model.fit`, reshuffled every epoch.

    `part` = (index, count): multi-process training, where every process builds the same
    global batch and keeps its own contiguous `1/count` of it (the arrays are in memory on
    every process, so nothing is split beforehand). `whole_batches`: several devices need
    equal shares, so the last, smaller batch of an epoch is left out (a different one each
    epoch, as the order is reshuffled)."""

    def __init__(
        self,
        data: LabelledImages,
        batch_size: int,
        shuffle_seed: int | None,
        augment: bool = False,
        crop_padding: int = 4,
        part: tuple[int, int] = (0, 1),
        whole_batches: bool = False,
        flip: str = "random",
        policy: str = "none",
    ):
        super().__init__()
        index, count = part
        if batch_size % count:
            raise ValueError(f"batch size {batch_size} does not split into {count} equal parts")
        self.images = data.images
        self.labels = np.asarray(data.labels, dtype=np.int32)
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        self.augment = augment
        self.padding = crop_padding if augment else 0
        self.policy = policy if augment else "none"
        self.part_index, self.part_count = index, count
        self.whole_batches = whole_batches or count > 1
        self.epoch = 0
        self.order = self._order()
        # alternate: a fixed random half of the images is flipped on even epochs, the other
        # half on odd ones (airbench's alternating flips: no image shows one side twice running).
        self.flipped_on_even_epochs = (
            np.random.default_rng([shuffle_seed or 0, 1 << 20]).random(len(self.labels)) < 0.5
            if flip == "alternate"
            else None
        )

    def __len__(self) -> int:
        if self.whole_batches:
            return len(self.labels) // self.batch_size
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order[batch * self.batch_size : (batch + 1) * self.batch_size]
        if self.augment:
            rng = np.random.default_rng([self.shuffle_seed or 0, self.epoch, batch])
            flips = None
            if self.flipped_on_even_epochs is not None:
                flips = self.flipped_on_even_epochs[chosen] ^ bool(self.epoch % 2)
            images = augment_batch(self.images, chosen, self.padding, rng, flips)
            if self.policy == "trivial":  # after the crop and flip draws: those stay as they were
                images = trivial_augment(images, rng)
        else:
            images = self.images[chosen]
        if self.part_count > 1:
            share = len(chosen) // self.part_count
            mine = slice(self.part_index * share, (self.part_index + 1) * share)
            return images[mine], self.labels[chosen[mine]]
        return images, self.labels[chosen]

    def start_at_epoch(self, epoch: int) -> None:
        """Begin with `epoch`'s batches (a resumed run)."""
        self.epoch = epoch
        self.order = self._order()

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if self.shuffle_seed is None:
            return np.arange(len(self.labels))
        return np.random.default_rng([self.shuffle_seed, self.epoch]).permutation(len(self.labels))


def augment_batch(
    images: np.ndarray,
    chosen: np.ndarray,
    padding: int,
    rng: np.random.Generator,
    flips: np.ndarray | None = None,
) -> np.ndarray:
    """The chosen images, each shifted by up to `padding` pixels (reflection at the borders)
    and flipped left-right where `flips` says (None: with probability 1/2): one gather, no
    per-image Python loop."""
    count, height, width = len(chosen), images.shape[1], images.shape[2]
    rows = np.arange(height)[None, :] + rng.integers(-padding, padding + 1, (count, 1))
    cols = np.arange(width)[None, :] + rng.integers(-padding, padding + 1, (count, 1))
    flip = rng.random(count) < 0.5 if flips is None else flips
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    rows, cols = _reflect(rows, height), _reflect(cols, width)
    return images[chosen[:, None, None], rows[:, :, None], cols[:, None, :]]


def _reflect(positions: np.ndarray, size: int) -> np.ndarray:
    """Indices outside 0..size-1 mirrored back inside, the edge pixel not repeated (numpy's and
    TensorFlow's 'reflect' padding)."""
    positions = np.abs(positions)
    return np.where(positions >= size, 2 * (size - 1) - positions, positions)
