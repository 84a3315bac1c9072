"""cifar10-mlops: a reproducible CIFAR-10 pipeline (DVC + Keras 3 + MLflow)."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN notices, "no CUDA") buries the stage output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512-VNNI, AVX512-BF16 or
# AMX; elsewhere (an AVX2 CPU such as CI's) it falls back to Eigen kernels that train ResNet50
# 3.9x slower (16.8 vs 64.8 images/s, benchmarks/training_throughput.py). Same results run to
# run either way (tested with op determinism); TF_ENABLE_ONEDNN_OPTS=0 still opts out.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
