"""Channel groups: the unit of ``channel_group`` DNR, a feature-map channel that can be physically removed.

The paper's channel mode (Section 3.3) prunes input slices ``W[:, c]`` layer by layer, but a feature
map's channel is shared by the filters that write it, its BatchNorm channel and every layer that reads
it (for a residual stream, all of them). ``channel_group`` mode (ours, beyond the paper) prunes that
coupled set at once, so every pruned channel is removable by ``dnr-sweep export`` and compression
becomes speed. The sets come from :func:`dnr_sweep.sparsity.channel_spaces.find_channel_spaces`; a
``fixed`` space (image input, head output, anything the tracer does not understand) is never pruned.

A pruned group holds its producer filters and biases, BatchNorm ``gamma``/``beta`` and consumer
slices at exactly 0, so the channel is exactly zero in train and eval mode. Rewiring follows DNR with
a space in place of a layer: prune the groups of lowest norm per weight, share the regrowth budget by
momentum importance *per MAC*, revive groups one at a time to within half a group of the target; a
group revived from zero gets fresh producer filters so it can learn. The rules, and the measurement
behind pricing importance in compute: docs/DNR.md, "Channel groups".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dnr_sweep.sparsity.accounting import prunable_layers
from dnr_sweep.sparsity.channel_spaces import ChannelSpace, find_channel_spaces
from dnr_sweep.sparsity.rewiring import water_fill

__all__ = ["ChannelGroups", "GroupRewireResult", "GroupSpace", "probe_input"]


@dataclass(frozen=True)
class GroupSpace:
    """A prunable channel space: channel ``c`` of it is one group."""

    key: str  # the first producer's module name: a stable, readable identifier
    channels: int
    producers: tuple[str, ...]
    norms: tuple[str, ...]
    consumers: tuple[str, ...]


@dataclass(frozen=True)
class _Layer:
    """A Conv2d or Linear seen by the group structure: which space each side belongs to."""

    name: str
    module: nn.Module
    out_space: int | None  # index into ChannelGroups.spaces; None: a fixed side (always active)
    in_space: int | None
    kernel: int  # weights per (output, input) channel pair
    prunable: bool  # counted in the density budget


@dataclass
class GroupRewireResult:
    """What one channel-group rewiring did, per space key (groups) and in total (prunable weights)."""

    pruned: dict[str, int]
    regrown: dict[str, int]
    pruned_weights: dict[str, int]  # the count's drop as each space pruned, in space order
    regrown_weights: dict[str, int]  # the count's rise as each group was revived
    importance: dict[str, float]
    active: int
    revived: dict[str, list[int]] = field(default_factory=dict)  # channels revived from zero


def probe_input(model: nn.Module) -> Tensor:
    """A (2, C, 32, 32) zero batch for tracing ``model``: C from its normalisation stem or first conv.

    The channel spaces do not depend on the spatial size as long as the model accepts it (global
    pooling makes the head see 1x1 maps at any size); 32x32 suits every model here (VGG16 needs 32).
    """
    stem = getattr(model, "normalize", None)
    if stem is not None and isinstance(getattr(stem, "mean", None), Tensor):
        channels = int(stem.mean.shape[1])
    else:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ValueError("channel_group pruning needs a model with at least one Conv2d")
        channels = int(first.in_channels)
    param = next(model.parameters())
    return torch.zeros(2, channels, 32, 32, device=param.device, dtype=param.dtype)


class ChannelGroups:
    """The groups of a model, their masks (one bool vector per prunable space) and exact counts.

    ``group_masks[k]`` is the mask of ``spaces[k]``. Layer masks, the extra masks of biases,
    BatchNorm affine and unprunable readers, and active counts all derive from it.
    """

    def __init__(self, model: nn.Module, *, prune_linear: bool, example_input: Tensor | None = None) -> None:
        x = example_input if example_input is not None else probe_input(model)
        try:
            found = find_channel_spaces(model, x)
        except (ValueError, RuntimeError) as exc:  # ExportError (a ValueError) or a shape error
            raise ValueError(
                f"channel_group pruning could not analyse {type(model).__name__}'s channels ({exc}); "
                "use pruning: channel or irregular for this model"
            ) from exc
        self.model = model
        self.prune_linear = bool(prune_linear)
        prunable = {name for name, _ in prunable_layers(model, self.prune_linear)}
        modules = dict(model.named_modules())
        self.spaces: list[GroupSpace] = [
            GroupSpace(s.producers[0], s.channels, tuple(s.producers), tuple(s.norms), tuple(s.consumers))
            for s in found
            if _prunable_space(s)
        ]
        out_of: dict[str, int] = {}
        in_of: dict[str, int] = {}
        for k, space in enumerate(self.spaces):
            for name in space.producers:
                out_of[name] = k
            for name in space.consumers:
                in_of[name] = k
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        self.layers: list[_Layer] = []
        for name in names:
            module = modules[name]
            if name not in prunable and name not in in_of:
                continue  # an unprunable layer no group touches
            w = module.weight
            self.layers.append(_Layer(name, module, out_of.get(name), in_of.get(name),
                                      w.numel() // (w.shape[0] * w.shape[1]), name in prunable))  # fmt: skip
        self._touching: list[list[int]] = [
            [i for i, layer in enumerate(self.layers) if k in (layer.out_space, layer.in_space)]
            for k in range(len(self.spaces))
        ]
        device = next(model.parameters()).device
        self.group_masks: list[Tensor] = [torch.ones(s.channels, dtype=torch.bool, device=device) for s in self.spaces]
        positions = _output_positions(model, x, [layer.name for layer in self.layers])
        #: per space: all weights its groups hold, and the MACs one of those weights costs per image
        self.space_size: list[int] = [self.group_size(k) * s.channels for k, s in enumerate(self.spaces)]
        self.macs_per_weight: list[float] = [self._macs_per_weight(k, positions) for k in range(len(self.spaces))]

    # ------------------------------------------------------------------ counting
    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.spaces]

    def _side(self, layer: _Layer, counts: Sequence[float], out: bool) -> float:
        space = layer.out_space if out else layer.in_space
        if space is None:
            w = layer.module.weight
            return w.shape[0] if out else w.shape[1]
        return counts[space]

    def _layer_count(self, layer: _Layer, counts: Sequence[float]) -> float:
        return self._side(layer, counts, True) * self._side(layer, counts, False) * layer.kernel

    def count(self, counts: Sequence[float]) -> float:
        """Active prunable weights when space ``k`` has ``counts[k]`` active groups (exact for ints)."""
        return sum(self._layer_count(layer, counts) for layer in self.layers if layer.prunable)

    def active_counts(self) -> list[int]:
        return [int(m.sum().item()) for m in self.group_masks]

    def active(self) -> int:
        """Active prunable weights of the current masks."""
        return int(self.count(self.active_counts()))

    def marginal(self, k: int, counts: Sequence[int]) -> int:
        """Weights one more active group of space ``k`` adds to the count, given ``counts``."""
        more = list(counts)
        more[k] += 1
        layers = [self.layers[i] for i in self._touching[k] if self.layers[i].prunable]
        return int(sum(self._layer_count(lay, more) - self._layer_count(lay, counts) for lay in layers))

    def minimum_active(self) -> int:
        """The count with one group in every prunable space (the floor ``channel_group`` keeps)."""
        return int(self.count([1] * len(self.spaces)))

    def group_size(self, k: int) -> int:
        """All weights a group of space ``k`` holds (producer filters and consumer slices, any layer)."""
        size = 0
        for i in self._touching[k]:
            w = self.layers[i].module.weight
            if self.layers[i].out_space == k:
                size += w.numel() // w.shape[0]
            if self.layers[i].in_space == k:
                size += w.numel() // w.shape[1]
        return size

    def _macs_per_weight(self, k: int, positions: dict[str, int]) -> float:
        """MACs per image of one group of space ``k`` divided by its weights (a weight costs its layer's
        output positions: ``H_out * W_out`` for a conv, 1 for a linear)."""
        macs = 0
        for i in self._touching[k]:
            layer = self.layers[i]
            w = layer.module.weight
            if layer.out_space == k:
                macs += w.numel() // w.shape[0] * positions[layer.name]
            if layer.in_space == k:
                macs += w.numel() // w.shape[1] * positions[layer.name]
        return macs / self.group_size(k)

    # ------------------------------------------------------------------ masks
    def layer_mask(self, layer: _Layer, like: Tensor) -> Tensor:
        """The 0/1 mask of ``layer``'s weight: ``out_group[o] and in_group[i]``, constant per kernel."""
        ones_out = torch.ones(like.shape[0], dtype=torch.bool, device=like.device)
        ones_in = torch.ones(like.shape[1], dtype=torch.bool, device=like.device)
        out = self.group_masks[layer.out_space] if layer.out_space is not None else ones_out
        inp = self.group_masks[layer.in_space] if layer.in_space is not None else ones_in
        pair = out[:, None] & inp[None, :]
        shape = list(pair.shape) + [1] * (like.dim() - 2)
        return pair.reshape(shape).expand_as(like).to(like.dtype).contiguous()

    def masks(self) -> dict[str, Tensor]:
        """Weight masks of every layer the groups touch, by module name."""
        return {layer.name: self.layer_mask(layer, layer.module.weight) for layer in self.layers}

    def extra_masks(self) -> list[tuple[Tensor, Tensor]]:
        """(parameter, 0/1 mask) of everything masked besides the prunable weights: producer biases,
        BatchNorm affine, and the weights of unprunable readers (the linear head)."""
        pairs: list[tuple[Tensor, Tensor]] = []
        modules = dict(self.model.named_modules())
        for k, space in enumerate(self.spaces):
            vec = self.group_masks[k]
            for name in space.producers:
                bias = modules[name].bias
                if bias is not None:
                    pairs.append((bias, vec.to(bias.dtype)))
            for name in space.norms:
                bn = modules[name]
                for p in (bn.weight, bn.bias):
                    if p is not None:
                        pairs.append((p, vec.to(p.dtype)))
        for layer in self.layers:
            if not layer.prunable:
                w = layer.module.weight
                pairs.append((w, self.layer_mask(layer, w)))
        return pairs

    # ------------------------------------------------------------------ per-group sums
    def _pair(self, layer: _Layer, like: Tensor) -> Tensor:
        """(out, in) bool matrix of ``layer``'s active channel pairs."""
        out = self.group_masks[layer.out_space] if layer.out_space is not None else None
        inp = self.group_masks[layer.in_space] if layer.in_space is not None else None
        rows = out if out is not None else torch.ones(like.shape[0], dtype=torch.bool, device=like.device)
        cols = inp if inp is not None else torch.ones(like.shape[1], dtype=torch.bool, device=like.device)
        return rows[:, None] & cols[None, :]

    def group_sums(self, tensors: dict[str, Tensor], fn: Callable[[Tensor], Tensor], *,
                   active_only: bool = False) -> list[Tensor]:  # fmt: skip
        """Per space, a (channels,) float64 vector: ``fn`` of each layer's tensor summed over every group's
        filters (rows, where the layer produces the space) and slices (columns, where it reads it).
        ``active_only``: only the entries the current masks keep."""
        sums = [torch.zeros(s.channels, dtype=torch.float64, device=m.device)
                for s, m in zip(self.spaces, self.group_masks, strict=True)]  # fmt: skip
        for layer in self.layers:
            t = fn(tensors[layer.name])
            pair = t.sum(dim=tuple(range(2, t.dim()))) if t.dim() > 2 else t  # (out, in): kernel summed first
            if active_only:
                pair = pair * self._pair(layer, pair)
            if layer.out_space is not None:
                sums[layer.out_space] += pair.sum(dim=1).double()
            if layer.in_space is not None:
                sums[layer.in_space] += pair.sum(dim=0).double()
        return sums

    def active_entries(self) -> list[Tensor]:
        """Per space, how many active weights each group holds (any layer, prunable or not)."""
        sums = [torch.zeros(s.channels, dtype=torch.float64, device=m.device)
                for s, m in zip(self.spaces, self.group_masks, strict=True)]  # fmt: skip
        for layer in self.layers:
            w = layer.module.weight
            pair = self._pair(layer, w).double() * layer.kernel
            if layer.out_space is not None:
                sums[layer.out_space] += pair.sum(dim=1)
            if layer.in_space is not None:
                sums[layer.in_space] += pair.sum(dim=0)
        return sums

    # ------------------------------------------------------------------ initial masks
    def init_masks(self, target: int, generator: torch.Generator | None) -> None:
        """Random groups (per space a random permutation) at one uniform fraction ``q`` of each space's
        channels (at least one group), then filled group by group to within half a group of ``target``."""
        n_spaces = len(self.spaces)
        channels = [s.channels for s in self.spaces]
        lo, hi = 0.0, 1.0
        for _ in range(100):  # count(max(1, q * C)) is increasing in q; bisection to float precision
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.count([max(1.0, mid * c) for c in channels]) <= target else (lo, mid)
        wanted = [max(1.0, lo * c) for c in channels]
        orders = [torch.randperm(c, generator=generator).tolist() for c in channels]
        counts = [max(1, math.floor(w)) for w in wanted]
        counts = self._fill(counts, [w - c for w, c in zip(wanted, counts, strict=True)], target,
                            [c - n for c, n in zip(channels, counts, strict=True)])  # fmt: skip
        for k in range(n_spaces):
            mask = torch.zeros(channels[k], dtype=torch.bool)
            mask[orders[k][: counts[k]]] = True
            self.group_masks[k] = mask.to(self.group_masks[k].device)

    def _fill(self, counts: list[int], wanted: list[float], target: int, dead: list[int],
              revive: Callable[[int, list[int]], None] | None = None) -> list[int]:  # fmt: skip
        """Add groups one at a time (see the module docstring, step 4); returns the new counts.

        ``revive(k, counts)`` is told each group added to space ``k``, with the counts before it."""
        counts = list(counts)
        gained = [0] * len(counts)
        dead = list(dead)
        total = int(self.count(counts))
        while True:
            best, best_need = None, -math.inf
            for k in range(len(counts)):
                if dead[k] == 0:
                    continue
                if not total + self.marginal(k, counts) / 2 < target:
                    continue  # one more group of this space would not bring the count closer
                need = wanted[k] - gained[k]
                if need > best_need:
                    best, best_need = k, need
            if best is None:
                return counts
            if revive is not None:
                revive(best, counts)
            total += self.marginal(best, counts)
            counts[best] += 1
            gained[best] += 1
            dead[best] -= 1

    # ------------------------------------------------------------------ rewiring
    @torch.no_grad()
    def rewire(self, momenta: dict[str, Tensor], prune_rate: float, target: int,
               reinit: Callable[[int, Tensor], None]) -> GroupRewireResult:  # fmt: skip
        """Prune and regrow groups (module docstring, steps 1-4); updates ``group_masks`` in place.

        ``momenta`` maps every layer name to its momentum (zeros when none). ``reinit(k, channels)`` is
        called with the channels of space ``k`` revived from zero (dead before this rewiring), before the
        caller re-applies the masks. Weights are not touched here.
        """
        weights = {layer.name: layer.module.weight.detach() for layer in self.layers}
        before = [m.clone() for m in self.group_masks]
        # 1. importance: mean |momentum| over the active weights of each space's groups, per MAC
        abs_sum = self.group_sums(momenta, torch.abs, active_only=True)
        active_n = self.active_entries()
        importance_raw = []
        for k, vec in enumerate(self.group_masks):
            n = float(active_n[k][vec].sum().item())
            mean = float(abs_sum[k][vec].sum().item()) / n if n > 0 else 0.0
            importance_raw.append(mean / self.macs_per_weight[k])  # per MAC: see "Priced in compute"
        total_imp = sum(importance_raw)
        importance = [v / total_imp if total_imp > 0 else 0.0 for v in importance_raw]
        sizes = [self.group_size(k) for k in range(len(self.spaces))]
        # 2. prune the lowest-norm groups of every space
        norms = self.group_sums(weights, torch.square)
        counts = self.active_counts()
        pruned: dict[str, int] = {}
        pruned_w: dict[str, int] = {}
        for k, space in enumerate(self.spaces):
            score = norms[k].sqrt() / math.sqrt(sizes[k])
            n_drop = min(round(prune_rate * counts[k]), counts[k] - 1)
            drop = _lowest(score, self.group_masks[k], n_drop)
            was = int(self.count(counts))
            self.group_masks[k][drop] = False
            counts[k] -= int(drop.numel())
            pruned[space.key] = int(drop.numel())
            pruned_w[space.key] = was - int(self.count(counts))
        # 3. shares of the regrowth budget, in weights, then in wanted groups
        active_after = int(self.count(counts))
        budget = max(0, target - active_after)
        marg = [self.marginal(k, counts) for k in range(len(self.spaces))]
        dead = [s.channels - c for s, c in zip(self.spaces, counts, strict=True)]
        caps = [d * m for d, m in zip(dead, marg, strict=True)]
        budget_fit = min(budget, sum(caps))
        by_size = [float(n) for n in self.space_size]
        shares = water_fill(budget_fit, [i * n for i, n in zip(importance, by_size, strict=True)], caps, by_size)
        wanted = [float(sh / m) if m else 0.0 for sh, m in zip(shares, marg, strict=True)]
        # 4. revive groups one at a time, best momentum first
        mom_norms = self.group_sums(momenta, torch.square)
        queues = [_highest(mom_norms[k].sqrt() / math.sqrt(sizes[k]), ~self.group_masks[k]).tolist()
                  for k in range(len(self.spaces))]  # fmt: skip
        regrown = {s.key: 0 for s in self.spaces}
        regrown_w = {s.key: 0 for s in self.spaces}

        def revive(k: int, counts_now: list[int]) -> None:
            self.group_masks[k][queues[k].pop(0)] = True
            regrown[self.spaces[k].key] += 1
            regrown_w[self.spaces[k].key] += self.marginal(k, counts_now)

        if budget > 0:
            self._fill(counts, wanted, target, dead, revive)
        revived: dict[str, list[int]] = {}
        for k, space in enumerate(self.spaces):
            fresh = self.group_masks[k] & ~before[k]
            channels = torch.nonzero(fresh).flatten()
            if channels.numel():
                revived[space.key] = channels.tolist()
                reinit(k, channels)
        return GroupRewireResult(
            pruned=pruned, regrown=regrown, pruned_weights=pruned_w, regrown_weights=regrown_w,
            importance=dict(zip(self.keys, importance, strict=True)), active=self.active(), revived=revived,
        )  # fmt: skip


