"""cifar10-mlops: a reproducible CIFAR-10 pipeline (DVC + Keras 3 + MLflow)."""

__version__ = "0.1.0"
