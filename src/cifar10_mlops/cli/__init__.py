"""The `cifar10-mlops` command: predict, gate, preset."""
