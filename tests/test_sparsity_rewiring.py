"""Rewiring against hand-built examples and an independent brute-force reference.

The reference below re-implements irregular rewiring from the spec with plain Python lists and a
different allocation method (bisection on the water level ``lam`` of ``min(cap, lam * imp)``), and
all mask counts are taken by summing mask entries directly, never through ``Masking``'s own methods.
"""

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnr_sweep.sparsity import Masking, largest_remainder, round_to_slices, water_fill


class Net(nn.Module):
    """Stem 3->8 (216 weights), then 8->16 3x3 (1152), 16->16 3x3 (2304), 16->32 1x1 (512)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.c1 = nn.Conv2d(8, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 32, 1)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        x = F.relu(self.c3(x))
        return self.fc(x.mean(dim=(2, 3)))


NAMES = ["stem", "c1", "c2", "c3"]


class ChannelNet(nn.Module):
    """A small stem (3->4 1x1, 12 weights); channel mode's floor (stem + one channel per layer) is
    12 + 288 + 288 + 64 = 652 of 12,428 weights, density 0.0525; no forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.c1 = nn.Conv2d(4, 32, 3)
        self.c2 = nn.Conv2d(32, 32, 3)
        self.c3 = nn.Conv2d(32, 64, 1)


def _masking(density, pruning, seed=0, model=None, prune_rate=0.5, total_epochs=1000):
    torch.manual_seed(seed)
    model = model or Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mk = Masking(
        model,
        opt,
        density=density,
        pruning=pruning,
        prune_rate=prune_rate,
        total_epochs=total_epochs,
        generator=torch.Generator().manual_seed(seed),
    )
    return model, opt, mk


def _randomise(model, opt, masking, g, hot=None, zero_momentum=0.0):
    """New random weights (then masked) and new random momentum; `hot` layer gets 100x momentum.

    ``zero_momentum``: the fraction of momentum entries set exactly to 0 (positions that cannot learn).
    """
    with torch.no_grad():
        for name in masking.layer_names:
            w = getattr(model, name).weight
            w.copy_(torch.randn(w.shape, generator=g))
            mom = torch.rand(w.shape, generator=g) * (100.0 if name == hot else 1.0)
            mom *= (torch.rand(w.shape, generator=g) >= zero_momentum).float()
            opt.state[w]["momentum_buffer"] = mom
    masking.apply_masks()


def _count(mask):
    return int((mask == 1).sum().item())  # brute force: count entries


def _assert_binary_and_zero(model, masking):
    for name in masking.layer_names:
        m = masking.masks[name]
        assert bool(((m == 0) | (m == 1)).all())
        assert bool((getattr(model, name).weight[m == 0] == 0).all())


# ---------------------------------------------------------------- brute-force reference (irregular)


