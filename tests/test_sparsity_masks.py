"""Masking: initial masks, validation, the masked step, foreach application, checkpoints."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnr_sweep.models.architectures import get_model
from dnr_sweep.sparsity import Masking, minimum_density


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(self.conv2(F.relu(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def _make(density=0.3, pruning="irregular", seed=0, prune_linear=False, opt="sgd"):
    torch.manual_seed(seed)
    model = TinyNet()
    if opt == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    masking = Masking(
        model,
        optimizer,
        density=density,
        pruning=pruning,
        prune_rate=0.5,
        total_epochs=10,
        prune_linear=prune_linear,
        generator=torch.Generator().manual_seed(seed),
    )
    return model, optimizer, masking


def _train_steps(model, optimizer, masking, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.rand(4, 3, 6, 6, generator=g)
        t = torch.randint(0, 5, (4,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), t).backward()
        masking.step()


def test_prunable_set_and_names():
    model, _, masking = _make()
    assert masking.layer_names == ["stem", "conv", "conv2"]
    assert list(masking.masks) == ["stem", "conv", "conv2"]
    _, _, masking = _make(prune_linear=True)
    assert masking.layer_names == ["stem", "conv", "conv2", "fc"]


@pytest.mark.parametrize("d", [0.01, 0.05, 0.1, 0.5, 0.9, 1.0])
def test_initial_irregular_counts_per_layer(d):
    model, _, masking = _make(density=d)
    for name, module in [("stem", model.stem), ("conv", model.conv), ("conv2", model.conv2)]:
        mask = masking.masks[name]
        assert mask.shape == module.weight.shape and mask.dtype == module.weight.dtype
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        n = module.weight.numel()
        assert int(mask.sum().item()) == max(1, round(d * n))
        assert bool((module.weight[mask == 0] == 0).all())


def test_initial_masks_depend_on_generator_only():
    _, _, a = _make(seed=1)
    _, _, b = _make(seed=1)
    _, _, c = _make(seed=2)
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    assert not all(torch.equal(a.masks[n], c.masks[n]) for n in a.masks)


def test_bias_bn_and_unpruned_linear_never_masked():
    model, optimizer, masking = _make(density=0.05)
    _train_steps(model, optimizer, masking)
    assert bool((model.stem.bias != 0).all()) and bool((model.fc.weight != 0).all())
    assert bool((model.bn.weight != 0).all())


@pytest.mark.parametrize("pruning", ["irregular", "channel"])
def test_pruned_weights_exactly_zero_after_every_step(pruning):
    # channel mode's floor on TinyNet is 0.41 (the dense stem and one channel per layer)
    model, optimizer, masking = _make(density=0.3 if pruning == "irregular" else 0.5, pruning=pruning)
    g = torch.Generator().manual_seed(5)
    for _ in range(6):
        x = torch.rand(4, 3, 6, 6, generator=g)
        t = torch.randint(0, 5, (4,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), t).backward()
        assert any(
            float(m.weight.grad[masking.masks[n] == 0].abs().sum()) > 0
            for n, m in [("conv", model.conv), ("conv2", model.conv2)]
        )  # real gradients there
        masking.step()
        for name, module in [("stem", model.stem), ("conv", model.conv), ("conv2", model.conv2)]:
            assert bool((module.weight[masking.masks[name] == 0] == 0).all())


def test_apply_masks_foreach_equals_per_layer_loop():
    model, _, masking = _make(density=0.2)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    expected = {n: getattr(model, n).weight.detach().clone() * masking.masks[n] for n in masking.masks}
    bias_before = model.conv.bias.detach().clone()
    masking.apply_masks()
    for n, e in expected.items():
        assert torch.equal(getattr(model, n).weight, e)
    assert torch.equal(model.conv.bias, bias_before)


def test_prune_rate_schedule_linear_decay():
    _, _, masking = _make()
    assert masking.prune_rate_at(0) == pytest.approx(0.5)
    assert masking.prune_rate_at(1) == pytest.approx(0.45)
    assert masking.prune_rate_at(9) == pytest.approx(0.05)
    assert masking.prune_rate_at(10) == 0.0
    with pytest.raises(ValueError, match="epoch"):
        masking.prune_rate_at(-1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"density": 0.0}, "density"),
        ({"density": 1.5}, "density"),
        ({"density": -0.1}, "density"),
        ({"prune_rate": 1.5}, "prune_rate"),
        ({"prune_rate": -0.1}, "prune_rate"),
        (
            {"pruning": "structured"},
            r"pruning must be one of \['irregular', 'channel', 'channel_group'\], got 'structured'",
        ),
        ({"total_epochs": 0}, "total_epochs"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    args = {"density": 0.5, "pruning": "irregular", "prune_rate": 0.5, "total_epochs": 10} | kwargs
    with pytest.raises(ValueError, match=match):
        Masking(model, opt, **args)


@pytest.mark.parametrize("kwargs", [{"total_epochs": 1}, {"prune_rate": 0.0}, {"prune_rate": 1.0}, {"density": 1.0}])
def test_the_edges_of_the_ranges_are_accepted(kwargs):
    model = TinyNet()
    args = {"density": 0.5, "pruning": "irregular", "prune_rate": 0.5, "total_epochs": 10} | kwargs
    Masking(model, torch.optim.SGD(model.parameters(), lr=0.1), **args)


def test_channel_mode_below_minimum_density_raises():
    model = TinyNet()  # stem 108 + one channel of conv (72) and of conv2 (8) = 188 of 460 weights
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert minimum_density(model, "channel") == 188 / 460
    with pytest.raises(ValueError, match=r"\(0\.4087\).*set density >= 0\.4087 \(or use pruning='irregular'\)"):
        Masking(model, opt, density=0.3, pruning="channel", prune_rate=0.5, total_epochs=10)
    Masking(model, opt, density=0.4087, pruning="channel", prune_rate=0.5, total_epochs=10)  # the printed fix works


def test_channel_floor_on_smallcnn_is_refused_never_exceeded():
    """Issue 14c: asked 0.02 on smallcnn width 0.5 (digits), the masks used to hold density 0.086."""
    model = get_model("smallcnn", num_classes=10, in_channels=1, width=0.5)  # convs 1->8->16->32, 3x3
    stem, slices = 1 * 8 * 9, [16 * 9, 32 * 9]  # the dense stem; one input channel of each other conv
    total = 72 + 16 * 8 * 9 + 32 * 16 * 9
    assert minimum_density(model, "channel") == (stem + sum(slices)) / total == 504 / 5832
    assert minimum_density(model, "irregular") == 3 / total
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"0\.08642"):
        Masking(model, opt, density=0.02, pruning="channel", prune_rate=0.5, total_epochs=10)
    for d in (504 / 5832, 0.09, 0.1, 0.15, 0.3, 0.7):
        mk = Masking(model, opt, density=d, pruning="channel", prune_rate=0.5, total_epochs=10)
        active = sum(int(m.sum()) for m in mk.masks.values())
        assert abs(active - round(d * total)) <= max(slices) / 2, d
        assert all(int(m.sum()) > 0 for m in mk.masks.values())


def test_no_prunable_layer_raises():
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="no prunable"):
        Masking(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            density=0.5,
            pruning="irregular",
            prune_rate=0.5,
            total_epochs=10,
        )


def test_momentum_read_from_adam_exp_avg():
    model, optimizer, masking = _make(opt="adam")
    _train_steps(model, optimizer, masking, n=2)
    assert torch.equal(masking._momentum(model.conv.weight), optimizer.state[model.conv.weight]["exp_avg"])
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking.optimizer = fresh
    assert torch.equal(masking._momentum(model.conv.weight), torch.zeros_like(model.conv.weight))


@pytest.mark.parametrize("pruning", ["irregular", "channel"])
def test_state_dict_round_trip_gives_identical_masks_and_rewiring(pruning):
    model, optimizer, masking = _make(density=0.5, pruning=pruning, seed=3)
    _train_steps(model, optimizer, masking, n=3)
    masking.rewire(0)
    _train_steps(model, optimizer, masking, n=2, seed=1)

    buf = io.BytesIO()
    torch.save({"masking": masking.state_dict(), "model": model.state_dict(), "opt": optimizer.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    model2 = copy.deepcopy(model)
    with torch.no_grad():
        for p in model2.parameters():
            p.normal_()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.05, momentum=0.9)
    masking2 = Masking(
        model2,
        opt2,
        density=0.5,
        pruning=pruning,
        prune_rate=0.5,
        total_epochs=10,
        generator=torch.Generator().manual_seed(99),
    )
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    masking2.load_state_dict(ckpt["masking"])
    assert all(torch.equal(masking.masks[n], masking2.masks[n]) for n in masking.masks)
    assert masking2.target_active == masking.target_active

    for m, o, mk in ((model, optimizer, masking), (model2, opt2, masking2)):
        _train_steps(m, o, mk, n=2, seed=7)
        mk.rewire(1)
    assert all(torch.equal(masking.masks[n], masking2.masks[n]) for n in masking.masks)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_load_state_dict_rejects_other_layout():
    _, _, a = _make(pruning="irregular")
    _, _, b = _make(pruning="irregular", prune_linear=True)
    with pytest.raises(ValueError, match="prune_linear"):
        b.load_state_dict(a.state_dict())
    _, _, c = _make(density=0.5, pruning="channel")
    with pytest.raises(ValueError, match="pruning"):
        c.load_state_dict(a.state_dict())


def test_the_least_density_a_message_names_is_rounded_up_exactly():
    from fractions import Fraction

    from dnr_sweep.sparsity.masks import _ceil_to

    # in floats 7/25 * 1000 = 280.00000000000006 and 0.28 would read "0.2801"
    assert [_ceil_to(Fraction(n, d)) for n, d in [(7, 25), (1, 10), (1, 3), (1, 1000), (12345, 100000), (1, 1)]] == [
        "0.28", "0.1", "0.3334", "0.001", "0.1235", "1"]  # fmt: skip
    assert _ceil_to(Fraction(0)) == "0"
