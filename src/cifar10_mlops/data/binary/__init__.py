"""The official CIFAR-10 binary layout: cifar-10-binary.tar.gz and its cifar-10-batches-bin/."""