def _ref_shares(total, imp, cap, size):
    """Water filling by bisection on lam, then largest remainder; independent of the library."""
    n = len(cap)
    fixed = [None] * n
    weights = list(imp)
    ideal = {}
    while True:
        open_ = [i for i in range(n) if fixed[i] is None and cap[i] > 0]
        rem = total - sum(f for f in fixed if f is not None)
        if rem == 0:
            break
        w = {i: weights[i] for i in open_}
        if sum(w.values()) == 0:
            w = {i: size[i] for i in open_}
        pos = [i for i in open_ if w[i] > 0]
        if sum(cap[i] for i in pos) < rem:  # every positive-weight layer is full: the rest falls back
            for i in pos:
                fixed[i] = cap[i]
                weights[i] = 0.0
            continue
        lo, hi = 0.0, 1.0
        while sum(min(cap[i], hi * w[i]) for i in pos) < rem:
            hi *= 2
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if sum(min(cap[i], mid * w[i]) for i in pos) < rem else (lo, mid)
        ideal = {i: min(cap[i], hi * w[i]) for i in pos}
        break
    real = [float(fixed[i]) if fixed[i] is not None else ideal.get(i, 0.0) for i in range(n)]
    floors = [math.floor(x + 1e-9) for x in real]
    left = total - sum(floors)
    order = sorted(range(n), key=lambda i: (-(real[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def _ref_rewire_irregular(weights, masks, moms, p):
    """Plain-Python reference of the spec's steps 1-5 on flat lists; returns new masks.

    Regrowth shares: first over the zero positions with nonzero momentum only; what they cannot take
    goes, by the same importances, to the zero-momentum positions.
    """
    n_layers = len(weights)
    imp, kept, pruned = [], [], []
    for w, m, mo in zip(weights, masks, moms, strict=True):
        active = [j for j in range(len(m)) if m[j] == 1]
        imp.append(sum(abs(mo[j]) for j in active) / len(active) if active else 0.0)
        k = round(p * len(active))
        drop = set(sorted(active, key=lambda j: (abs(w[j]), j))[:k])
        kept.append([1 if (m[j] == 1 and j not in drop) else 0 for j in range(len(m))])
        pruned.append(k)
    s = sum(imp)
    imp = [x / s if s > 0 else 0.0 for x in imp]
    live = [sum(1 for j in range(len(k)) if k[j] == 0 and mo[j] != 0) for k, mo in zip(kept, moms, strict=True)]
    dead = [len(k) - sum(k) - v for k, v in zip(kept, live, strict=True)]
    first = min(sum(pruned), sum(live))
    sizes = [len(w) for w in weights]
    shares = [a + b for a, b in zip(_ref_shares(first, imp, live, sizes),
                                    _ref_shares(sum(pruned) - first, imp, dead, sizes), strict=True)]  # fmt: skip
    out = []
    for i in range(n_layers):
        zeros = [j for j in range(len(kept[i])) if kept[i][j] == 0]
        grow = set(sorted(zeros, key=lambda j: (-abs(moms[i][j]), j))[: shares[i]])
        out.append([1 if (kept[i][j] == 1 or j in grow) else 0 for j in range(len(kept[i]))])
    return out


def test_irregular_rewiring_matches_brute_force_reference():
    model, opt, mk = _masking(0.1, "irregular", seed=1)
    g = torch.Generator().manual_seed(11)
    for epoch in range(8):
        # half the rewirings with momentum mostly 0: the live candidates run out, the rest is used too
        _randomise(model, opt, mk, g, hot="c3" if epoch % 2 else None, zero_momentum=(0.0, 0.5, 0.97, 0.999)[epoch % 4])
        ws = [getattr(model, n).weight.detach().flatten().tolist() for n in NAMES]
        ms = [mk.masks[n].flatten().tolist() for n in NAMES]
        mos = [opt.state[getattr(model, n).weight]["momentum_buffer"].flatten().tolist() for n in NAMES]
        expected = _ref_rewire_irregular(ws, ms, mos, mk.prune_rate_at(epoch))
        mk.rewire(epoch)
        for n, e in zip(NAMES, expected, strict=True):
            assert mk.masks[n].flatten().tolist() == [float(x) for x in e], (epoch, n)


# ---------------------------------------------------------------- invariants over many rewirings


@pytest.mark.parametrize("d", [0.01, 0.05, 0.1, 0.5, 0.9, 1.0])
def test_irregular_global_count_exact_over_30_rewirings(d):
    model, opt, mk = _masking(d, "irregular", seed=2, total_epochs=30)
    sizes = {n: getattr(model, n).weight.numel() for n in NAMES}
    initial = sum(max(1, round(d * s)) for s in sizes.values())
    assert sum(_count(mk.masks[n]) for n in NAMES) == initial
    assert abs(initial - d * sum(sizes.values())) <= len(NAMES)  # within one weight per layer
    g = torch.Generator().manual_seed(3)
    for epoch in range(30):
        _randomise(model, opt, mk, g, hot=NAMES[epoch % 4])
        before = {n: mk.masks[n].clone() for n in NAMES}
        stats = mk.rewire(epoch)
        assert sum(_count(mk.masks[n]) for n in NAMES) == initial
        _assert_binary_and_zero(model, mk)
        for n in NAMES:  # regrown weights start at 0
            regrown = (mk.masks[n] == 1) & (before[n] == 0)
            assert bool((getattr(model, n).weight[regrown] == 0).all())
            assert stats.regrown[n] >= int(regrown.sum())
        if d == 1.0:
            assert all(torch.equal(before[n], mk.masks[n]) for n in NAMES)
            assert bool((model.c1.weight != 0).all())


@pytest.mark.parametrize("d", [0.0525, 0.06, 0.1, 0.5, 0.9, 1.0])
def test_channel_invariants_over_30_rewirings(d):
    model, opt, mk = _masking(d, "channel", seed=4, model=ChannelNet(), total_epochs=30)
    total = sum(getattr(model, n).weight.numel() for n in NAMES)
    target = round(d * total)
    slices = {n: getattr(model, n).weight.numel() // getattr(model, n).weight.shape[1] for n in NAMES[1:]}
    g = torch.Generator().manual_seed(5)
    for epoch in range(-1, 30):
        if epoch >= 0:
            _randomise(model, opt, mk, g, hot=NAMES[1 + epoch % 3])
            mk.rewire(epoch)
        assert bool((mk.masks["stem"] == 1).all())
        _assert_binary_and_zero(model, mk)
        active = sum(_count(mk.masks[n]) for n in NAMES)
        assert abs(active - target) <= max(slices.values()) / 2  # what the rounding promises
        assert all(_count(mk.masks[n]) >= slices[n] for n in NAMES[1:])  # one channel per layer at least
        for n in NAMES[1:]:
            per_channel = mk.masks[n].transpose(0, 1).reshape(mk.masks[n].shape[1], -1)
            assert bool(((per_channel == per_channel[:, :1]).all(dim=1)).all())  # slice all-0 or all-1
    assert bool((model.stem.weight != 0).all())


@pytest.mark.parametrize("d", [0.01, 0.05])
def test_channel_density_below_the_one_channel_floor_raises(d):
    model = ChannelNet()
    with pytest.raises(
        ValueError, match=r"minimum for channel pruning of this model \(0\.05246\).*density >= 0\.05247"
    ):
        Masking(model, torch.optim.SGD(model.parameters(), lr=0.1), density=d, pruning="channel",
                prune_rate=0.5, total_epochs=10)  # fmt: skip


def test_channel_density_below_stem_share_raises():
    model = Net()  # stem 216 of 4184 weights: minimum density 0.0516
    with pytest.raises(ValueError, match="minimum for channel pruning"):
        Masking(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            density=0.01,
            pruning="channel",
            prune_rate=0.5,
            total_epochs=10,
        )


def test_irregular_pruned_weights_zero_through_training_and_rewiring():
    model, opt, mk = _masking(0.1, "irregular", seed=6, total_epochs=5)
    g = torch.Generator().manual_seed(0)
    for epoch in range(5):
        for _ in range(3):
            x = torch.rand(8, 3, 6, 6, generator=g)
            t = torch.randint(0, 4, (8,), generator=g)
            opt.zero_grad()
            F.cross_entropy(model(x), t).backward()
            mk.step()
            _assert_binary_and_zero(model, mk)
        mk.rewire(epoch)
        _assert_binary_and_zero(model, mk)


def test_capacity_moves_to_the_layer_with_large_momentum():
    model, opt, mk = _masking(0.1, "irregular", seed=7, total_epochs=30)
    start = {n: _count(mk.masks[n]) for n in NAMES}
    g = torch.Generator().manual_seed(8)
    for epoch in range(10):
        _randomise(model, opt, mk, g, hot="c1")
        mk.rewire(epoch)
    end = {n: _count(mk.masks[n]) for n in NAMES}
    assert sum(end.values()) == sum(start.values())
    assert end["c1"] > 3 * start["c1"]
    assert all(end[n] < start[n] for n in ("stem", "c2", "c3"))


# ---------------------------------------------------------------- hand-built examples


def _two_layer(density=0.5):
    """Two 1x1 convs with 8 weights each: weight (4, 2, 1, 1); flat index = out * 2 + in."""
    model = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False), nn.Conv2d(2, 4, 1, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mk = Masking(
        model,
        opt,
        density=density,
        pruning="irregular",
        prune_rate=0.5,
        total_epochs=100,
        generator=torch.Generator().manual_seed(0),
    )
    return model, opt, mk


def _plant(model, opt, mk, name, idx, mask, weight, mom):
    w = model[idx].weight
    mk.masks[name] = torch.tensor(mask, dtype=torch.float32).view(w.shape)
    with torch.no_grad():
        w.copy_(torch.tensor(weight).view(w.shape))
    opt.state[w]["momentum_buffer"] = torch.tensor(mom).view(w.shape)


def _flat_mask(mk, name):
    return [int(x) for x in mk.masks[name].flatten().tolist()]


def test_hand_example_irregular_prune_regrow_and_shares():
    model, opt, mk = _two_layer()
    # A: active {0,1,2,3}; |w| 0.5, 0.1, 0.3, 0.05 -> p=0.5 prunes k=2: positions 3 and 1.
    _plant(
        model,
        opt,
        mk,
        "0",
        0,
        [1, 1, 1, 1, 0, 0, 0, 0],
        [0.5, -0.1, 0.3, 0.05, 0, 0, 0, 0],
        [0.125, -0.125, 0.125, 0.125, 0.9, -0.8, 0.0, 0.3],
    )
    # B: active {0..5}; |w| 0.9, 0.2, 0.8, 0.1, 0.7, 0.6 -> k=3: positions 3, 1, 5.
    _plant(
        model,
        opt,
        mk,
        "1",
        1,
        [1, 1, 1, 1, 1, 1, 0, 0],
        [0.9, 0.2, -0.8, 0.1, 0.7, 0.6, 0, 0],
        [0.375] * 6 + [0.05, -0.02],
    )
    mk.apply_masks()
    stats = mk.rewire(0)  # p = 0.5
    # K = 5; importance A: mean 0.125, B: mean 0.375 -> 0.25 / 0.75 -> ideal 1.25 / 3.75 -> 1 / 4.
    assert stats.pruned == {"0": 2, "1": 3} and stats.regrown == {"0": 1, "1": 4}
    assert stats.importance == pytest.approx({"0": 0.25, "1": 0.75})
    # A regrows the zero with the largest |momentum|: position 4 (0.9).
    assert _flat_mask(mk, "0") == [1, 0, 1, 0, 1, 0, 0, 0]
    # B zeros {1,3,5,6,7}: |mom| 0.375 x3 (ties by index), then 0.05 -> regrow 1, 3, 5, 6.
    assert _flat_mask(mk, "1") == [1, 1, 1, 1, 1, 1, 1, 0]
    # 1, 3, 5 were pruned and regrown in this round: they keep their values; 6 was zero, starts at 0
    assert model[1].weight.flatten().tolist() == pytest.approx([0.9, 0.2, -0.8, 0.1, 0.7, 0.6, 0, 0])
    assert model[0].weight.flatten().tolist() == pytest.approx([0.5, 0, 0.3, 0, 0, 0, 0, 0])


def test_full_layer_keeps_its_pruned_and_regrown_weights():
    """Issue 14a: a layer that regrows what it just pruned keeps those values (Prune, Regrow, applyMask)."""
    model, opt, mk = _two_layer()
    # A is full; |w| 0.8 ... 0.1 -> p = 0.5 prunes 4: positions 4..7. All its momentum 1 (importance 1).
    a_w = [0.8, -0.7, 0.6, 0.5, -0.4, 0.3, 0.2, 0.1]
    _plant(model, opt, mk, "0", 0, [1] * 8, a_w, [1.0] * 8)
    # B: active {0..3}, prunes 2 (positions 0, 1); momentum 0 on the active part (importance 0).
    _plant(
        model, opt, mk, "1", 1, [1] * 4 + [0] * 4, [1.0, 2.0, 3.0, 4.0, 0, 0, 0, 0], [0.0] * 4 + [0.5, 0.4, 0.3, 0.2]
    )
    mk.apply_masks()
    stats = mk.rewire(0)
    # K = 6; A's capacity is the 4 it pruned (all live) -> 4; the other 2 fall back to B's size
    assert stats.pruned == {"0": 4, "1": 2} and stats.regrown == {"0": 4, "1": 2}
    assert _flat_mask(mk, "0") == [1] * 8
    assert model[0].weight.flatten().tolist() == pytest.approx(a_w)  # nothing zeroed while counted active
    # B regrows its zeros with the largest |momentum|: 4 (0.5) and 5 (0.4), from 0
    assert _flat_mask(mk, "1") == [0, 0, 1, 1, 1, 1, 0, 0]
    assert model[1].weight.flatten().tolist() == [0, 0, 3.0, 4.0, 0, 0, 0, 0]


def test_regrowth_prefers_candidates_that_can_receive_gradient():
    """Issue 14b: zero-momentum positions are used only when the live candidates run out."""
    model, opt, mk = _two_layer()
    # A: active {0..3}, prunes 2 (positions 3, 2); importance mean |mom| 1; live zeros: 2, 3 and 4 only.
    _plant(model, opt, mk, "0", 0, [1] * 4 + [0] * 4, [4.0, 3.0, 2.0, 1.0, 0, 0, 0, 0], [1.0] * 4 + [0.5, 0, 0, 0])
    # B: the same weights, importance 0.01; live zeros 2, 3 (0.01), 4 (0.02), 5 (0.03).
    _plant(model, opt, mk, "1", 1, [1] * 4 + [0] * 4, [4.0, 3.0, 2.0, 1.0, 0, 0, 0, 0],
           [0.01] * 4 + [0.02, 0.03, 0, 0])  # fmt: skip
    mk.apply_masks()
    stats = mk.rewire(0)
    # K = 4, importances 1/1.01 and 0.01/1.01: A's ideal share 3.96 exceeds its 3 live candidates, so
    # A takes 3 and the overflow goes to B's best live candidate (5), not to A's zero-momentum 5..7.
    assert stats.regrown == {"0": 3, "1": 1}
    assert _flat_mask(mk, "0") == [1, 1, 1, 1, 1, 0, 0, 0]
    assert model[0].weight.flatten().tolist() == [4.0, 3.0, 2.0, 1.0, 0, 0, 0, 0]
    assert _flat_mask(mk, "1") == [1, 1, 0, 0, 0, 1, 0, 0]
    assert model[1].weight.flatten().tolist() == [4.0, 3.0, 0, 0, 0, 0, 0, 0]


def test_selected_model_meets_the_density_target_on_digits():
    """Issue 14b end to end: no regrown weight is stranded on a dead channel (was 0.098 at 0.1)."""
    from dnr_sweep.config import RunConfig
    from dnr_sweep.training.engine import TrainingRun

    config = RunConfig.model_validate({
        "data": {"dataset": "digits", "val_size": 180}, "model": {"arch": "smallcnn", "width": 1.0},
        "train": {"epochs": 5, "batch_size": 64, "lr": 0.05, "lr_milestones": [], "warmup_epochs": 0,
                  "device": "cpu", "num_threads": 1, "seed": 0},
        "dnr": {"pruning": "irregular", "density": 0.1, "beta": 1.0},
    })  # fmt: skip
    run = TrainingRun(config)
    while not run.finished:
        run.train_epoch()
    selected = run.selected_state_dict()
    convs = [n for n, m in run.model.named_modules() if isinstance(m, nn.Conv2d)]
    nonzero = sum(int((selected[f"{n}.weight"] != 0).sum()) for n in convs)
    total = sum(selected[f"{n}.weight"].numel() for n in convs)
    assert abs(nonzero / total - 0.1) <= 0.01 * 0.1


def test_overflow_capped_layer_goes_dense_rest_goes_to_other_layer():
    model = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False), nn.Conv2d(4, 8, 1, bias=False))  # 8 and 32
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mk = Masking(model, opt, density=0.5, pruning="irregular", prune_rate=0.5, total_epochs=100)
    _plant(model, opt, mk, "0", 0, [1] * 4 + [0] * 4, [1.0, 2.0, 3.0, 4.0, 0, 0, 0, 0], [1.0] * 8)
    b_mom = [0.001] * 16 + [0.0] * 16
    b_mom[20], b_mom[25] = 0.5, -0.4
    _plant(model, opt, mk, "1", 1, [1] * 16 + [0] * 16, [float(j + 1) for j in range(16)] + [0.0] * 16, b_mom)
    mk.apply_masks()
    stats = mk.rewire(0)
    # K = 2 + 8 = 10; A's ideal share ~9.99 > its capacity 6 -> A full, overflow 4 -> B.
    assert stats.regrown == {"0": 6, "1": 4}
    assert _flat_mask(mk, "0") == [1] * 8
    # B pruned its 8 smallest (positions 0..7); zeros ranked: 20 (0.5), 25 (0.4), then 0.001 at 0, 1.
    expected_b = [1, 1] + [0] * 6 + [1] * 8 + [0] * 16
    expected_b[20] = expected_b[25] = 1
    assert _flat_mask(mk, "1") == expected_b
    assert sum(_flat_mask(mk, "0")) + sum(_flat_mask(mk, "1")) == 4 + 16


def test_empty_layer_no_nan_and_fewer_nonzero_momentum_candidates_than_share():
    model, opt, mk = _two_layer()
    _plant(model, opt, mk, "0", 0, [0] * 8, [0.0] * 8, [0.0] * 8)  # empty layer, zero momentum
    # B: 4 active, prune 2 (positions 2, 3); momentum zero except zero position 6.
    _plant(
        model,
        opt,
        mk,
        "1",
        1,
        [1, 1, 1, 1, 0, 0, 0, 0],
        [4.0, 3.0, 2.0, 1.0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0.7, 0],
    )
    mk.apply_masks()
    stats = mk.rewire(0)
    assert all(math.isfinite(v) for v in stats.importance.values())
    assert stats.importance == {"0": 0.0, "1": 0.0}
    # All importances 0 -> shares proportional to size (8 : 8) -> 1 and 1.
    assert stats.regrown == {"0": 1, "1": 1}
    # A: all zero momentum -> lowest index. B: only one nonzero candidate (6).
    assert _flat_mask(mk, "0") == [1, 0, 0, 0, 0, 0, 0, 0]
    assert _flat_mask(mk, "1") == [1, 1, 0, 0, 0, 0, 1, 0]
    for m in model:
        assert not bool(torch.isnan(m.weight).any())

    # One layer with positive importance but a share larger than its nonzero-momentum candidates.
    model, opt, mk = _two_layer()
    _plant(
        model,
        opt,
        mk,
        "0",
        0,
        [1] * 4 + [0] * 4,
        [1.0, 2.0, 3.0, 4.0, 0, 0, 0, 0],
        [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    )
    _plant(model, opt, mk, "1", 1, [1] * 8, [float(j + 1) for j in range(8)], [0.0] * 8)
    mk.apply_masks()
    stats = mk.rewire(0)  # K = 2 + 4 = 6; A has all importance, capacity 6 -> all 6 go to A
    assert stats.regrown == {"0": 6, "1": 0}
    assert _flat_mask(mk, "0") == [1] * 8
    assert _flat_mask(mk, "1") == [0, 0, 0, 0, 1, 1, 1, 1]


def test_hand_example_channel_prune_regrow_by_frobenius_norms():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 1, bias=False), nn.Conv2d(4, 2, 1, bias=False), nn.Conv2d(4, 3, 1, bias=False)
    )  # stem 2, A: 4 channels x 2, B: 4 x 3; 22
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mk = Masking(
        model,
        opt,
        density=14 / 22,
        pruning="channel",
        prune_rate=0.5,
        total_epochs=100,
        generator=torch.Generator().manual_seed(0),
    )
    assert mk.target_active == 14
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([0.3, -0.4]).view(2, 1, 1, 1))
        # A columns (channel c = W[:, c]): norms 5, 0.1, 1, (inactive)
        model[1].weight.copy_(torch.tensor([[3.0, 0.1, 1.0, 0.0], [4.0, 0.0, 0.0, 0.0]]).view(2, 4, 1, 1))
        # B: channel 0 norm sqrt(3), channel 1 norm sqrt(12)
        model[2].weight.copy_(torch.tensor([[1.0, 2.0, 0, 0], [1.0, 2.0, 0, 0], [-1.0, 2.0, 0, 0]]).view(3, 4, 1, 1))
    mk.masks["1"] = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 4, 1, 1).expand(2, 4, 1, 1).contiguous()
    mk.masks["2"] = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 4, 1, 1).expand(3, 4, 1, 1).contiguous()
    mk.apply_masks()
    # momentum: A active mean 0.25, channel 3 norm sqrt(2)*0.1; B active mean 0.75, channel 3 norm sqrt(3).
    opt.state[model[1].weight]["momentum_buffer"] = torch.tensor(
        [[0.25, 0.25, -0.25, 0.1], [0.25, -0.25, 0.25, 0.1]]
    ).view(2, 4, 1, 1)
    opt.state[model[2].weight]["momentum_buffer"] = torch.tensor(
        [[0.75, 0.75, 0.0, 1.0], [0.75, -0.75, 0.0, 1.0], [-0.75, 0.75, 0.0, 1.0]]
    ).view(3, 4, 1, 1)
    stats = mk.rewire(0)  # p = 0.5: A prunes round(1.5) = 2 channels (1, 2), B round(1.0) = 1 (ch 0)
    assert stats.pruned_channels == {"1": 2, "2": 1}
    assert stats.importance == pytest.approx({"1": 0.25, "2": 0.75})
    # Active after pruning 2 + 2 + 3 = 7, budget 14 - 7 = 7 weights: A 1.75 (0.875 ch), B 5.25 (1.75 ch)
    # -> floors 0, 1; then A +1 (3 + 1 <= 7), B +1 (5 + 1.5 <= 7): regrow 1 and 2 channels.
    assert stats.regrown_channels == {"1": 1, "2": 2}
    # in weights: A's slices hold 2 weights, B's 3
    assert (stats.pruned, stats.regrown) == ({"1": 4, "2": 3}, {"1": 2, "2": 6})
    # A zero channels {1, 2, 3}: momentum norms 0.354, 0.354, 0.141 -> channel 1 (tie -> lower index)
    assert mk.masks["1"][0, :, 0, 0].tolist() == [1, 1, 0, 0]
    # B zero channels {0, 2, 3}: momentum norms 1.299, 0, 1.732 -> channels 3 and 0
    assert mk.masks["2"][0, :, 0, 0].tolist() == [1, 1, 0, 1]
    # A's channel 1 and B's channel 0 were pruned and regrown in this round: they keep their values
    assert model[1].weight[:, :, 0, 0].flatten().tolist() == pytest.approx([3.0, 0.1, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0])
    assert model[2].weight[:, :, 0, 0].tolist() == [[1.0, 2.0, 0, 0], [1.0, 2.0, 0, 0], [-1.0, 2.0, 0, 0]]
    assert model[0].weight.flatten().tolist() == pytest.approx([0.3, -0.4])  # stem untouched
    assert sum(_count(m) for m in mk.masks.values()) == 2 + 4 + 9 == 15  # |15 - 14| <= slice


