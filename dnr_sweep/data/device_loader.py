"""A device-resident training loader for CIFAR-sized data sets: the whole data set lives on the device.

Like KellerJordan/cifar10-airbench, :class:`DeviceLoader` keeps every image on the device once (as
``uint8`` for 8-bit data: 50,000 CIFAR images are 154 MB) and augments each batch there, so a small
model on a GPU does not wait for DataLoader workers. The augmentation is the standard CIFAR one:
a random crop with reflect padding ``pad`` (equal to torchvision's ``RandomCrop(H, padding=pad,
padding_mode="reflect")``) and a horizontal flip with probability 1/2, folded into one gather of
per-image row and column indices. Order, crops and flips draw from the loader's seeded ``generator``,
whose ``get_state()``/``set_state()`` checkpoint it.

Batches are float32 ``(B, C, H, W)`` in [0, 1] and int64 ``(B,)`` labels, on the device::

    gen = torch.Generator(device="cuda").manual_seed(0)
    plain = build_datasets("cifar10", root=root, augment=False)  # un-augmented train split
    loader = from_dataset(plain.train, torch.device("cuda"), batch_size=128, augment=True, generator=gen)
    for images, labels in loader:  # already on the GPU, augmented
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["DeviceLoader", "from_dataset", "reflect_index"]

_STACK_CHUNK = 1024  # images stacked per copy while building a DeviceLoader from a data set


def reflect_index(offsets: Tensor, size: int, pad: int) -> Tensor:
    """Source indices of a ``size``-long window starting at ``offsets`` in a reflect-padded axis.

    ``offsets`` ``(B,)`` int64 in ``[0, 2 * pad]`` index the padded axis (length ``size + 2 * pad``);
    returns ``(B, size)`` indices into the unpadded axis, with ``F.pad(mode="reflect")``'s rule
    (``-i`` below 0, ``2 * (size - 1) - i`` above ``size - 1``; the edge is not repeated).
    """
    pos = offsets[:, None] - pad + torch.arange(size, device=offsets.device)
    pos = pos.abs()  # reflect at the low edge
    return torch.where(pos > size - 1, 2 * (size - 1) - pos, pos)


def _is_8bit(images: Tensor) -> bool:
    """Whether every value is k/255 for an integer k in [0, 255] (to float32 rounding)."""
    if images.numel() == 0:
        return True
    if bool((images < 0).any()) or bool((images > 1).any()):
        return False
    scaled = images.double() * 255.0
    return bool(((scaled - scaled.round()).abs() < 1e-3).all())


class DeviceLoader:
    """Shuffled (optionally augmented) batches from a data set held entirely on one device.

    Args:
        images: ``(N, C, H, W)`` ``uint8`` (0..255) or floating point in [0, 1], on the target device.
        labels: ``(N,)`` integer class indices, on the same device.
        batch_size: images per batch (the last batch is smaller unless ``drop_last``).
        augment: random crop (reflect padding ``pad``) and horizontal flip per image and batch.
        generator: ``torch.Generator`` on the images' device for the order, crops and flips
            (default: a fresh one seeded with 0).
        shuffle: draw a new permutation every epoch (``False``: data set order).
        drop_last: drop the last incomplete batch.
        pad: reflect padding of the random crop; must be smaller than H and W.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        augment: bool = True,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        pad: int = 4,
    ) -> None:
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be (N,) with N={images.shape[0]}, got shape {tuple(labels.shape)}")
        if labels.device != images.device:
            raise ValueError(f"labels are on {labels.device} but images on {images.device}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise ValueError(f"pad must be an int >= 0, got {pad!r}")
        if augment and pad >= min(images.shape[2], images.shape[3]):
            raise ValueError(
                f"reflect padding pad={pad} must be smaller than the image ({images.shape[2]}x{images.shape[3]}); "
                "lower pad or use augment=False"
            )
        if generator is None:
            generator = torch.Generator(device=images.device).manual_seed(0)
        if generator.device.type != images.device.type:
            raise ValueError(
                f"generator is on {generator.device} but the data on {images.device}; "
                "create it with torch.Generator(device=device)"
            )
        self.images = images
        self.labels = labels.long()
        self.batch_size = batch_size
        self.augment = bool(augment)
        self.generator = generator
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.pad = pad

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def dataset_size(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        n, b = self.dataset_size, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _to_float(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(255)
        return x.float()

    def _augmented(self, idx: Tensor) -> Tensor:
        """Crop + flip of the images at ``idx`` as a single gather (no padded copy)."""
        b = idx.shape[0]
        _, c, h, w = self.images.shape
        span = 2 * self.pad + 1
        dy = torch.randint(0, span, (b,), device=self.device, generator=self.generator)
        dx = torch.randint(0, span, (b,), device=self.device, generator=self.generator)
        flip = torch.randint(0, 2, (b,), device=self.device, generator=self.generator).bool()
        rows = reflect_index(dy, h, self.pad)  # (B, H)
        cols = reflect_index(dx, w, self.pad)  # (B, W)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        channels = torch.arange(c, device=self.device)
        return self.images[
            idx[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]
        ]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.dataset_size
        if self.shuffle:
            order = torch.randperm(n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self._augmented(idx) if self.augment else self.images[idx]
            yield self._to_float(x), self.labels[idx]

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (the only thing that changes between epochs)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def from_dataset(
    dataset: Any,
    device: torch.device | str,
    batch_size: int,
    augment: bool = True,
    generator: torch.Generator | None = None,
    *,
    shuffle: bool = True,
    pad: int = 4,
) -> DeviceLoader:
    """Copy a data set of ``(CHW float tensor in [0, 1], label)`` items to ``device`` as a :class:`DeviceLoader`.

    The items must be the *un-augmented* images (a loader that augments on the device must not be
    fed already-cropped images). When every value is ``k / 255`` (8-bit data such as CIFAR after
    ``ToTensor``) the images are stored as ``uint8`` (``round(x * 255)``, exact: the batches give back
    the same float32 values); otherwise (e.g. digits' 17 grey levels) as float32.

    Args:
        dataset: indexable with ``len``; item ``i`` is ``(image, label)``.
        device: where the data set and the batches live.
        batch_size, augment, generator, shuffle, pad: see :class:`DeviceLoader`.
    """
    device = torch.device(device)
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty")
    parts: list[Tensor] = []
    labels: list[int] = []
    for start in range(0, n, _STACK_CHUNK):
        items = [dataset[i] for i in range(start, min(n, start + _STACK_CHUNK))]
        for image, _ in items:
            if not isinstance(image, Tensor) or image.dim() != 3 or not image.is_floating_point():
                raise TypeError(
                    f"dataset items must be (CHW float tensor in [0, 1], label); got image "
                    f"{type(image).__name__} {getattr(image, 'shape', '')} (apply ToTensor, no augmentation)"
                )
        parts.append(torch.stack([image for image, _ in items]))
        labels.extend(int(label) for _, label in items)
    images = torch.cat(parts)
    if _is_8bit(images):
        images = (images * 255).round_().to(torch.uint8)
    else:
        images = images.float()
    return DeviceLoader(
        images.to(device),
        torch.tensor(labels, dtype=torch.long, device=device),
        batch_size=batch_size,
        augment=augment,
        generator=generator,
        shuffle=shuffle,
        pad=pad,
    )
