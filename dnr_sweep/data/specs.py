"""What dnr-sweep knows about each data set, in one registry: classes, channels, native size, statistics.

The facts here are the ones code needs *without* loading the data (and, for the data sets that are
downloaded, the :class:`Archive` they come as: URL, size, checksums, what it unpacks to): config validation
(``data.dataset``), the engine (is training augmented?), the export step (input size) and the
reports. Building the splits needs torch and lives in :mod:`dnr_sweep.data.loaders`, whose builders are
keyed by the same names. Standard library only (no torch), so config validation stays light.
Anchor: open_lth ``datasets/registry.py``; :func:`get` fails loudly like timm's ``create_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class Archive:
    """The one file a data set is published as, where it unpacks to and what proves it intact.

    ``md5`` and ``size`` are the published file's (torchvision's ``tgz_md5`` for CIFAR; the MD5 that
    loaders of the official Tiny-ImageNet zip check); ``files`` are (path in ``folder``, MD5) pairs
    checked after unpacking (torchvision's ``train_list``/``test_list``/``meta`` for CIFAR);
    ``required`` are paths in ``folder`` that must exist (the structure the loader reads).
    Fetching and checking: :mod:`dnr_sweep.data.fetch`.
    """

    filename: str  # the archive's name, at its URL, on a mirror and under data.root
    url: str  # the official download address
    md5: str
    size: int  # bytes
    folder: str  # the folder the archive unpacks to, under data.root
    files: tuple[tuple[str, str], ...] = ()
    required: tuple[str, ...] = ()


_CIFAR10_ARCHIVE = Archive(
    "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a", size=170_498_071, folder="cifar-10-batches-py",
    files=(("data_batch_1", "c99cafc152244af753f735de768cd75f"), ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
           ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"), ("data_batch_4", "634d18415352ddfa80567beed471001a"),
           ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"), ("test_batch", "40351d587109b95175f43aff81a1287e"),
           ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888")),
)  # fmt: skip
_CIFAR100_ARCHIVE = Archive(
    "cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85", size=169_001_437, folder="cifar-100-python",
    files=(("train", "16019d7e3df5f24257cddd939b257f8d"), ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
           ("meta", "7973b15100ade9c7d40fb424638fde48")),
)  # fmt: skip
_TINYIMAGENET_ARCHIVE = Archive(
    "tiny-imagenet-200.zip", "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    md5="90528d7ca1a48142e341f4ef8d21d0de", size=248_100_043, folder="tiny-imagenet-200",
    required=("wnids.txt", "train", "val/images", "val/val_annotations.txt"),
)  # fmt: skip


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
    archive: Archive | None = field(default=None, repr=False)  # None: nothing to fetch (bundled or generated)


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
        archive=_CIFAR10_ARCHIVE,
    ),
    DatasetSpec(
        "cifar100", num_classes=100, in_channels=3, image_size=32,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        augmented=True, test_split="the official test set (10,000 images)", train_size=50_000, test_size=10_000,
        archive=_CIFAR100_ARCHIVE,
    ),
    DatasetSpec(
        "tinyimagenet", num_classes=200, in_channels=3, image_size=64,
        mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262),
        augmented=True, test_split="the official labelled val set (10,000 images; the test set has no labels)",
        train_size=100_000, test_size=10_000, archive=_TINYIMAGENET_ARCHIVE,
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
