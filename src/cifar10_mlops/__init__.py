"""cifar10-mlops: a reproducible CIFAR-10 pipeline (DVC + Keras 3 + MLflow)."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN notices, "no CUDA") buries the stage output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
