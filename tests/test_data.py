"""Datasets: real on-disk formats written in miniature, split invariants, augmentation, loaders.

The CIFAR fixtures are the official python-pickle layout (``cifar-10-batches-py/data_batch_1..5``,
``test_batch``, ``batches.meta``; ``cifar-100-python/train``, ``test``, ``meta``). The official files are
Python 2 pickles whose str keys load as str under ``encoding="latin1"`` (what torchvision uses; with
``encoding="bytes"`` they show as ``b"data"``), so the miniatures pickle str keys. torchvision also checks
each file's MD5 against the official archive, which a miniature cannot match: the fixture
``cifar_md5_relaxed`` replaces ``torchvision.datasets.cifar.check_integrity`` with a check that the
file exists (torchvision's own code with ``md5=None``). Everything else runs torchvision's real loader.
The Tiny-ImageNet tree is the official layout with real JPEGs written by PIL.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar as tv_cifar
from PIL import Image
from torchvision.datasets.utils import check_integrity

from dnr_sweep.config import DataConfig
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.data.loaders import BUILDERS, DatasetNotFoundError, build_datasets, make_loaders
from dnr_sweep.data.specs import DATASET_NAMES

CIFAR10_TRAIN_PER_BATCH = 6  # 5 batches -> 30 training images
CIFAR_TEST = 8


# --------------------------------------------------------------------------------------------------
# Fixtures writing the real formats


def _planted_images(n: int, labels: list[int], rng: np.random.Generator) -> np.ndarray:
    """(n, 3072) uint8 rows of random texture whose first red pixel encodes the label (label * 2)."""
    rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    rows[:, 0] = np.asarray(labels, dtype=np.uint8) * 2
    return rows


def _pickle(path: Path, obj: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    train_rows = []
    for b in range(1, 6):
        labels = rng.integers(0, 10, size=CIFAR10_TRAIN_PER_BATCH).tolist()
        rows = _planted_images(CIFAR10_TRAIN_PER_BATCH, labels, rng)
        train_rows.append(rows)
        _pickle(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "data": rows,
                "labels": labels,
                "filenames": [f"{i}.png" for i in labels],
            },
        )
    test_labels = [i % 10 for i in range(CIFAR_TEST)]
    test_rows = _planted_images(CIFAR_TEST, test_labels, rng)
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "data": test_rows,
            "labels": test_labels,
            "filenames": ["t.png"] * CIFAR_TEST,
        },
    )
    _pickle(
        folder / "batches.meta",
        {
            "label_names": [f"class{i}" for i in range(10)],
            "num_cases_per_batch": CIFAR10_TRAIN_PER_BATCH,
            "num_vis": 3072,
        },
    )
    return {"train": np.vstack(train_rows), "test": test_rows}


def write_cifar100(root: Path, n_train: int = 20, seed: int = 1) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("test", CIFAR_TEST)):
        fine = rng.integers(0, 100, size=n).tolist()
        _pickle(
            folder / name,
            {
                "data": _planted_images(n, [f % 100 for f in fine], rng),
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                "filenames": [f"{i}.png" for i in range(n)],
            },
        )
    _pickle(
        folder / "meta",
        {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]},
    )


@pytest.fixture
def cifar_md5_relaxed(monkeypatch):
    """Keep torchvision's file checks but skip the MD5 comparison (see the module docstring)."""
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: check_integrity(fpath, None))


TINY_WNIDS = ["n03000000", "n01000000", "n02000000"]  # deliberately unsorted in wnids.txt
TINY_TRAIN_PER_CLASS = 3


def _tiny_color(label: int) -> tuple[int, int, int]:
    return (40 + 80 * label, 200 - 60 * label, 30 * label + 10)