# ---------------------------------------------------------------- allocation helpers


def test_water_fill_equals_bisection_definition():
    g = torch.Generator().manual_seed(9)
    for _ in range(200):
        n = int(torch.randint(1, 6, (1,), generator=g))
        cap = torch.randint(0, 20, (n,), generator=g).tolist()
        imp = (torch.rand(n, generator=g) * (torch.rand(n, generator=g) > 0.3)).tolist()
        total = int(torch.randint(0, sum(cap) + 1, (1,), generator=g))
        shares = largest_remainder(water_fill(total, imp, cap, [1.0] * n), total)
        assert sum(shares) == total and all(0 <= s <= c for s, c in zip(shares, cap, strict=True))
        assert shares == _ref_shares(total, imp, cap, [1.0] * n)


def test_round_to_slices_within_half_the_largest_slice():
    g = torch.Generator().manual_seed(10)
    for _ in range(200):
        n = int(torch.randint(1, 6, (1,), generator=g))
        sizes = torch.randint(1, 50, (n,), generator=g).tolist()
        ideal = [Fraction(int(x), 7) for x in torch.randint(0, 70, (n,), generator=g)]
        budget = sum(x * s for x, s in zip(ideal, sizes, strict=True))
        counts = round_to_slices(ideal, sizes, budget)
        assert all(c in (math.floor(x), math.ceil(x)) for c, x in zip(counts, ideal, strict=True))
        assert abs(sum(c * s for c, s in zip(counts, sizes, strict=True)) - budget) <= Fraction(max(sizes), 2)


