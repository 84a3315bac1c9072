"""What training minimises and how: the optimizer, the loss with label smoothing, the metric."""

from __future__ import annotations

from cifar10_mlops.core.params import TrainParams
from cifar10_mlops.core.quiet_tensorflow import keras

OPTIMIZERS = {
    "adam": lambda lr, wd: keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd),
    "rmsprop": lambda lr, wd: keras.optimizers.RMSprop(learning_rate=lr, weight_decay=wd or None),
    "sgd": lambda lr, wd: keras.optimizers.SGD(
        learning_rate=lr, momentum=0.9, nesterov=True, weight_decay=wd or None
    ),
}


def compile_model(model: keras.Model, train: TrainParams, jit_compile: bool = False) -> None:
    # Sparse categorical cross-entropy and true multi-class accuracy: binary cross-entropy on
    # ten classes would report ~90% "accuracy" for a model that predicts nothing. Keras'
    # sparse loss has no label smoothing, so labels are smoothed one-hot inside the loss.
    loss = _smoothed_sparse_crossentropy(train.label_smoothing, model.output_shape[-1])
    model.compile(
        optimizer=OPTIMIZERS[train.optimizer](train.learning_rate, train.weight_decay),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


def _smoothed_sparse_crossentropy(smoothing: float, num_classes: int):
    if smoothing == 0:
        return keras.losses.SparseCategoricalCrossentropy()
    dense = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

    def loss(labels, probabilities):
        one_hot = keras.ops.one_hot(
            keras.ops.reshape(keras.ops.cast(labels, "int32"), [-1]), num_classes
        )
        return dense(one_hot, probabilities)

    return loss
