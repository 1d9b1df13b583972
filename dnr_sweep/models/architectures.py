"""The networks DNR prunes: CIFAR-style VGG16 and ResNet-18, and a small CNN for the digits demo.

Every model takes images in [0, 1] and normalises them itself with a parameter-free :class:`Normalize`
stem, so attacks work in pixel units and the data set's statistics travel in the ``state_dict``.

Conventions the pruning code relies on:

* convolutions are plain :class:`torch.nn.Conv2d` and the head is one :class:`torch.nn.Linear`;
* ``named_modules()`` yields layers in network order (normalisation stem first, head last);
* ``width`` multiplies every hidden channel count (rounded, at least 1); ``in_channels`` sets the stem.

Parameter counts at ``width=1``, 10 classes: vgg16 14,728,266 (14,724,042 without conv biases),
resnet18 11,173,962 (checked, with the 100-class counts, in ``tests/test_models.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["MODEL_NAMES", "Normalize", "get_model"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with the statistics held as buffers of shape (1, C, 1, 1).

    Buffers, not parameters: they are saved and moved with the model but never trained, never
    counted as weights and never masked. ``mean=None`` / ``std=None`` mean 0 / 1 (identity).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        mean_t = _channel_stats("mean", mean, channels, default=0.0)
        std_t = _channel_stats("std", std, channels, default=1.0)
        if not bool((std_t > 0).all()):
            raise ValueError(f"model std must be > 0 in every channel, got {std_t.flatten().tolist()}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _channel_stats(name: str, values: Sequence[float] | None, channels: int, default: float) -> torch.Tensor:
    if values is None:
        return torch.full((1, channels, 1, 1), default)
    flat = [float(v) for v in values]
    if len(flat) != channels:
        raise ValueError(
            f"model {name} has {len(flat)} values {flat} but in_channels={channels}; give one value per input channel"
        )
    return torch.tensor(flat).view(1, channels, 1, 1)


def _scaled(channels: int, width: float) -> int:
    """Hidden channel count under the width multiplier: rounded, at least 1."""
    return max(1, int(round(channels * width)))


# --------------------------------------------------------------------------------------------------
# VGG16 (CIFAR variant, as in kuangliu/pytorch-cifar)

_VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


class VGG(nn.Module):
    """VGG with 3x3 conv + BN + ReLU blocks, 2x2 max-pools, global average pool and one Linear head.

    At 32x32 input the map is already 1x1 after five pools, so the pool changes nothing there; at
    64x64 (Tiny-ImageNet) it keeps the head at ``512 * width -> num_classes``.
    """

    def __init__(
        self,
        cfg: Sequence[int | str],
        *,
        num_classes: int,
        in_channels: int,
        width: float,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        conv_bias: bool,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(in_channels, mean, std)
        layers: list[nn.Module] = []
        channels = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            out = _scaled(int(item), width)
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=conv_bias),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


# --------------------------------------------------------------------------------------------------
# ResNet-18 (CIFAR variant: 3x3 stride-1 stem, no max-pool)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity shortcut, or 1x1 conv + BN when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet built from :class:`BasicBlock` stages (planes 64, 128, 256, 512 times width)."""

    def __init__(
        self,
        blocks: Sequence[int],
        *,
        num_classes: int,
        in_channels: int,
        width: float,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(in_channels, mean, std)
        stem = _scaled(64, width)
        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        in_planes = stem
        stages: list[nn.Sequential] = []
        for i, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            planes = _scaled(planes, width)
            strides = [1 if i == 0 else 2] + [1] * (n_blocks - 1)
            stage = []
            for stride in strides:
                stage.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(torch.flatten(self.pool(x), 1))


# --------------------------------------------------------------------------------------------------
# SmallCNN (offline digits demo)


class SmallCNN(nn.Module):
    """Three 3x3 conv + BN + ReLU layers (16, 32, 64 channels times width), 2x2 max-pools after the
    2nd and 3rd, global average pool, Linear. Runs on inputs of 8x8 and larger."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        width: float,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        conv_bias: bool,
    ) -> None:
        super().__init__()
        c1, c2, c3 = (_scaled(c, width) for c in (16, 32, 64))
        self.normalize = Normalize(in_channels, mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=3, padding=1, bias=conv_bias),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1, bias=conv_bias),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1, bias=conv_bias),
            nn.BatchNorm2d(c3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


# --------------------------------------------------------------------------------------------------
# Registry

_Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, _Builder] = {}


def _register(name: str) -> Callable[[_Builder], _Builder]:
    def wrap(builder: _Builder) -> _Builder:
        if name in _REGISTRY:
            raise ValueError(f"model arch {name!r} registered twice")
        _REGISTRY[name] = builder
        return builder

    return wrap


@_register("vgg16")
def _vgg16(
    *,
    num_classes: int,
    in_channels: int,
    width: float,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    conv_bias: bool = True,
) -> nn.Module:
    """VGG16, CIFAR variant. ``conv_bias=True`` (default) matches the paper's 14.7M-weight model."""
    return VGG(
        _VGG16_CFG,
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        mean=mean,
        std=std,
        conv_bias=conv_bias,
    )


@_register("resnet18")
def _resnet18(
    *, num_classes: int, in_channels: int, width: float, mean: Sequence[float] | None, std: Sequence[float] | None
) -> nn.Module:
    """ResNet-18, CIFAR variant (no conv biases anywhere)."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, width=width, mean=mean, std=std)


@_register("smallcnn")
def _smallcnn(
    *,
    num_classes: int,
    in_channels: int,
    width: float,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    conv_bias: bool = False,
) -> nn.Module:
    """Three-conv CNN for the digits demo; conv biases off by default (BatchNorm follows each conv)."""
    return SmallCNN(
        num_classes=num_classes, in_channels=in_channels, width=width, mean=mean, std=std, conv_bias=conv_bias
    )


MODEL_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))


def get_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    width: float = 1.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build the model registered as ``name`` (one of :data:`MODEL_NAMES`).

    Args:
        name: architecture key, e.g. ``"vgg16"``.
        num_classes: size of the Linear head's output.
        in_channels: channels of the input images (stem conv input).
        width: multiplier on every hidden channel count (rounded, at least 1).
        mean, std: per-channel normalisation statistics (length ``in_channels``) applied inside the
            model; ``None`` means identity. Inputs are expected in [0, 1].
        **kwargs: architecture-specific options (``conv_bias`` for vgg16 and smallcnn).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones) or an invalid size.
        TypeError: an option the architecture does not accept.
    """
    builder = _REGISTRY.get(name)
    if builder is None:
        raise ValueError(f"unknown model arch {name!r}; valid: {', '.join(MODEL_NAMES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if not width > 0:
        raise ValueError(f"model width must be > 0, got {width!r}")
    accepted = [
        p
        for p in inspect.signature(builder).parameters
        if p not in ("num_classes", "in_channels", "width", "mean", "std")
    ]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"model arch {name!r} does not accept option(s) {unknown}; accepted: {accepted or 'none'}")
    return builder(num_classes=num_classes, in_channels=in_channels, width=float(width), mean=mean, std=std, **kwargs)
