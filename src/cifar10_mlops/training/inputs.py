"""Training input: tf.data batches of uint8 images straight from the arrays.

Augmentation (random crop after reflection padding, horizontal flip) runs on the fly in
tf.data; the model casts, normalises and resizes inside itself. No float32 or resized copy of
the data set exists.
"""

from __future__ import annotations

from cifar10_mlops.data.arrays import LabelledImages


def make_dataset(
    data: LabelledImages,
    batch_size: int,
    shuffle_seed: int | None,
    augment: bool = False,
    crop_padding: int = 4,
    shard: bool = False,
):
    """Batches of uint8 images straight from the arrays: the model casts and normalises.

    `shard`: multi-worker training, where each worker takes its share of every global batch
    (the arrays are in memory, not in files that could be split between workers)."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(
            len(data.labels), seed=shuffle_seed, reshuffle_each_iteration=True
        )
    if augment:
        dataset = dataset.map(
            _augmenter(crop_padding, seed=shuffle_seed or 0), num_parallel_calls=tf.data.AUTOTUNE
        )
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    if shard:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    return dataset


def _augmenter(padding: int, seed: int):
    import tensorflow as tf

    def augment(image, label):
        if padding:
            padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
            image = tf.image.random_crop(padded, tf.shape(image), seed=seed)
        return tf.image.random_flip_left_right(image, seed=seed + 1), label

    return augment
