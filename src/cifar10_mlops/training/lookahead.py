"""Lookahead as airbench uses it (Zhang et al., "Lookahead Optimizer: k steps forward, 1 step
back", 2019): every `every` steps the weights are replaced by a slow average of themselves.

The slow copy moves toward the fast weights by (1 - decay), and decay grows over the run:
0 at the start (lookahead does nothing while the weights move far), 0.95**every x progress**3
later, so the last epochs average over the noise of the final steps. A resumed run starts its
slow copy again from the restored weights.
"""

from __future__ import annotations

from cifar10_mlops.core.quiet_tensorflow import keras

DECAY_PER_STEP = 0.95  # airbench's: the slow copy's memory, per training step


class Lookahead(keras.callbacks.Callback):
    def __init__(self, every: int, total_steps: int):
        super().__init__()
        self.every, self.total_steps = every, max(total_steps, 1)
        self.slow: list | None = None
        self.step = 0

    def on_train_begin(self, logs=None) -> None:
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.slow = [keras.ops.copy(v.value) for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.step += 1  # counted here: reading the optimizer's would sync JAX's state each step
        if self.step % self.every == 0 or self.step == self.total_steps:
            self.pull(min(self.step, self.total_steps))

    def pull(self, step: int) -> None:
        """slow <- decay x slow + (1 - decay) x fast; fast <- slow."""
        assert self.slow is not None
        if hasattr(self.model, "jax_state_sync"):
            # JAX trains on its own copy of the state; writing the variables back makes the
            # next step start from them.
            self.model.jax_state_sync()
        decay = DECAY_PER_STEP**self.every * (step / self.total_steps) ** 3
        for index, variable in enumerate(self.model.trainable_variables):
            slow = decay * self.slow[index] + (1.0 - decay) * variable.value
            self.slow[index] = slow
            # A copy: JAX donates the variables' buffers to the next step, which would
            # delete the slow copy if the two shared one.
            variable.assign(keras.ops.copy(slow))