def write_tinyimagenet(root: Path) -> None:
    """Solid-colour JPEGs (colour encodes the class index in sorted-wnid order); one is greyscale."""
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "test" / "images").mkdir(parents=True)  # unlabelled, like the official one
    (folder / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    sorted_ids = sorted(TINY_WNIDS)
    for wnid in TINY_WNIDS:
        label = sorted_ids.index(wnid)
        image_dir = folder / "train" / wnid / "images"
        image_dir.mkdir(parents=True)
        for i in range(TINY_TRAIN_PER_CLASS):
            Image.new("RGB", (64, 64), _tiny_color(label)).save(image_dir / f"{wnid}_{i}.JPEG")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for i, wnid in enumerate(["n02000000", "n01000000", "n03000000", "n01000000"]):
        label = sorted_ids.index(wnid)
        Image.new("RGB", (64, 64), _tiny_color(label)).save(folder / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    Image.new("L", (64, 64), 77).save(folder / "val" / "images" / "val_grey.JPEG")
    lines.append("val_grey.JPEG\tn02000000\t1\t2\t30\t40")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def _window_of_padded(draw: torch.Tensor, plain: torch.Tensor, pad: int) -> str | None:
    """Which crop of the reflect-padded plain image ``draw`` is: "plain", "mirrored" or None for neither.

    A horizontal flip of a crop is a crop of the padded mirror image, so both orders of crop and flip
    are covered.
    """
    size = plain.shape[-1]
    for kind, source in (("plain", plain), ("mirrored", plain.flip(-1))):
        padded = F.pad(source[None], (pad, pad, pad, pad), mode="reflect")[0]
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                if torch.equal(padded[:, dy : dy + size, dx : dx + size], draw):
                    return kind
    return None


# --------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 through torchvision's real loader


def test_cifar10_shapes_range_labels_and_planted_test_image(tmp_path, cifar_md5_relaxed):
    rows = write_cifar10(tmp_path)
    splits = build_datasets("cifar10", root=tmp_path, val_size=5, seed=0)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 3, 32)
    assert len(splits.mean) == len(splits.std) == 3
    assert (len(splits.train), len(splits.val), len(splits.test)) == (25, 5, CIFAR_TEST)
    for i in range(CIFAR_TEST):
        image, label = splits.test[i]
        expected = torch.from_numpy(rows["test"][i].reshape(3, 32, 32)).float() / 255
        assert isinstance(label, int) and label == i % 10
        assert image.dtype == torch.float32 and torch.equal(image, expected)
    for image, label in (splits.train[0], splits.val[0]):
        assert image.shape == (3, 32, 32)
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert isinstance(label, int)


def test_cifar10_val_pairs_each_image_with_its_label(tmp_path, cifar_md5_relaxed):
    rows = write_cifar10(tmp_path)
    splits = build_datasets("cifar10", root=tmp_path, val_size=10, seed=3, augment=False)
    for subset in (splits.val, splits.train):
        for position, index in enumerate(subset.indices):
            image, label = subset[position]
            expected = torch.from_numpy(rows["train"][index].reshape(3, 32, 32)).float() / 255
            assert torch.equal(image, expected)
            assert round(float(image[0, 0, 0]) * 255) == 2 * label  # the planted label pixel


def test_cifar10_train_augmentation_is_reflect_crop_and_flip(tmp_path, cifar_md5_relaxed):
    rows = write_cifar10(tmp_path)
    splits = build_datasets("cifar10", root=tmp_path, val_size=5, seed=0)
    plain_view = splits.val.dataset  # the un-augmented view of the same training source
    torch.manual_seed(0)
    index = splits.train.indices[0]
    plain, _ = plain_view[index]
    draws = [splits.train[0][0] for _ in range(12)]
    assert all(d.shape == plain.shape for d in draws)
    assert any(not torch.equal(d, plain) for d in draws)
    kinds = [_window_of_padded(d, plain, pad=4) for d in draws]
    assert None not in kinds and set(kinds) == {"plain", "mirrored"}  # crops, with and without flips
    for position, index in enumerate(splits.val.indices):  # val is never augmented
        expected = torch.from_numpy(rows["train"][index].reshape(3, 32, 32)).float() / 255
        assert torch.equal(splits.val[position][0], expected)
    unaugmented = build_datasets("cifar10", root=tmp_path, val_size=5, seed=0, augment=False)
    assert torch.equal(unaugmented.train[0][0], plain)


def test_cifar100_uses_fine_labels(tmp_path, cifar_md5_relaxed):
    write_cifar100(tmp_path)
    splits = build_datasets("cifar100", root=tmp_path, val_size=4, seed=0, augment=False)
    assert splits.num_classes == 100
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 4, CIFAR_TEST)
    for image, label in [splits.test[i] for i in range(CIFAR_TEST)] + [splits.val[i] for i in range(4)]:
        assert image.shape == (3, 32, 32)
        assert round(float(image[0, 0, 0]) * 255) == (2 * label) % 256


