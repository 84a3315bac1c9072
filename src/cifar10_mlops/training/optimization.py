"""What training minimises and how: the optimizer, the loss with label smoothing, the metric,
and the learning rates some variables get apart from the rest."""

from __future__ import annotations

from dataclasses import dataclass

from cifar10_mlops.core.params import Params, TrainParams
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.model.airbench import all_layers

OPTIMIZERS = {
    "adam": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}


def _optimizer_arguments(name: str, lr: float, wd: float) -> dict:
    if name == "adam":
        return {"learning_rate": lr, "weight_decay": wd}
    if name == "sgd":
        return {"learning_rate": lr, "momentum": 0.9, "nesterov": True, "weight_decay": wd or None}
    return {"learning_rate": lr, "weight_decay": wd or None}


@dataclass(frozen=True)
class VariableRate:
    """A variable's learning rate as `scale` x the optimizer's, for its first `steps` steps
    (None: all of them), then zero: the variable stops changing (and is not weight-decayed)."""

    scale: float = 1.0
    steps: int | None = None


def variable_rates(
    model: keras.Model, params: Params, steps_per_epoch: int
) -> dict[str, VariableRate]:
    """The variables (by path) whose learning rate differs from the optimizer's: batch-norm
    shifts (train.norm_bias_lr_scale) and the airbench whitening bias
    (model.airbench.whiten_bias_epochs). Empty for the defaults."""
    train, model_params = params.train, params.model
    rates: dict[str, VariableRate] = {}
    if train.norm_bias_lr_scale != 1.0:
        for layer in all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.beta is not None:
                rates[layer.beta.path] = VariableRate(scale=train.norm_bias_lr_scale)
    whiten_epochs = model_params.airbench.whiten_bias_epochs
    if model_params.backbone == "airbench" and whiten_epochs:
        for layer in all_layers(model):
            if layer.name == "whiten" and layer.bias is not None:
                rates[layer.bias.path] = VariableRate(steps=whiten_epochs * steps_per_epoch)
    return rates


def compile_model(
    model: keras.Model,
    train: TrainParams,
    jit_compile: bool = False,
    rates: dict[str, VariableRate] | None = None,
) -> None:
    # Sparse categorical cross-entropy and true multi-class accuracy: binary cross-entropy on
    # ten classes would report ~90% "accuracy" for a model that predicts nothing. Keras'
    # sparse loss has no label smoothing, so labels are smoothed one-hot inside the loss.
    loss = _smoothed_sparse_crossentropy(train.label_smoothing, model.output_shape[-1])
    arguments = _optimizer_arguments(train.optimizer, train.learning_rate, train.weight_decay)
    if rates:
        optimizer = _with_variable_rates(OPTIMIZERS[train.optimizer])(rates=rates, **arguments)
        # A variable that stops learning must not keep shrinking under decoupled weight decay.
        stopping = [v for v in model.trainable_variables if v.path in rates and rates[v.path].steps]
        if stopping:
            optimizer.exclude_from_weight_decay(var_list=stopping)
    else:  # the plain Keras optimizer: the defaults train exactly as before
        optimizer = OPTIMIZERS[train.optimizer](**arguments)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


def _with_variable_rates(base: type) -> type:
    """`base` (a Keras optimizer class) whose update scales the learning rate of the variables
    in `rates`. Keras calls update_step once per variable on every backend, with the variable's
    index known to the optimizer, so the scale is looked up there."""

    class WithVariableRates(base):
        def __init__(self, rates: dict[str, VariableRate], **kwargs):
            super().__init__(**kwargs)
            self._rates_by_path = rates

        def build(self, var_list):
            super().build(var_list)
            self._rate_by_index = {
                self._get_variable_index(v): self._rates_by_path[v.path]
                for v in var_list
                if v.path in self._rates_by_path
            }

        def update_step(self, gradient, variable, learning_rate):
            rate = self._rate_by_index.get(self._get_variable_index(variable))
            if rate is not None:
                learning_rate = keras.ops.cast(learning_rate, variable.dtype) * rate.scale
                if rate.steps is not None:
                    learning_rate = keras.ops.where(
                        self.iterations < rate.steps, learning_rate, 0.0
                    )
            super().update_step(gradient, variable, learning_rate)

    WithVariableRates.__name__ = f"{base.__name__}WithVariableRates"
    return WithVariableRates


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
