"""Network architectures (``architectures``): VGG16, ResNet18 (CIFAR variants), a small CNN; input
normalisation inside the model so attacks work in [0, 1] pixel space.
"""