def test_water_fill_refuses_a_budget_outside_its_capacity():
    for budget in (-1, 11):
        with pytest.raises(ValueError, match=r"outside \[0, total capacity 10\]"):
            water_fill(budget, [1.0, 1.0], [4, 6], [1.0, 1.0])


def test_water_fill_without_importance_uses_the_fallback_then_the_capacity():
    # no layer has momentum: the fallback weights (layer sizes) split the budget, 1 : 3 of 8
    assert water_fill(8, [0.0, 0.0], [10, 10], [1.0, 3.0]) == [2, 6]
    # neither: the remaining capacity does, 2 : 6 of 4
    assert water_fill(4, [0.0, 0.0], [2, 6], [0.0, 0.0]) == [1, 3]


def test_round_to_slices_adds_by_largest_remainder_and_at_exactly_half_a_slice():
    # ideal 1.3 and 2.6 channels of 2 weights (budget 7.8): floors give 6; layer 1 (remainder 0.6) first
    # takes one (6 + 1 <= 7.8), then layer 0 would overshoot (8 + 1 > 7.8)
    assert round_to_slices([Fraction(13, 10), Fraction(26, 10)], [2, 2], Fraction(78, 10)) == [1, 3]
    # by remainder (0.6 before 0.3), not by size: the smaller layer gets the channel
    assert round_to_slices([Fraction(16, 10), Fraction(23, 10)], [2, 2], Fraction(78, 10)) == [2, 2]
    # a channel is added when the total stays within half a slice, boundary included
    assert round_to_slices([Fraction(1, 2)], [2], 1) == [1]


