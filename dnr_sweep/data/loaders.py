"""Datasets for DNR runs: train / validation / test splits of images in [0, 1] with integer labels.

Every item is ``(image, label)``: a float tensor (C, H, W) in [0, 1] and an int. Normalisation is left
to the model (:func:`dnr_sweep.models.architectures.get_model`), so attacks work in pixel space.

* ``digits``: scikit-learn's bundled 8x8 digits (offline); a fixed stratified 20 % test split; no
  augmentation (digits are not flip-invariant).
* ``cifar10`` / ``cifar100``: torchvision's loaders; the paper's crop (4-pixel reflect padding) and flip.
* ``tinyimagenet``: the official folder; its labelled ``val`` set is the test split. CIFAR's augmentation.
* ``synthetic``: seeded random images for tests, labelled by a fixed random projection.

The validation split holds ``val_size`` training images out by a seeded permutation, unaugmented.
Facts per data set: :mod:`.specs`; a new data set adds one builder to :data:`BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.data.images import open_rgb
from dnr_sweep.data.specs import DatasetSpec
from dnr_sweep.foundation.errors import DatasetNotFoundError

__all__ = [
    "BUILDERS",
    "DataSplits",
    "DatasetNotFoundError",
    "TinyImageNetFolder",
    "build_datasets",
    "check_available",
    "make_loaders",
]

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # the digits test split never moves with `seed`
SYNTHETIC_SEED = 0  # the synthetic images never move with `seed` either; only the val split does

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@dataclass(frozen=True)
class DataSplits:
    """The three splits of one dataset plus what a model needs to know about its inputs."""

    train: Dataset  # augmented (when augment=True and the dataset has augmentation)
    val: Dataset  # held out of the training source, never augmented; empty when val_size=0
    test: Dataset  # never augmented
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]  # per-channel normalisation statistics for the model, [0, 1] units
    std: tuple[float, ...]


# --------------------------------------------------------------------------------------------------
# Small dataset building blocks


class _TensorImages(Dataset):
    """Images already held as a float tensor (N, C, H, W) in [0, 1], with int labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class _View(Dataset):
    """``base`` with ``transform`` applied to each image; lets an augmented and a plain view share data."""

    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor] | None) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(label)


class TinyImageNetFolder(Dataset):
    """The official ``tiny-imagenet-200`` layout, split ``"train"`` or ``"val"``; items are (PIL RGB, int).

    Class index = position of the wnid in the sorted contents of ``wnids.txt``. Training images are
    ``train/<wnid>/images/*.JPEG``; validation images are ``val/images/*`` labelled by
    ``val/val_annotations.txt`` (tab-separated: filename, wnid, four bounding-box ints).
    """

    def __init__(self, folder: str | Path, split: str) -> None:
        self.folder = Path(folder)
        wnids_file = self.folder / "wnids.txt"
        self.classes = sorted(line.strip() for line in wnids_file.read_text().splitlines() if line.strip())
        if not self.classes:
            raise ValueError(f"{wnids_file} lists no class ids")
        self.class_to_idx = {wnid: i for i, wnid in enumerate(self.classes)}
        if split == "train":
            self.samples = self._train_samples()
        elif split == "val":
            self.samples = self._val_samples()
        else:
            raise ValueError(f"TinyImageNetFolder split must be 'train' or 'val', got {split!r}")

    def _train_samples(self) -> list[tuple[Path, int]]:
        samples = []
        for wnid in self.classes:
            image_dir = self.folder / "train" / wnid / "images"
            if not image_dir.is_dir():
                raise DatasetNotFoundError(
                    f"Tiny-ImageNet is incomplete: {image_dir} is missing (class {wnid} of wnids.txt). "
                    f"Re-download {TINYIMAGENET_URL} and unzip it under {self.folder.parent}"
                )
            files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
            samples += [(p, self.class_to_idx[wnid]) for p in files]
        return samples

    def _val_samples(self) -> list[tuple[Path, int]]:
        annotations = self.folder / "val" / "val_annotations.txt"
        samples = []
        for lineno, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in self.class_to_idx:
                raise ValueError(
                    f"{annotations} line {lineno}: expected 'filename<TAB>wnid<TAB>...' "
                    f"with a wnid from wnids.txt, got {line!r}"
                )
            samples.append((self.folder / "val" / "images" / fields[0], self.class_to_idx[fields[1]]))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        return open_rgb(path, folder=self.folder), label  # a damaged file: ImageDecodeError naming it


