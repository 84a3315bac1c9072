"""The training batches as TensorFlow gets them: a tf.data pipeline with its autotuning off.

Given a `keras.utils.PyDataset`, Keras 3 on TensorFlow builds `from_generator(...).prefetch(
AUTOTUNE)` and a new iterator every epoch. With autotuning on, each iterator runs tf.data's
optimisation thread, which sleeps between rounds for up to 10 s, and destroying the iterator at
the end of the epoch waits for that sleep to end: the whole process sat idle 5-10 s at about
every other epoch boundary (seen in gdb: `RootDataset::Iterator::~Iterator` waiting on
`Model::OptimizeLoop`; TensorFlow 2.21, Keras 3.15). Here the same numpy batches go through
`from_generator` with autotuning off and one batch prefetched: on a CPU the batch costs a few
per cent of a training step, so one batch ahead keeps the step fed.

The batches stay those of `ImageBatches` (inputs.py): `EpochBatches` tells it each epoch's
number as the epoch begins. Keras makes an epoch's iterator at the end of the one before, but
the generator draws nothing until the epoch's first step, so a batch's images depend on (seed,
epoch, batch) only, as on the other backends. JAX gets the PyDataset itself (no tf.data).
"""

from __future__ import annotations

from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.training.inputs import ImageBatches


def feed(batches: ImageBatches):
    """What `model.fit` gets for `batches`: the PyDataset itself, or under TensorFlow a tf.data
    pipeline of the same batches (with `epoch_callbacks(batches)` among the callbacks)."""
    if not _through_tf_data():
        return batches
    import tensorflow as tf

    def one_epoch():
        for index in range(len(batches)):
            yield batches[index]

    signature = (
        tf.TensorSpec((None, *batches.images.shape[1:]), tf.uint8),
        tf.TensorSpec((None,), tf.int32),
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_generator(one_epoch, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(batches)))
    return dataset.prefetch(1).with_options(options)


def epoch_callbacks(batches: ImageBatches) -> list[keras.callbacks.Callback]:
    """The callbacks `feed(batches)` needs: under TensorFlow, `EpochBatches`; none where Keras
    gets the PyDataset and calls its `on_epoch_end` itself (JAX, multi-worker included)."""
    return [EpochBatches(batches)] if _through_tf_data() else []


def _through_tf_data() -> bool:
    return keras.backend.backend() == "tensorflow"


class EpochBatches(keras.callbacks.Callback):
    """Keras calls a PyDataset's `on_epoch_end` itself, but not a tf.data pipeline's: this
    sets `batches` to each epoch's order as the epoch begins (a resumed run's first included)."""

    def __init__(self, batches: ImageBatches) -> None:
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.batches.epoch != epoch:
            self.batches.start_at_epoch(epoch)