def test_cifar_missing_files_name_the_directory_and_the_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        build_datasets("cifar10", root=tmp_path, val_size=5)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert f"set data.download: true, or put cifar-10-batches-py under {tmp_path}" in message
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        build_datasets("cifar100", root=tmp_path, val_size=5)


def test_cifar_partial_folder_names_the_missing_file(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing data_batch_3"):
        build_datasets("cifar10", root=tmp_path, val_size=5)


def test_cifar_md5_mismatch_reports_corruption(tmp_path):
    write_cifar10(tmp_path)  # real MD5 check left on: the miniature cannot match the official sums
    with pytest.raises(DatasetNotFoundError, match="corrupted"):
        build_datasets("cifar10", root=tmp_path, val_size=5)


# --------------------------------------------------------------------------------------------------
# Tiny-ImageNet


def test_tinyimagenet_folder_layout_labels_and_test_split(tmp_path):
    write_tinyimagenet(tmp_path)
    splits = build_datasets("tinyimagenet", root=tmp_path, val_size=2, seed=0, augment=False)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (3, 3, 64)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (7, 2, 5)
    for subset in (splits.train, splits.val):
        for i in range(len(subset)):
            image, label = subset[i]
            assert image.shape == (3, 64, 64)
            expected = torch.tensor(_tiny_color(label), dtype=torch.float32).view(3, 1, 1) / 255
            assert (image - expected).abs().max() <= 3 / 255  # JPEG is lossy, solid colours nearly exact
    test_labels = [splits.test[i][1] for i in range(5)]
    assert test_labels == [1, 0, 2, 0, 1]  # annotation order; index = position in sorted wnids
    grey, _ = splits.test[4]
    assert grey.shape == (3, 64, 64) and torch.allclose(grey, torch.full_like(grey, 77 / 255), atol=3 / 255)


def test_tinyimagenet_augmentation_keeps_shape_and_range(tmp_path):
    write_tinyimagenet(tmp_path)
    folder = tmp_path / "tiny-imagenet-200" / "train" / "n01000000" / "images"
    texture = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(texture).save(folder / "n01000000_0.JPEG")  # something crops and flips can change
    splits = build_datasets("tinyimagenet", root=tmp_path, val_size=0, seed=0)
    position = 0  # sorted wnids and sorted files: n01000000_0.JPEG is the first training image
    plain, _ = splits.val.dataset[splits.train.indices[position]]
    torch.manual_seed(0)
    draws = [splits.train[position][0] for _ in range(8)]
    assert all(d.shape == (3, 64, 64) and 0 <= d.min() and d.max() <= 1 for d in draws)
    assert any(not torch.equal(d, plain) for d in draws)
    assert None not in [_window_of_padded(d, plain, pad=4) for d in draws]


def test_tinyimagenet_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        build_datasets("tinyimagenet", root=tmp_path, val_size=0)
    message = str(info.value)
    assert str(tmp_path / "tiny-imagenet-200") in message
    assert "tiny-imagenet-200.zip" in message and "unzip" in message


def test_tinyimagenet_missing_class_folder_is_named(tmp_path):
    write_tinyimagenet(tmp_path)
    images = tmp_path / "tiny-imagenet-200" / "train" / "n02000000" / "images"
    for p in images.iterdir():
        p.unlink()
    images.rmdir()
    with pytest.raises(DatasetNotFoundError, match="n02000000"):
        build_datasets("tinyimagenet", root=tmp_path, val_size=0)


# --------------------------------------------------------------------------------------------------
# Digits (scikit-learn, bundled)


def test_digits_fixed_stratified_test_split(tmp_path):
    a = build_datasets("digits", root=tmp_path, val_size=0, seed=0)
    b = build_datasets("digits", root=tmp_path, val_size=200, seed=7)
    assert (len(a.train), len(a.val), len(a.test)) == (1437, 0, 360)
    assert (len(b.train), len(b.val), len(b.test)) == (1237, 200, 360)
    assert (a.num_classes, a.in_channels, a.image_size) == (10, 1, 8)
    test_labels = [a.test[i][1] for i in range(len(a.test))]
    assert all(35 <= test_labels.count(c) <= 37 for c in range(10))  # stratified: ~36 per class
    assert all(torch.equal(a.test[i][0], b.test[i][0]) for i in range(0, 360, 17))  # seed-independent
    image = a.test[0][0]
    assert image.shape == (1, 8, 8) and 0 <= image.min() and image.max() <= 1
    assert torch.equal(image * 16, (image * 16).round())  # 17 grey levels, 0..16 -> /16


def test_digits_resize_to_32_with_three_channels(tmp_path):
    splits = build_datasets("digits", root=tmp_path, val_size=100, image_size=32, channels=3)
    assert (splits.in_channels, splits.image_size) == (3, 32)
    assert len(splits.mean) == len(splits.std) == 3
    for image, label in (splits.train[0], splits.val[0], splits.test[0]):
        assert image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
        assert 0 <= label < 10


def test_digits_train_is_not_augmented(tmp_path):
    splits = build_datasets("digits", root=tmp_path, val_size=100, seed=0)
    plain_view = splits.val.dataset
    assert torch.equal(splits.train[5][0], plain_view[splits.train.indices[5]][0])


# --------------------------------------------------------------------------------------------------
# The validation split (generic; exercised on synthetic data)


def test_val_split_is_disjoint_deterministic_and_seeded(tmp_path):
    a = build_datasets("synthetic", root=tmp_path, val_size=50, seed=0)
    again = build_datasets("synthetic", root=tmp_path, val_size=50, seed=0)
    other = build_datasets("synthetic", root=tmp_path, val_size=50, seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (206, 50, 64)
    assert set(a.train.indices).isdisjoint(a.val.indices)
    assert sorted([*a.train.indices, *a.val.indices]) == list(range(256))
    assert list(a.val.indices) == list(again.val.indices)
    assert list(a.val.indices) != list(other.val.indices)
    assert a.train.dataset.base is a.val.dataset.base  # two views of one training source


def test_val_size_zero_gives_empty_val(tmp_path):
    splits = build_datasets("synthetic", root=tmp_path, val_size=0)
    assert (len(splits.train), len(splits.val)) == (256, 0)


def test_val_size_too_large_names_field_value_and_size(tmp_path):
    with pytest.raises(ValueError) as info:
        build_datasets("synthetic", root=tmp_path, val_size=256)
    message = str(info.value)
    assert "data.val_size=256" in message and "256 images" in message and "at most 255" in message
    with pytest.raises(ValueError, match="data.val_size"):
        build_datasets("synthetic", root=tmp_path, val_size=-1)


def test_synthetic_shape_options_and_labels(tmp_path):
    splits = build_datasets("synthetic", root=tmp_path, val_size=16, image_size=8, channels=1)
    image, label = splits.test[0]
    assert image.shape == (1, 8, 8) and 0 <= image.min() and image.max() <= 1
    labels = {splits.train[i][1] for i in range(len(splits.train))}
    assert len(labels) >= 5 and labels <= set(range(10))


# --------------------------------------------------------------------------------------------------
# The dataset registry (dnr_sweep/data/specs.py) and the builders keyed by it


def test_builders_and_specs_cover_the_same_names():
    assert list(BUILDERS) == list(DATASET_NAMES) == list(dataset_specs.DATASETS)
    assert all(dataset_specs.get(name).name == name for name in DATASET_NAMES)


@pytest.mark.parametrize("name", ["mnist", "", "CIFAR10", None])
def test_registry_get_names_the_unknown_key_and_lists_the_valid_ones(name):
    with pytest.raises(ValueError) as info:
        dataset_specs.get(name)
    assert str(info.value) == f"unknown dataset {name!r}; valid: digits, cifar10, cifar100, tinyimagenet, synthetic"


def test_config_validates_data_dataset_against_the_registry():
    for name in DATASET_NAMES:
        assert DataConfig(dataset=name).dataset == name
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; valid: digits, cifar10"):
        DataConfig(dataset="svhn")


@pytest.mark.parametrize(("name", "augment"), [("digits", True), ("synthetic", True), ("synthetic", False)])
def test_spec_facts_are_what_the_builder_delivers(tmp_path, name, augment):
    """Class count, native channels and size; training augmented exactly when the spec says so."""
    spec = dataset_specs.get(name)
    splits = build_datasets(name, root=tmp_path, val_size=10, seed=0, augment=augment)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (
        spec.num_classes,
        spec.in_channels,
        spec.image_size,
    )
    assert splits.train[0][0].shape == (spec.in_channels, spec.image_size, spec.image_size)
    plain_view = splits.val.dataset
    torch.manual_seed(0)
    changed = [not torch.equal(splits.train[i][0], plain_view[splits.train.indices[i]][0]) for i in range(16)]
    assert any(changed) == (spec.augmented and augment)


def test_fixed_statistics_come_from_the_spec(tmp_path, cifar_md5_relaxed):
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    write_tinyimagenet(tmp_path)
    for name in ("cifar10", "cifar100", "tinyimagenet"):
        spec = dataset_specs.get(name)
        splits = build_datasets(name, root=tmp_path, val_size=2, seed=0)
        assert (splits.mean, splits.std) == (spec.mean, spec.std)
        assert (splits.in_channels, splits.image_size) == (spec.in_channels, spec.image_size)
    assert spec.num_classes == 200  # the official count; the miniature folder's wnids.txt lists 3
    assert splits.num_classes == 3


def test_dataset_registry_and_config_load_no_torch():
    code = (
        "import sys, dnr_sweep.data.specs, dnr_sweep.config;"
        "print(','.join(m for m in ('torch', 'torchvision', 'PIL', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match="imagenet") as info:
        build_datasets("imagenet", root=tmp_path)
    assert ", ".join(DATASET_NAMES) in str(info.value)


def test_rgb_dataset_rejects_other_channel_counts(tmp_path):
    with pytest.raises(ValueError, match="data.channels=1"):
        build_datasets("cifar10", root=tmp_path, channels=1)


# --------------------------------------------------------------------------------------------------
# Loaders


def _label_order(loader) -> list[int]:
    return [int(y) for _, ys in loader for y in ys]


def test_make_loaders_seeded_shuffle_and_batching(tmp_path):
    splits = build_datasets("synthetic", root=tmp_path, val_size=50, seed=0, augment=False)
    train, val, test = make_loaders(splits, batch_size=32, eval_batch_size=64, seed=0)
    train_again, _, _ = make_loaders(splits, batch_size=32, seed=0)
    train_other, _, _ = make_loaders(splits, batch_size=32, seed=1)
    order = _label_order(train)
    assert len(order) == 206  # drop_last=False keeps the partial batch
    assert [len(y) for _, y in train][-1] == 206 - 6 * 32
    assert order == _label_order(train_again)
    assert order != _label_order(train_other)
    assert order != [splits.train[i][1] for i in range(206)]  # shuffled
    assert _label_order(val) == [splits.val[i][1] for i in range(50)]  # not shuffled
    assert (val.batch_size, test.batch_size) == (64, 64)
    x, y = next(iter(test))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert train.pin_memory == torch.cuda.is_available()
    assert not train.persistent_workers and train.num_workers == 0


def test_make_loaders_empty_val_and_bad_batch_size(tmp_path):
    splits = build_datasets("synthetic", root=tmp_path, val_size=0)
    _, val, _ = make_loaders(splits, batch_size=16)
    assert len(val) == 0 and list(val) == []
    with pytest.raises(ValueError, match="batch_size"):
        make_loaders(splits, batch_size=0)


def test_worker_augmentation_is_reproducible_from_the_seed(tmp_path):
    splits = build_datasets("synthetic", root=tmp_path, val_size=50, seed=0)

    def first_epoch(seed: int) -> list[torch.Tensor]:
        train, _, _ = make_loaders(splits, batch_size=64, num_workers=1, seed=seed)
        assert train.persistent_workers
        return [x for x, _ in train]

    a, b = first_epoch(0), first_epoch(0)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