# --------------------------------------------------------------------------------------------------
# Per-dataset builders: each returns a _Source (untransformed train and test data, the plain and the
# augmented transform, and the input description) from the dataset's spec and the data.* options.
# The train/val split is done once, generically.


@dataclass(frozen=True)
class _Source:
    train: Dataset  # training source before transforms (items: PIL image or tensor, int)
    test: Dataset  # test source before transforms
    plain: Callable[[Any], torch.Tensor] | None
    augmented: Callable[[Any], torch.Tensor] | None
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _pil_transforms(native: int, image_size: int | None) -> tuple[Callable, Callable, int]:
    """Plain and augmented PIL -> tensor transforms (the paper's reflect-pad crop + flip)."""
    size = native if image_size is None else image_size
    resize = [] if size == native else [transforms.Resize((size, size))]
    plain = transforms.Compose([*resize, transforms.ToTensor()])
    augmented = transforms.Compose(
        [
            *resize,
            transforms.RandomCrop(size, padding=4, padding_mode="reflect"),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ]
    )
    return plain, augmented, size


def _rgb_only(dataset: str, channels: int | None) -> None:
    if channels not in (None, 3):
        raise ValueError(
            f"data.channels={channels} is not supported for {dataset} (RGB images); "
            f"leave data.channels unset or set it to 3"
        )


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"data.image_size must be a positive int or null, got {image_size!r}")


def _torchvision_cifar(spec: DatasetSpec) -> type:
    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[spec.name]


def _check_cifar_files(spec: DatasetSpec, root: Path, download: bool) -> None:
    dataset = spec.name
    cls = _torchvision_cifar(spec)
    folder = root / cls.base_folder
    needed = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:  # loaders never download: dnr_sweep.data.fetch does, before anything trains
        what = f"is missing {', '.join(missing)}" if folder.is_dir() else "does not exist"
        raise DatasetNotFoundError(
            f"{dataset} not found: {folder} {what}. Fix: set data.download: true, "
            f"or put {cls.base_folder} under {root} (unpacked from {cls.url}), or run "
            f"`dnr-sweep data fetch {dataset} --root {root}`"
        )
    data_fetch.check_present(spec, root)  # sizes as verified (milliseconds)


def _check_tinyimagenet_files(spec: DatasetSpec, root: Path, download: bool) -> None:
    folder = root / "tiny-imagenet-200"
    needed = [folder / "wnids.txt", folder / "train", folder / "val" / "images", folder / "val" / "val_annotations.txt"]
    missing = [str(p.relative_to(folder)) for p in needed if not p.exists()]
    if missing:
        what = f"is missing {', '.join(missing)}" if folder.is_dir() else "does not exist"
        raise DatasetNotFoundError(
            f"tinyimagenet not found: {folder} {what}. Fix: run `dnr-sweep data fetch tinyimagenet --root {root}` "
            f"(or set data.download: true), or download {TINYIMAGENET_URL} and unzip it under {root}, so that "
            f"{folder / 'wnids.txt'} exists"
        )
    data_fetch.check_present(spec, root)


def check_available(dataset: str, *, root: str | Path, download: bool = False) -> None:
    """Fail fast when a data set's files are not under ``root`` (what a trial checks before it opens
    them; fetching is :func:`dnr_sweep.data.fetch.ensure`'s, before anything trains).

    Raises:
        DatasetNotFoundError: the files are not under ``root`` (the message says how to fix it).
        InputFileError: a file changed size since it was verified.
    """
    spec = dataset_specs.get(dataset)
    check_files = BUILDERS[spec.name].check_files
    if check_files is not None:
        check_files(spec, Path(root).expanduser(), download)


def _cifar(spec: DatasetSpec, root: Path, download: bool, image_size: int | None, channels: int | None) -> _Source:
    dataset = spec.name
    cls = _torchvision_cifar(spec)
    _rgb_only(dataset, channels)
    folder = root / cls.base_folder
    _check_cifar_files(spec, root, download)
    try:
        train = cls(str(root), train=True, download=False)  # fetched before training, never here
        test = cls(str(root), train=False, download=False)
    except RuntimeError as err:  # torchvision's MD5 check failed
        raise DatasetNotFoundError(
            f"{dataset} files under {folder} are corrupted or incomplete ({err}). Fix: move {folder} away "
            f"(or delete it) and run `dnr-sweep data fetch {dataset} --root {root}` (or set data.download: true)"
        ) from err
    plain, augmented, size = _pil_transforms(spec.image_size, image_size)
    return _Source(train, test, plain, augmented, len(train.classes), spec.in_channels, size, *_stats(spec))