def test_live_first_second_stage_fills_each_layers_zero_momentum_room():
    from dnr_sweep.sparsity.rewiring import _live_first_shares

    # 5 to place, equal importance; 1 live candidate per layer, room 2 and 6: stage 1 places 1 + 1, stage 2
    # splits the 3 left over the zero-momentum room (1 and 5): 1.5 each, capped at 1 -> 1 + 2
    assert _live_first_shares(5, [1.0, 1.0], [1, 1], [2, 6], [1.0, 1.0], largest_remainder) == [2, 3]


def test_channel_regrowth_prefers_live_channels_and_regrows_nothing_without_budget():
    from dnr_sweep.sparsity.rewiring import rewire_channel

    def layers():
        weights = [torch.tensor([1.0, 2.0, 0.0, 0.0]).view(1, 4, 1, 1) for _ in range(2)]
        masks = [torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 4, 1, 1) for _ in range(2)]
        # A: important (mean |momentum| 1 on its active weights) but its zero channels get no gradient;
        # B: unimportant (0.1), its channel 2 is live
        momenta = [
            torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 4, 1, 1),
            torch.tensor([0.1, 0.1, 0.1, 0.0]).view(1, 4, 1, 1),
        ]
        return weights, masks, momenta

    weights, masks, momenta = layers()
    _, regrown, _, _, _ = rewire_channel(weights, masks, momenta, prune_rate=0.0, target_active=5)
    assert regrown == [0, 1]  # the one weight of budget goes to B's live channel, not to A's dead ones
    assert masks[0].flatten().tolist() == [1, 1, 0, 0] and masks[1].flatten().tolist() == [1, 1, 1, 0]
    weights, masks, momenta = layers()
    _, regrown, _, _, _ = rewire_channel(weights, masks, momenta, prune_rate=0.0, target_active=4)
    assert regrown == [0, 0] and [m.flatten().tolist() for m in masks] == [[1, 1, 0, 0]] * 2  # no budget


