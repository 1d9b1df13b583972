"""What dnr-sweep knows about each data set, in one registry: classes, channels, native size, statistics.

The facts here are the ones code needs *without* loading the data: config validation
(``data.dataset``), the engine (is training augmented?), the export step (input size) and the
reports. Building the splits needs torch and lives in :mod:`dnr_sweep.data.loaders`, whose builders are
keyed by the same names. Standard library only (no torch), so config validation stays light.
Anchor: open_lth ``datasets/registry.py``; :func:`get` fails loudly like timm's ``create_model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class DatasetSpec:
    """One data set's facts. Images are in [0, 1]; ``data.image_size``/``data.channels`` may change them."""

    name: str
    num_classes: int  # of the official data set (a Tiny-ImageNet folder's wnids.txt decides at build time)
    in_channels: int  # native channels (digits: 1, ``data.channels: 3`` replicates them)
    image_size: int  # native side length in pixels (square images)
    mean: tuple[float, ...] | None  # per-channel training-set mean; None: computed from the images at build time
    std: tuple[float, ...] | None  # per-channel training-set std; None: as ``mean``
    augmented: bool  # training images get the paper's reflect-pad random crop + horizontal flip
    test_split: str  # what the test split is
    train_size: int  # images of the training source (the validation split is held out of it)
    test_size: int  # images of the test split
    channel_options: tuple[int, ...] = (3,)  # what ``data.channels`` may be (besides unset)


_SPECS: Final[tuple[DatasetSpec, ...]] = (
    DatasetSpec(
        "digits", num_classes=10, in_channels=1, image_size=8, mean=None, std=None,
        # digits are not flip-invariant and an 8x8 crop shift moves a large part of the glyph
        augmented=False,
        test_split="scikit-learn's bundled 8x8 digits: a fixed stratified 20% (360 of 1,797 images, seed 0)",
        train_size=1437, test_size=360, channel_options=(1, 3),
    ),
    DatasetSpec(
        "cifar10", num_classes=10, in_channels=3, image_size=32,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        augmented=True, test_split="the official test batch (10,000 images)", train_size=50_000, test_size=10_000,
    ),
    DatasetSpec(
        "cifar100", num_classes=100, in_channels=3, image_size=32,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        augmented=True, test_split="the official test set (10,000 images)", train_size=50_000, test_size=10_000,
    ),
    DatasetSpec(
        "tinyimagenet", num_classes=200, in_channels=3, image_size=64,
        mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262),
        augmented=True, test_split="the official labelled val set (10,000 images; the test set has no labels)",
        train_size=100_000, test_size=10_000,
    ),
    DatasetSpec(
        "synthetic", num_classes=10, in_channels=3, image_size=32, mean=None, std=None,
        augmented=True, test_split="64 seeded random images, labelled by a fixed random linear projection",
        train_size=256, test_size=64, channel_options=(1, 3),
    ),
)  # fmt: skip

#: every data set by name, in the order the docs list them
DATASETS: Final = MappingProxyType({spec.name: spec for spec in _SPECS})
DATASET_NAMES: Final[tuple[str, ...]] = tuple(DATASETS)


def get(name: str) -> DatasetSpec:
    """The spec of data set ``name``; ``ValueError`` naming it and listing the valid names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable value
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_NAMES)}") from None