def _output_positions(model: nn.Module, x: Tensor, names: list[str]) -> dict[str, int]:
    """Output positions per image (``H * W``; 1 for a linear) of the named layers, from one eval pass."""
    positions: dict[str, int] = {}
    modules = dict(model.named_modules())

    def hook(name: str) -> Callable:
        def record(module: nn.Module, args: object, out: Tensor) -> None:
            positions[name] = int(out[0, 0].numel()) if out.dim() > 2 else 1

        return record

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in positions]
    if missing:
        raise ValueError(f"layers {missing} did not run on the example input; channel_group needs every "
                         "pruned layer to run once per forward pass")  # fmt: skip
    return positions


def _prunable_space(space: ChannelSpace) -> bool:
    return space.fixed is None and bool(space.producers) and bool(space.consumers) and space.channels > 1


def _lowest(score: Tensor, candidates: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` candidates with the lowest score; ties: lower index."""
    idx = torch.nonzero(candidates).flatten()
    if k <= 0:
        return idx[:0]
    return idx[torch.sort(score[idx], stable=True).indices[:k]]


def _highest(score: Tensor, candidates: Tensor) -> Tensor:
    """All candidate indices, highest score first; ties: lower index."""
    idx = torch.nonzero(candidates).flatten()
    return idx[torch.sort(score[idx], descending=True, stable=True).indices]