def test_minimum_density_by_hand_for_irregular_and_channel():
    from dnr_sweep.sparsity import minimum_density

    # Net: stem 216 (dense in channel mode), c1 1152 (8 slices of 144), c2 2304 (16 of 144), c3 512 (16 of 32)
    assert minimum_density(Net(), "irregular") == 4 / 4184  # one weight per layer
    assert minimum_density(Net(), "channel") == (216 + 144 + 144 + 32) / 4184


def test_channel_regrowth_falls_back_to_dead_channels_when_the_live_ones_run_out():
    from dnr_sweep.sparsity.rewiring import rewire_channel

    # two layers of 4 input channels, slices of 2 weights; channels 0, 1 active in both
    weights = [torch.tensor([[1.0, 2.0, 0.0, 0.0]] * 2).view(2, 4, 1, 1) for _ in range(2)]
    masks = [torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2).view(2, 4, 1, 1) for _ in range(2)]
    momenta = [torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2).view(2, 4, 1, 1),  # A: important, no live channel
               torch.tensor([[0.1, 0.1, 0.1, 0.0]] * 2).view(2, 4, 1, 1)]  # fmt: skip  # B: channel 2 live
    # budget 6 weights (3 channels): B's live channel first (2 weights), then 4 over the dead room, A 4 and
    # B 2 weights, by importance 10 : 1 -> A 3.64, B 0.36; channels A 1.82, B 1.18 -> A 2, B 1
    _, regrown, _, regrown_w, _ = rewire_channel(weights, masks, momenta, prune_rate=0.0, target_active=14)
    assert regrown == [2, 1] and regrown_w == [4, 2]
    assert masks[0][0, :, 0, 0].tolist() == [1, 1, 1, 1] and masks[1][0, :, 0, 0].tolist() == [1, 1, 1, 0]
