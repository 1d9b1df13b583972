"""Data sets: their facts (``specs``: image size, classes, files), the loaders and train/val/test split
(``loaders``), and a device-resident loader for GPUs (``device_loader``).
"""
