"""The network: a backbone (ResNet50, VGG16, a CIFAR ResNet) with a head, taking uint8 images."""
