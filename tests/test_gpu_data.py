"""The device-resident loader (dnr_sweep.data.device_loader), on the CPU device: same crops as torchvision's
RandomCrop(reflect) + RandomHorizontalFlip, every example once per epoch, reproducible."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dnr_sweep.data.device_loader import DeviceLoader, from_dataset, reflect_index

PAD = 4


def _dataset(n: int = 40, c: int = 3, h: int = 12, w: int = 10, eight_bit: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if eight_bit:
        images = torch.randint(0, 256, (n, c, h, w), generator=g).float() / 255  # what ToTensor gives
    else:
        images = torch.rand(n, c, h, w, generator=g)
    labels = torch.arange(n) % 7
    return [(images[i], int(labels[i])) for i in range(n)], images, labels


def _windows(image: torch.Tensor) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every (dy, dx, flipped) window of the reflect-padded image and of its mirror (brute force)."""
    h, w = image.shape[1:]
    padded = F.pad(image[None], (PAD,) * 4, mode="reflect")[0]
    out = {}
    for dy in range(2 * PAD + 1):
        for dx in range(2 * PAD + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out[(dy, dx, False)] = crop
            out[(dy, dx, True)] = crop.flip(-1)
    return out


def _match(item: torch.Tensor, image: torch.Tensor) -> list[tuple[int, int, bool]]:
    return [key for key, win in _windows(image).items() if torch.equal(win, item)]


def test_reflect_index_matches_f_pad():
    x = torch.arange(9.0)
    padded = F.pad(x[None, None], (PAD, PAD), mode="reflect")[0, 0]
    offsets = torch.arange(2 * PAD + 1)
    idx = reflect_index(offsets, 9, PAD)
    for o in offsets.tolist():
        assert torch.equal(x[idx[o]], padded[o : o + 9])


def test_augmented_items_are_windows_of_the_padded_original_or_its_mirror():
    items, images, labels = _dataset(n=24)
    loader = from_dataset(items, "cpu", batch_size=8, augment=True, generator=torch.Generator().manual_seed(1))
    assert loader.images.dtype == torch.uint8  # 8-bit data stored exactly as bytes
    # identify each batch item's source through its label and brute-force window match
    seen_flips, seen_dy, seen_dx = set(), set(), set()
    for _ in range(6):
        for batch, target in loader:
            assert batch.dtype == torch.float32 and batch.shape[1:] == images.shape[1:]
            for item, t in zip(batch, target, strict=True):
                candidates = [i for i in range(len(items)) if labels[i] == t]
                hits = [(i, k) for i in candidates for k in _match(item, images[i])]
                assert hits, "augmented item is not a window of any padded original or its mirror"
                for _, (dy, dx, flipped) in hits:
                    seen_flips.add(flipped)
                    seen_dy.add(dy)
                    seen_dx.add(dx)
    assert seen_flips == {False, True}
    assert seen_dy == set(range(2 * PAD + 1)) and seen_dx == set(range(2 * PAD + 1))


def test_all_crop_offsets_and_flips_occur_with_exact_draws():
    # one image, 900 draws: identify the (dy, dx, flip) of each draw uniquely (a random image has
    # distinct windows), and check every offset in [0, 8] and both flips occur
    items, images, _ = _dataset(n=1, h=16, w=16)
    windows = _windows(images[0])
    assert len({tuple(v.flatten().tolist()) for v in windows.values()}) == len(windows)
    loader = from_dataset(items, "cpu", batch_size=1, augment=True, generator=torch.Generator().manual_seed(2))
    counts: dict[tuple[int, int, bool], int] = {}
    for _ in range(900):
        ((batch, _),) = list(loader)
        (key,) = _match(batch[0], images[0])
        counts[key] = counts.get(key, 0) + 1
    assert {k[0] for k in counts} == set(range(9)) and {k[1] for k in counts} == set(range(9))
    assert {k[2] for k in counts} == {False, True}
    flipped = sum(v for k, v in counts.items() if k[2])
    assert 350 < flipped < 550  # p = 1/2; 900 draws: 6.7 sigma either side


def test_no_augmentation_gives_the_originals_exactly():
    for eight_bit in (True, False):
        items, images, labels = _dataset(eight_bit=eight_bit)
        loader = from_dataset(items, "cpu", batch_size=16, augment=False, shuffle=False)
        assert loader.images.dtype == (torch.uint8 if eight_bit else torch.float32)
        got = torch.cat([x for x, _ in loader])
        got_labels = torch.cat([t for _, t in loader])
        assert torch.equal(got, images)  # bit-exact, also after the uint8 round trip
        assert torch.equal(got_labels, labels)


def test_an_epoch_covers_every_example_once():
    items, images, labels = _dataset(n=37)
    loader = from_dataset(items, "cpu", batch_size=8, augment=False, generator=torch.Generator().manual_seed(3))
    assert len(loader) == 5
    batches = list(loader)
    assert [len(t) for _, t in batches] == [8, 8, 8, 8, 5]
    flat = torch.cat([x for x, _ in batches]).flatten(1)
    # map every yielded image back to its index (random images are distinct)
    index = [int(torch.nonzero((images.flatten(1) == row).all(1)).item()) for row in flat]
    assert sorted(index) == list(range(37)) and index != list(range(37))  # shuffled
    assert torch.equal(torch.cat([t for _, t in batches]), labels[index])
    drop = DeviceLoader(loader.images, loader.labels, batch_size=8, drop_last=True)
    assert len(drop) == 4 and [len(t) for _, t in drop] == [8] * 4


def test_seeded_generator_reproduces_epochs_and_state_round_trips():
    items, _, _ = _dataset()

    def epochs(seed: int, k: int = 2):
        loader = from_dataset(items, "cpu", batch_size=16, generator=torch.Generator().manual_seed(seed))
        return [[x for x, _ in loader] for _ in range(k)]

    a, b, c = epochs(5), epochs(5), epochs(6)
    assert all(torch.equal(x, y) for ea, eb in zip(a, b, strict=True) for x, y in zip(ea, eb, strict=True))
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])  # a new order and new crops every epoch

    loader = from_dataset(items, "cpu", batch_size=16, generator=torch.Generator().manual_seed(5))
    list(loader)
    state = loader.state_dict()
    second = [x for x, _ in loader]
    loader.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(second, [x for x, _ in loader], strict=True))
    assert all(torch.equal(x, y) for x, y in zip(second, a[1], strict=True))


def test_bad_inputs_raise():
    items, images, labels = _dataset(n=4, h=4, w=4)
    with pytest.raises(ValueError, match="reflect padding"):
        from_dataset(items, "cpu", batch_size=2, augment=True)
    from_dataset(items, "cpu", batch_size=2, augment=False)  # no crop: small images are fine
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(images, labels, batch_size=0)
    with pytest.raises(ValueError, match="labels"):
        DeviceLoader(images, labels[:3], batch_size=2)
    with pytest.raises(TypeError, match="CHW float"):
        from_dataset([(torch.zeros(3, 8, 8, dtype=torch.uint8), 0)], "cpu", batch_size=1)
    with pytest.raises(ValueError, match="empty"):
        from_dataset([], "cpu", batch_size=1)