def _tinyimagenet(
    spec: DatasetSpec, root: Path, download: bool, image_size: int | None, channels: int | None
) -> _Source:
    _rgb_only(spec.name, channels)
    folder = root / "tiny-imagenet-200"
    _check_tinyimagenet_files(spec, root, download)
    train = TinyImageNetFolder(folder, "train")
    test = TinyImageNetFolder(folder, "val")
    plain, augmented, size = _pil_transforms(spec.image_size, image_size)
    return _Source(train, test, plain, augmented, len(train.classes), spec.in_channels, size, *_stats(spec))


def _stats(spec: DatasetSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The spec's fixed per-channel mean and std (datasets whose statistics are known in advance)."""
    if spec.mean is None or spec.std is None:
        raise ValueError(f"dataset {spec.name!r} has no fixed statistics; compute them from its images")
    return spec.mean, spec.std


def _tensor_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of (N, C, H, W) images; std floored so normalisation never divides by 0."""
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def _shape_tensor_images(images: torch.Tensor, image_size: int, channels: int, dataset: str) -> torch.Tensor:
    """Resize (bilinear) and replicate a single grey channel; keeps values in [0, 1]."""
    if images.shape[-1] != image_size:
        images = F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=False
        ).clamp_(0.0, 1.0)
    if channels != images.shape[1]:
        if images.shape[1] != 1:
            raise ValueError(f"data.channels={channels} is not supported for {dataset}")
        images = images.expand(-1, channels, -1, -1).contiguous()
    return images


def _digits(spec: DatasetSpec, root: Path, download: bool, image_size: int | None, channels: int | None) -> _Source:
    # lazy: scikit-learn takes seconds to import and only digits (bundled with it: no download) needs it
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if channels not in (None, 1, 3):
        raise ValueError(
            f"data.channels={channels} is not supported for digits; use 1 (native grey) "
            f"or 3 (grey replicated, for the CIFAR models)"
        )
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 0..16 -> [0, 1]
    labels = torch.tensor(bunch.target, dtype=torch.long)
    pool_idx, test_idx = train_test_split(
        list(range(len(labels))), test_size=DIGITS_TEST_FRACTION, stratify=bunch.target, random_state=DIGITS_SPLIT_SEED
    )
    size, ch = image_size or spec.image_size, channels or spec.in_channels
    images = _shape_tensor_images(images, size, ch, spec.name)
    pool_idx, test_idx = sorted(pool_idx), sorted(test_idx)
    pool = _TensorImages(images[pool_idx], labels[pool_idx])
    test = _TensorImages(images[test_idx], labels[test_idx])
    mean, std = _tensor_stats(pool.images)
    return _Source(pool, test, None, None, spec.num_classes, ch, size, mean, std)


def _synthetic(spec: DatasetSpec, root: Path, download: bool, image_size: int | None, channels: int | None) -> _Source:
    size, ch = image_size or spec.image_size, channels or spec.in_channels
    if ch < 1:
        raise ValueError(f"data.channels must be >= 1, got {ch}")
    gen = torch.Generator().manual_seed(SYNTHETIC_SEED)
    n_train, n_test = spec.train_size, spec.test_size
    images = torch.rand(n_train + n_test, ch, size, size, generator=gen)
    projection = torch.randn(ch * size * size, spec.num_classes, generator=gen)
    labels = ((images - 0.5).flatten(1) @ projection).argmax(dim=1)
    train = _TensorImages(images[:n_train], labels[:n_train])
    test = _TensorImages(images[n_train:], labels[n_train:])
    pad = min(4, max(1, size // 8))  # reflect padding must be smaller than the image
    augmented = transforms.Compose(
        [
            transforms.RandomCrop(size, padding=pad, padding_mode="reflect"),
            transforms.RandomHorizontalFlip(),
        ]
    )
    mean, std = _tensor_stats(train.images)
    return _Source(train, test, None, augmented, spec.num_classes, ch, size, mean, std)


@dataclass(frozen=True)
class Builder:
    """How to build one dataset: ``build(spec, root, download, image_size, channels)`` and, for data
    sets read from files, ``check_files(spec, root, download)`` (fails fast when they are missing)."""

    build: Callable[[DatasetSpec, Path, bool, int | None, int | None], _Source]
    check_files: Callable[[DatasetSpec, Path, bool], None] | None = None


#: the builder of every dataset of :data:`dnr_sweep.data.specs.DATASETS`, by the same name
BUILDERS: dict[str, Builder] = {
    "digits": Builder(_digits),
    "cifar10": Builder(_cifar, _check_cifar_files),
    "cifar100": Builder(_cifar, _check_cifar_files),
    "tinyimagenet": Builder(_tinyimagenet, _check_tinyimagenet_files),
    "synthetic": Builder(_synthetic),
}


# --------------------------------------------------------------------------------------------------
# Public API


def _split_indices(n: int, val_size: int, seed: int, dataset: str) -> tuple[list[int], list[int]]:
    """(train, val) indices into a training source of ``n`` items; val is ``val_size`` of a seeded permutation."""
    if val_size >= n:
        raise ValueError(
            f"data.val_size={val_size} is not smaller than the {dataset} training set ({n} images). "
            f"Fix: set data.val_size to at most {n - 1}, or to 0 to evaluate on the test split only"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[val_size:]), sorted(perm[:val_size])


def build_datasets(
    dataset: str,
    *,
    root: str | Path,
    download: bool = False,
    val_size: int = 5000,
    seed: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
    augment: bool = True,
) -> DataSplits:
    """Build the train / val / test splits of ``dataset`` (a name of :mod:`dnr_sweep.data.specs`).

    Args:
        dataset: dataset name.
        root: directory holding the dataset files (``~`` is expanded); unused by digits and synthetic.
        download: unused: loaders never download (:func:`dnr_sweep.data.fetch.ensure` fetches before
            training, on the driver or once per node); kept so callers' configs pass through.
        val_size: number of training images held out (un-augmented) as the validation split; 0 for none.
        seed: seeds the validation permutation (the test split never depends on it).
        image_size: resize images to this square size (default: the spec's native size; digits 8,
            synthetic 32, CIFAR 32, Tiny-ImageNet 64).
        channels: digits: 1 or 3 (grey replicated); synthetic: any; RGB datasets: only 3.
        augment: apply the dataset's training augmentation to the train split (when its spec has one).

    Raises:
        ValueError: unknown dataset, bad ``val_size``/``image_size``/``channels``.
        DatasetNotFoundError: the dataset's files are not under ``root`` (the message says how to fix it).
    """
    spec = dataset_specs.get(dataset)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 0:
        raise ValueError(f"data.val_size must be an int >= 0, got {val_size!r}")
    _check_image_size(image_size)
    root = Path(root).expanduser()

    source = BUILDERS[spec.name].build(spec, root, download, image_size, channels)

    train_idx, val_idx = _split_indices(len(source.train), val_size, seed, dataset)  # type: ignore[arg-type]
    plain_view = _View(source.train, source.plain)
    train_view = _View(source.train, source.augmented) if augment and spec.augmented else plain_view
    return DataSplits(
        train=Subset(train_view, train_idx),
        val=Subset(plain_view, val_idx),
        test=_View(source.test, source.plain),
        num_classes=source.num_classes,
        in_channels=source.in_channels,
        image_size=source.image_size,
        mean=tuple(source.mean),
        std=tuple(source.std),
    )


def make_loaders(
    splits: DataSplits, *, batch_size: int, eval_batch_size: int | None = None, num_workers: int = 0, seed: int = 0
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, val and test loaders.

    The train loader shuffles with a ``torch.Generator`` seeded by ``seed`` and keeps the last partial
    batch; with ``num_workers > 0`` the same generator also seeds the workers' augmentation RNG. With
    ``num_workers=0`` augmentation draws from the global torch RNG, so seed that for repeatable crops.
    ``eval_batch_size`` (default ``batch_size``) sizes the un-shuffled val and test loaders.
    """
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"train.{name} must be a positive int, got {value!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    common: dict[str, Any] = {
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": torch.cuda.is_available(),
    }
    train = DataLoader(
        splits.train,
        batch_size=batch_size,
        shuffle=True,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),
        **common,
    )
    val = DataLoader(splits.val, batch_size=eval_batch_size, shuffle=False, **common)
    test = DataLoader(splits.test, batch_size=eval_batch_size, shuffle=False, **common)
    return train, val, test
