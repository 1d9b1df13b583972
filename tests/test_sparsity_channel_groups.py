"""channel_group DNR (issue 18): groups, prune/regrow choices, exact counts, physical removability.

Oracles, none of them this code's own output:

- group membership: a brute-force probe (every conv/linear output replaced by a constant, one
  producer channel bumped at a time, and every reader's input inspected for what changed) on a
  plain conv chain and a two-block residual net; Torch-Pruning's DependencyGraph on ResNet18 and
  VGG16;
- prune/regrow choices: a hand example with hand-computed masks, weights and BatchNorm values, and
  brute-force group norms (member by member, by name) on the residual net;
- counts: mask entries summed directly; removability: the shrunk model's outputs against the masked
  model's, and its shapes against the active groups.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from dnr_sweep.export import TOLERANCE, count_params, shrink
from dnr_sweep.models.architectures import get_model
from dnr_sweep.sparsity import Masking, minimum_density


class Chain(nn.Module):
    """conv(3->6)-bn-relu-conv(6->8, bias)-bn-relu-pool-conv(8->8)-bn-relu-gap-linear(8->5)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.c2, self.b2 = nn.Conv2d(6, 8, 3, padding=1, bias=True), nn.BatchNorm2d(8)
        self.c3, self.b3 = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.b1(self.c1(x)))
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        x = F.relu(self.b3(self.c3(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class TwoBlock(nn.Module):
    """stem(3->8)-bn-relu, an identity block on 8, a projecting block 8->12, gap, linear(12->4)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.block1, self.block2 = Block(8, 8, 1), Block(8, 12, 2)
        self.head = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(F.relu(self.bn(self.stem(x)))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


X = torch.rand(2, 3, 8, 8)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model


def make(model: nn.Module, density: float, *, seed: int = 0, total_epochs: int = 100, wd: float = 0.0,
         example_input: torch.Tensor | None = X, prune_linear: bool = False):  # fmt: skip
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=wd)
    mk = Masking(model, opt, density=density, pruning="channel_group", prune_rate=0.5, total_epochs=total_epochs,
                 prune_linear=prune_linear, generator=torch.Generator().manual_seed(seed), example_input=example_input)  # fmt: skip
    return opt, mk


def masking_groups(mk: Masking) -> set[frozenset]:
    """Every group as a set of (module, role, channel) endpoints, from the masker's spaces."""
    out = set()
    for space in mk.groups.spaces:
        for c in range(space.channels):
            members = {(p, "out", c) for p in space.producers} | {(q, "in", c) for q in space.consumers}
            out.add(frozenset(members | {(b, "bn", c) for b in space.norms}))
    return out


# --------------------------------------------------------------------------------------------------
# Group membership


def brute_force_groups(model: nn.Module, x: torch.Tensor) -> set[frozenset]:
    """Groups by probing: outputs of every conv/linear are replaced by ones; bumping one conv output
    channel changes exactly the reader/BatchNorm channels coupled to it (nothing else passes a signal
    across channels once the convs are constant). Connected components over those edges."""
    probe = copy.deepcopy(model).eval()
    for m in probe.modules():  # BatchNorm as identity, so a bump is never scaled away
        if isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    names = {m: n for n, m in probe.named_modules()}
    convs = [m for m in probe.modules() if isinstance(m, nn.Conv2d)]
    readers = [m for m in probe.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    norms = [m for m in probe.modules() if isinstance(m, nn.BatchNorm2d)]
    bump: dict = {}
    seen: dict = {}

    def out_hook(module, args, output):
        out = torch.ones_like(output)
        if bump.get("module") is module:
            out[:, bump["channel"]] += 1.0
        return out

    def in_hook(module, args):
        seen[module] = args[0].detach().clone()

    handles = [m.register_forward_hook(out_hook) for m in readers]
    handles += [m.register_forward_pre_hook(in_hook) for m in readers + norms]
    with torch.no_grad():
        probe(x)
        base = dict(seen)
        parent: dict = {}

        def find(a):
            parent.setdefault(a, a)
            while parent[a] != a:
                a = parent[a]
            return a

        for conv in convs:
            for c in range(conv.out_channels):
                bump.update(module=conv, channel=c)
                probe(x)
                me = (names[conv], "out", c)
                find(me)
                for m in readers + norms:
                    changed = (seen[m] != base[m]).transpose(0, 1).reshape(seen[m].shape[1], -1).any(dim=1)
                    for i in torch.nonzero(changed).flatten().tolist():
                        role = "bn" if isinstance(m, nn.BatchNorm2d) else "in"
                        parent[find((names[m], role, i))] = find(me)
    for h in handles:
        h.remove()
    comps: dict = {}
    for node in list(parent):
        comps.setdefault(find(node), set()).add(node)
    # a group has a producer and a reader (the image input and the head output have neither)
    return {
        frozenset(c) for c in comps.values() if any(r == "out" for _, r, _ in c) and any(r == "in" for _, r, _ in c)
    }


@pytest.mark.parametrize("net", [Chain, TwoBlock])
def test_groups_equal_the_brute_force_probe(net):
    model = net()
    _, mk = make(model, 1.0)
    expected = brute_force_groups(model, X)
    assert masking_groups(mk) == expected
    if net is TwoBlock:  # the residual stream on 8 channels: 3 writers, 4 readers, 3 BatchNorms per channel
        stream = next(g for g in expected if ("stem", "out", 0) in g)
        assert stream == {("stem", "out", 0), ("block1.conv2", "out", 0), ("block2.conv1", "in", 0),
                          ("block1.conv1", "in", 0), ("block2.short.0", "in", 0), ("bn", "bn", 0),
                          ("block1.bn2", "bn", 0)}  # fmt: skip
        assert len(expected) == 8 + 8 + 12 + 12  # stream 8, block1 inner 8, block2 inner 12, stream 12


@pytest.mark.parametrize("arch", ["resnet18", "vgg16"])
def test_groups_equal_torch_pruning_dependency_groups(arch):
    """Torch-Pruning as an independent oracle: each group's members and channel index."""
    model = get_model(arch, num_classes=10, width=0.25).eval()
    x = torch.rand(2, 3, 32, 32)
    _, mk = make(model, 1.0, example_input=x)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    names = {m: n for n, m in model.named_modules()}
    assert len(mk.groups.spaces) == (12 if arch == "resnet18" else 13)
    for space in mk.groups.spaces:
        for c in (0, space.channels - 1):
            group = graph.get_pruning_group(
                model.get_submodule(space.producers[0]), tp.prune_conv_out_channels, idxs=[c]
            )
            members = set()
            for dep, idxs in group:
                module, handler = dep.target.module, dep.handler.__name__
                if isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
                    assert [int(i) for i in idxs] == [c]
                    role = "bn" if isinstance(module, nn.BatchNorm2d) else ("in" if "in_" in handler else "out")
                    members.add((names[module], role, c))
            ours = {(p, "out", c) for p in space.producers} | {(q, "in", c) for q in space.consumers}
            assert members == ours | {(b, "bn", c) for b in space.norms}


def test_the_image_input_and_the_head_output_are_never_pruned():
    model = get_model("resnet18", num_classes=10, width=0.25)
    _, mk = make(model, 0.05, example_input=torch.rand(2, 3, 32, 32))
    assert mk.masks["conv1"].shape[1] == 3 and bool((mk.masks["conv1"].sum(dim=(0, 2, 3)) > 0).all())
    last = mk.groups.group_masks[mk.groups.keys.index("layer4.0.conv2")]  # the last stream, read by the head
    head = model.linear.weight
    assert bool((head != 0).any(dim=1).all())  # every class keeps its row
    assert torch.equal((head != 0).any(dim=0), last)  # the head loses exactly the pruned stream channels
    assert all(int(m.sum()) >= 1 for m in mk.groups.group_masks)


# --------------------------------------------------------------------------------------------------
# Prune and regrow choices


class Hand(nn.Module):
    """stem 1->4 (1x1) - bn1 - relu - conv2 4->4 (1x1) - bn2 - relu - gap - fc 4->2 (not prunable).

    Spaces: "stem" (stem rows, bn1, conv2 columns) and "conv2" (conv2 rows, bn2, fc columns).
    Prunable weights 4 + 16 = 20; with n1, n2 active groups the count is n1 + n1 * n2.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn1 = nn.Conv2d(1, 4, 1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.stem(x))))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_hand_example_prune_regrow_reinit_and_exact_count():
    model = Hand()
    opt, mk = make(model, 0.5, example_input=torch.rand(2, 1, 4, 4))
    assert mk.target_active == 10 and mk.groups.keys == ["stem", "conv2"]
    mk.groups.group_masks[0] = torch.tensor([True, True, True, False])
    mk.groups.group_masks[1] = torch.tensor([True, True, False, False])
    mk._refresh_group_masks()
    with torch.no_grad():
        model.stem.weight.copy_(torch.tensor([3.0, 1.0, 2.0, 0.0]).view(4, 1, 1, 1))
        model.conv2.weight.copy_(
            torch.tensor([[1.0, 2, 2, 0], [1, 0, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0]]).view(4, 4, 1, 1)
        )
        model.fc.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
        for bn in (model.bn1, model.bn2):
            bn.weight.fill_(2.0)
            bn.bias.fill_(0.5)
    mk.apply_masks()
    assert model.bn1.weight.tolist() == [2, 2, 2, 0] and model.bn2.bias.tolist() == [0.5, 0.5, 0, 0]
    before = copy.deepcopy(model)
    opt.state[model.stem.weight]["momentum_buffer"] = torch.tensor([0.1, 0.1, 0.1, 0.9]).view(4, 1, 1, 1)
    opt.state[model.conv2.weight]["momentum_buffer"] = torch.tensor(
        [[0.1, 0.1, 0.1, 0.3], [0.1, 0.1, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0], [0.2, 0.0, 0.2, 0.0]]).view(4, 4, 1, 1)  # fmt: skip
    opt.state[model.fc.weight]["momentum_buffer"] = torch.tensor([[0.4, 0.4, 0.0, 0.4], [0.4, 0.4, 0.0, 0.0]])
    stats = mk.rewire(0)  # p = 0.5
    # Pruning. Group norms^2, stem space: c0 9+1+1 = 11, c1 1+4 = 5, c2 4+4+4 = 12 -> drop round(1.5) = 2:
    # c1, c0. conv2 space (rows + fc columns): o0 1+4+4+1 = 10, o1 1+4 = 5 -> drop round(1.0) = 1: o1.
    assert stats.pruned_channels == {"stem": 2, "conv2": 1}
    # Importance (mean |momentum| over active group weights, before pruning, per MAC): stem 9 x 0.1
    # -> 0.1; conv2 6 x 0.1 + 4 x 0.4 = 2.2 over 10 -> 0.22. MACs per weight on 4x4 inputs: a stem group
    # is 1 stem weight + 4 conv2 weights at 16 positions -> 16; a conv2 group is 4 conv2 weights at 16
    # positions + 2 fc weights at 1 -> 66 / 6 = 11. Per MAC 0.1/16 and 0.22/11: normalised 5/21, 16/21.
    assert stats.importance == pytest.approx({"stem": 5 / 21, "conv2": 16 / 21})
    # After pruning n = (1, 1): count 2, budget 8. Marginals: stem 1 + n2 = 2, conv2 n1 = 1. Capacities
    # 3 x 2 = 6 and 3 x 1 = 3; water filling 8 by importance x size (5/21 x 20, 16/21 x 24): conv2's
    # ideal 6.35 is capped at 3, stem takes 5 -> wanted groups 2.5 and 3. Momentum order (norm^2): stem c3 0.9, c0 0.07, c1 0.03; conv2 o1 0.35, o3 0.24,
    # o2 0. Reviving (most wanted first, only while it brings the count closer to 10):
    # conv2 o1 (count 3), stem c3 (+3: 6), conv2 o3 (+2: 8), stem would add 4 (12, not closer),
    # conv2 o2 (+2: 10), stem would add 5 -> stop at exactly 10.
    assert stats.regrown_channels == {"stem": 1, "conv2": 3}
    assert [m.tolist() for m in mk.groups.group_masks] == [[False, False, True, True], [True, True, True, True]]
    count = sum(int(m.sum()) for m in mk.masks.values())
    assert count == stats.active == 10 == 2 * (1 + 4)
    # Weights. Kept groups keep their values; o1 was pruned and regrown in the same round: it keeps
    # its row and its BatchNorm values (its columns 0, 1 are gone with stem c0, c1).
    stem_w = model.stem.weight.flatten().tolist()
    assert stem_w[:3] == [0.0, 0.0, 2.0] and 0 < abs(stem_w[3]) <= 1.0  # c3 revived: fresh U(-1, 1)
    w2 = model.conv2.weight.detach()[:, :, 0, 0]
    assert w2[:2].tolist() == [[0, 0, 2, 0], [0, 0, 2, 0]]
    # o2, o3 revived: fresh rows U(-1/2, 1/2) on the live inputs c2, c3, zero on the pruned ones
    assert (
        w2[2:, :2].tolist() == [[0, 0], [0, 0]] and bool((w2[2:, 2:] != 0).all()) and float(w2[2:].abs().max()) <= 0.5
    )
    assert model.bn1.weight.tolist() == [0, 0, 2, 1] and model.bn1.bias.tolist() == [0, 0, 0.5, 0]
    assert model.bn2.weight.tolist() == [2, 2, 1, 1] and model.bn2.bias.tolist() == [0.5, 0.5, 0, 0]
    assert model.bn1.running_mean[3] == 0 and model.bn1.running_var[3] == 1
    assert model.fc.weight.tolist() == [[1, 0, 0, 0], [0, 0, 0, 0]]  # revived channels are not read yet
    # Regrowth does not change the function: the output equals the pruned-only model's.
    with torch.no_grad():
        for c in (0, 1):
            before.stem.weight[c] = 0
            before.bn1.weight[c] = before.bn1.bias[c] = 0
            before.conv2.weight[:, c] = 0
    x = torch.rand(5, 1, 4, 4)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), before.eval()(x), atol=1e-7)


def brute_norms(model: nn.Module, groups: set[frozenset], tensors) -> dict[frozenset, float]:
    """Squared norm of every group from its members by name (rows, columns), independent of the masker."""
    out = {}
    for g in groups:
        total = 0.0
        for name, role, c in g:
            if role == "bn":
                continue
            t = tensors(model.get_submodule(name).weight)
            total += float((t[c] if role == "out" else t[:, c]).double().pow(2).sum())
        out[g] = total
    return out


def test_prune_choices_and_regrow_choices_against_brute_force_norms():
    torch.manual_seed(3)
    model = randomize_bn(TwoBlock())
    opt, mk = make(model, 0.4, seed=3)
    groups = brute_force_groups(model, X)
    # a space's key is one of its producers' names: its groups are those holding that producer's filters
    by_key = {k: [g for g in groups if any(n == k and r == "out" for n, r, _ in g)] for k in mk.groups.keys}
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                opt.state[m.weight]["momentum_buffer"] = torch.randn(m.weight.shape, generator=g)
    mk.apply_masks()
    active = {k: mk.groups.group_masks[i].clone() for i, k in enumerate(mk.groups.keys)}
    assert {g for k in by_key for g in by_key[k]} == groups and sum(map(len, by_key.values())) == len(groups) == 40
    # pruning only (target at the floor: nothing is regrown)
    norms = brute_norms(model, groups, lambda w: w.detach())
    mk.target_active = mk.groups.minimum_active()
    stats = mk.rewire(0)
    for i, k in enumerate(mk.groups.keys):
        members = sorted((gr for gr in by_key[k] if active[k][_channel(gr)]), key=lambda gr: (norms[gr], _channel(gr)))
        n_drop = min(round(0.5 * len(members)), len(members) - 1)
        expected = sorted(_channel(gr) for gr in members[:n_drop])
        got = sorted(torch.nonzero(active[k] & ~mk.groups.group_masks[i]).flatten().tolist())
        assert got == expected and stats.pruned_channels[k] == n_drop, k
    # regrowth only (a tiny rate prunes nothing): within a space, the revived are the best momenta
    dead = {k: ~mk.groups.group_masks[i].clone() for i, k in enumerate(mk.groups.keys)}
    moms = brute_norms(model, groups, lambda w: opt.state[w]["momentum_buffer"])
    mk.target_active = round(0.4 * mk.num_prunable)
    stats = mk.rewire(99)  # p = 0.5 * (1 - 99/100) = 0.005: round(p * n) = 0 everywhere
    assert sum(stats.pruned_channels.values()) == 0 and sum(stats.regrown_channels.values()) > 0
    for i, k in enumerate(mk.groups.keys):
        revived = sorted(torch.nonzero(dead[k] & mk.groups.group_masks[i]).flatten().tolist())
        ranked = sorted((gr for gr in by_key[k] if dead[k][_channel(gr)]), key=lambda gr: (-moms[gr], _channel(gr)))
        assert revived == sorted(_channel(gr) for gr in ranked[: len(revived)]), k


def _channel(g: frozenset) -> int:
    return next(iter(g))[2]


# --------------------------------------------------------------------------------------------------
# Counts, zeros and removability over many rewirings


def brute_count(mk: Masking, model: nn.Module, prune_linear: bool = False) -> int:
    kinds = (nn.Conv2d, nn.Linear) if prune_linear else (nn.Conv2d,)
    return sum(int((mk.masks[n] != 0).sum()) for n, m in model.named_modules() if isinstance(m, kinds))


def largest_group(model: nn.Module, mk: Masking, prune_linear: bool = False) -> int:
    """Prunable weights of the largest group with every other group active (a bound on any marginal)."""
    sizes = []
    for space in mk.groups.spaces:
        size = 0
        for name in space.producers:
            size += model.get_submodule(name).weight[0].numel()
        for name in space.consumers:
            layer = model.get_submodule(name)
            if isinstance(layer, nn.Conv2d) or prune_linear:
                size += layer.weight[:, 0].numel()
        sizes.append(size)
    return max(sizes)


def assert_masked_zero(model: nn.Module, mk: Masking) -> None:
    """Every parameter the group masks cover is exactly 0 where its group is dead (checked by name)."""
    for k, space in enumerate(mk.groups.spaces):
        dead = torch.nonzero(~mk.groups.group_masks[k]).flatten()
        for name in space.producers:
            conv = model.get_submodule(name)
            assert bool((conv.weight[dead] == 0).all())
            if conv.bias is not None:
                assert bool((conv.bias[dead] == 0).all())
        for name in space.norms:
            bn = model.get_submodule(name)
            assert bool((bn.weight[dead] == 0).all()) and bool((bn.bias[dead] == 0).all())
        for name in space.consumers:
            assert bool((model.get_submodule(name).weight[:, dead] == 0).all())


def train_steps(model, opt, mk, n, seed, x_shape=(8, 3, 8, 8), classes=4):
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(n):
        x = torch.rand(*x_shape, generator=g)
        t = torch.randint(0, classes, (x_shape[0],), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), t).backward()
        mk.step()


@pytest.mark.parametrize("net,classes", [(Chain, 5), (TwoBlock, 4)])
@pytest.mark.parametrize("density", [0.1, 0.3, 0.7])
def test_exact_count_structure_and_zeros_over_rewirings(net, classes, density):
    torch.manual_seed(5)
    model = randomize_bn(net())
    opt, mk = make(model, density, seed=5, total_epochs=12, wd=5e-4)
    target = round(density * mk.num_prunable)
    bound = largest_group(model, mk) / 2
    for epoch in range(-1, 12):
        if epoch >= 0:
            train_steps(model, opt, mk, 2, seed=epoch, classes=classes)
            assert_masked_zero(model, mk)
            stats = mk.rewire(epoch)
            assert stats.active == brute_count(mk, model)
        count = brute_count(mk, model)
        assert abs(count - target) <= bound, (epoch, count, target)
        assert mk.mask_density() == count / mk.num_prunable
        assert_masked_zero(model, mk)
        assert all(int(m.sum()) >= 1 for m in mk.groups.group_masks)
        for name, mask in mk.masks.items():  # a layer's mask is (output group) x (input group)
            layer = next(lay for lay in mk.groups.layers if lay.name == name)
            out = (
                mk.groups.group_masks[layer.out_space]
                if layer.out_space is not None
                else torch.ones(mask.shape[0], dtype=torch.bool)
            )
            inp = (
                mk.groups.group_masks[layer.in_space]
                if layer.in_space is not None
                else torch.ones(mask.shape[1], dtype=torch.bool)
            )
            assert torch.equal(
                mask.bool(),
                (out[:, None] & inp[None, :]).view(*mask.shape[:2], *[1] * (mask.dim() - 2)).expand_as(mask),
            )


def test_prune_linear_counts_the_head_columns():
    torch.manual_seed(6)
    model = Chain()
    _, mk = make(model, 0.3, prune_linear=True)
    assert "head" in mk.masks and mk.num_prunable == 162 + 432 + 64 + 40
    assert abs(brute_count(mk, model, prune_linear=True) - mk.target_active) <= largest_group(model, mk, True) / 2


def shrink_check(model: nn.Module, mk: Masking, x: torch.Tensor) -> None:
    """Shrink the trained masked model: equal outputs, exactly the dead groups gone, counts equal."""
    model.eval()
    report = shrink(model, x[:2])
    with torch.no_grad():
        assert float((report.model(x) - model(x)).abs().max()) <= TOLERANCE
    for k, space in enumerate(mk.groups.spaces):
        alive = int(mk.groups.group_masks[k].sum())
        for name in space.producers:
            assert report.layers[name]["out"][1] == alive, (space.key, name)
        for name in space.consumers:
            assert report.layers[name]["in"][1] == alive, (space.key, name)
    assert report.channels_removed == sum(int((~m).sum()) for m in mk.groups.group_masks)
    conv_weights = sum(m.weight.numel() for m in report.model.modules() if isinstance(m, nn.Conv2d))
    assert conv_weights == brute_count(mk, model)  # the shrunk convs hold exactly the mask's active weights
    others = sum(p.numel() for n, p in report.model.named_parameters() if not _is_conv_weight(report.model, n))
    assert report.params_after == count_params(report.model) == conv_weights + others


def _is_conv_weight(model: nn.Module, param_name: str) -> bool:
    module, _, attr = param_name.rpartition(".")
    return attr == "weight" and isinstance(model.get_submodule(module), nn.Conv2d)


@pytest.mark.parametrize("net,classes", [(Chain, 5), (TwoBlock, 4)])
def test_every_pruned_group_is_physically_removed(net, classes):
    torch.manual_seed(7)
    model = randomize_bn(net())
    opt, mk = make(model, 0.3, seed=7, total_epochs=6)
    for epoch in range(5):
        train_steps(model, opt, mk, 2, seed=10 + epoch, classes=classes)
        mk.rewire(epoch)
    train_steps(model, opt, mk, 2, seed=99, classes=classes)  # revived groups' readers learn
    shrink_check(model, mk, torch.rand(6, 3, 8, 8))


def test_resnet18_channel_group_shrinks_exactly():
    torch.manual_seed(8)
    model = randomize_bn(get_model("resnet18", num_classes=10, width=0.25))
    x = torch.rand(4, 3, 32, 32)
    opt, mk = make(model, 0.25, seed=8, total_epochs=4, example_input=x)
    for epoch in range(2):
        train_steps(model, opt, mk, 1, seed=epoch, x_shape=(4, 3, 32, 32), classes=10)
        mk.rewire(epoch)
    train_steps(model, opt, mk, 1, seed=5, x_shape=(4, 3, 32, 32), classes=10)
    shrink_check(model, mk, x)


# --------------------------------------------------------------------------------------------------
# Settings, minimum, checkpoints


def test_minimum_density_is_one_group_per_space_and_is_refused_below():
    model = Chain()  # one group per space: c1 3x1x9 + c2 1x1x9 + c3 1x1 = 37 of 162 + 432 + 64 = 658
    assert minimum_density(model, "channel_group", example_input=X) == 37 / 658
    assert minimum_density(model, "channel_group") == 37 / 658  # the default 32x32 probe gives the same spaces
    with pytest.raises(
        ValueError, match=r"minimum for channel_group pruning of this model \(0\.05623\).*density >= 0\.05624"
    ):
        make(model, 0.05)
    make(Chain(), 0.05624)


def test_macs_per_weight_by_hand():
    """Chain on 8x8: c1, c2 at 64 positions, c3 at 16 (after the pool), the head at 1."""
    _, mk = make(Chain(), 0.5)
    # c1's space: c1 filters (27 weights) and c2 slices (72) at 64 positions; c2's space: c2 filters (54)
    # at 64 and c3 slices (8) at 16; c3's space: c3 filters (8) at 16 and head slices (5) at 1
    assert mk.groups.macs_per_weight == pytest.approx([64.0, (54 * 64 + 8 * 16) / 62, (8 * 16 + 5) / 13])
    assert mk.groups.space_size == [99 * 6, 62 * 8, 13 * 8]


def test_dense_channel_group_is_a_no_op():
    model = Chain()
    opt, mk = make(model, 1.0)
    ref = copy.deepcopy(model.state_dict())
    stats = mk.rewire(0)
    assert sum(stats.pruned_channels.values()) == 0 and all(bool(m.all()) for m in mk.groups.group_masks)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ref.items())


def test_state_dict_round_trip_is_bit_exact():
    torch.manual_seed(9)
    model = randomize_bn(TwoBlock())
    opt, mk = make(model, 0.3, seed=9, total_epochs=8)
    train_steps(model, opt, mk, 2, seed=1)
    mk.rewire(0)
    buf = io.BytesIO()
    torch.save({"mk": mk.state_dict(), "model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2 = TwoBlock()
    opt2, mk2 = make(model2, 0.3, seed=123, total_epochs=8)  # other masks and generator until loaded
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    mk2.load_state_dict(ckpt["mk"])
    for m, o, k in ((model, opt, mk), (model2, opt2, mk2)):
        for epoch in (1, 2):
            train_steps(m, o, k, 2, seed=epoch + 1)
            k.rewire(epoch)  # revives groups: draws fresh filters from the restored generator
    assert [g.tolist() for g in mk.groups.group_masks] == [g.tolist() for g in mk2.groups.group_masks]
    for (n, p), (_, q) in zip(model.state_dict().items(), model2.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    damaged = mk.state_dict()
    damaged["group_masks"] = dict(list(damaged["group_masks"].items())[1:])
    with pytest.raises(ValueError, match="group masks cover spaces"):
        mk2.load_state_dict(damaged)


def test_untraceable_model_names_the_fix():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.c(x) if x.sum() > 0 else self.c(-x)  # data-dependent control flow

    with pytest.raises(ValueError, match="use pruning: channel or irregular"):
        make(Branchy(), 0.5)
    assert math.isfinite(minimum_density(Branchy(), "channel"))
