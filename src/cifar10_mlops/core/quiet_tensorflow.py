"""Keras, imported with TensorFlow's C++ start-up lines kept off stderr.

TensorFlow writes oneDNN notices, "could not find cuda drivers" and a failed cuInit through
absl before its logging is configured, so TF_CPP_MIN_LOG_LEVEL does not stop them; they would
sit above every one-line error a stage prints. Importing TensorFlow and initialising its
devices with file descriptor 2 pointed at /dev/null silences exactly that start-up; Python
exceptions and everything logged afterwards are untouched. Modules import Keras from here:

    from cifar10_mlops.core.quiet_tensorflow import keras
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _import_quietly():
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras

        # Only the TensorFlow backend needs TensorFlow: the benchmarks run the same model code
        # under JAX on machines without it (KERAS_BACKEND=jax).
        if keras.backend.backend() == "tensorflow":
            import tensorflow

            tensorflow.config.list_physical_devices()  # the cuInit attempt happens here
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
    return keras


keras: Any = _import_quietly()  # Keras has no type stubs
