"""Model zoo: exact parameter counts, shapes at every input size used, width, normalisation, registry."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dnr_sweep.models.architectures import MODEL_NAMES, Normalize, get_model

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "num_classes", "kwargs", "expected"),
    [
        ("vgg16", 10, {}, 14_728_266),
        ("vgg16", 10, {"conv_bias": False}, 14_724_042),
        ("vgg16", 100, {}, 14_774_436),
        ("resnet18", 10, {}, 11_173_962),
        ("resnet18", 100, {}, 11_220_132),
    ],
)
def test_parameter_counts_match_reference_architectures(name, num_classes, kwargs, expected):
    assert n_params(get_model(name, num_classes=num_classes, **kwargs)) == expected


@pytest.mark.parametrize("name", ["vgg16", "resnet18"])
@pytest.mark.parametrize(("size", "num_classes"), [(32, 10), (64, 200)])
def test_cifar_models_output_shape_at_32_and_64(name, size, num_classes):
    model = get_model(name, num_classes=num_classes, width=0.25).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


def test_full_width_vgg16_head_is_512_to_classes_at_64x64():
    model = get_model("vgg16", num_classes=200).eval()
    assert (model.classifier.in_features, model.classifier.out_features) == (512, 200)
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 200)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [8, 32])
def test_smallcnn_runs_on_8x8_and_32x32(in_channels, size):
    model = get_model("smallcnn", num_classes=10, in_channels=in_channels).eval()
    with torch.no_grad():
        assert model(torch.rand(2, in_channels, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_width_quarter_shrinks_every_hidden_layer(name):
    full = get_model(name, num_classes=10)
    quarter = get_model(name, num_classes=10, width=0.25)
    assert n_params(quarter) < n_params(full) / 8  # conv weights scale with width**2
    full_convs = [m for m in full.modules() if isinstance(m, nn.Conv2d)]
    quarter_convs = [m for m in quarter.modules() if isinstance(m, nn.Conv2d)]
    assert len(full_convs) == len(quarter_convs)
    for f, q in zip(full_convs, quarter_convs, strict=True):
        assert q.out_channels == max(1, round(f.out_channels * 0.25))
    with torch.no_grad():
        assert quarter.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_tiny_width_rounds_to_at_least_one_channel():
    model = get_model("smallcnn", num_classes=3, width=0.01, in_channels=1).eval()
    assert all(m.out_channels >= 1 for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_in_channels_sets_the_stem(name):
    model = get_model(name, num_classes=10, in_channels=1, width=0.25)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_modules_in_network_order_with_plain_conv_and_linear(name):
    model = get_model(name, num_classes=10, width=0.25)
    layers = [m for _, m in model.named_modules() if isinstance(m, Normalize | nn.Conv2d | nn.Linear)]
    assert isinstance(layers[0], Normalize)
    assert isinstance(layers[-1], nn.Linear)
    assert sum(isinstance(m, nn.Linear) for m in layers) == 1
    assert all(type(m) is nn.Conv2d for m in layers[1:-1])


def test_normalisation_is_buffers_not_parameters():
    plain = get_model("resnet18", num_classes=10, width=0.25)
    normed = get_model("resnet18", num_classes=10, width=0.25, mean=CIFAR_MEAN, std=CIFAR_STD)
    assert n_params(plain) == n_params(normed)
    buffers = dict(normed.named_buffers())
    assert buffers["normalize.mean"].shape == (1, 3, 1, 1)
    assert torch.allclose(buffers["normalize.std"].flatten(), torch.tensor(CIFAR_STD))
    assert not any(name.startswith("normalize") for name, _ in normed.named_parameters())
    assert "normalize.mean" in normed.state_dict()  # travels with checkpoints


def test_default_normalisation_is_identity():
    norm = Normalize(3)
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(norm(x), x)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_applies_mean_std_before_the_network(name):
    torch.manual_seed(0)
    normed = get_model(name, num_classes=10, width=0.25, mean=CIFAR_MEAN, std=CIFAR_STD)
    # Calibrate BatchNorm running stats first (momentum None: a plain average over the one batch).
    # With the init stats (0, 1) a fresh deep network's activations shrink layer by layer until its
    # output no longer depends on the input, and the "statistics matter" check could not see anything.
    for module in normed.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        normed.train()(torch.rand(16, 3, 32, 32))
    normed.eval()
    identity = copy.deepcopy(normed)
    identity.normalize.mean.zero_()
    identity.normalize.std.fill_(1.0)
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = normed(x)
        assert torch.allclose(out, identity((x - mean) / std), atol=1e-5)
        assert not torch.allclose(out, identity(x), atol=1e-3)  # the statistics matter


def test_normalisation_stats_must_match_channels():
    with pytest.raises(ValueError, match="in_channels=1"):
        get_model("smallcnn", num_classes=10, in_channels=1, mean=CIFAR_MEAN, std=CIFAR_STD)
    with pytest.raises(ValueError, match="std must be > 0"):
        get_model("smallcnn", num_classes=10, in_channels=1, mean=[0.5], std=[0.0])


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ValueError, match="resnet19") as info:
        get_model("resnet19", num_classes=10)
    assert "valid: resnet18, smallcnn, vgg16" in str(info.value)
    assert MODEL_NAMES == ("resnet18", "smallcnn", "vgg16")


def test_unknown_option_and_bad_sizes_are_rejected():
    with pytest.raises(TypeError, match="conv_bias"):
        get_model("resnet18", num_classes=10, conv_bias=True)
    with pytest.raises(ValueError, match="num_classes"):
        get_model("vgg16", num_classes=0)
    with pytest.raises(ValueError, match="width"):
        get_model("vgg16", num_classes=10, width=0.0)
