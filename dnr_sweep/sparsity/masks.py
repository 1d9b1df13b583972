"""Binary masks over the prunable weights, and the masker that owns the optimizer step.

DNR trains a sparse network from the start (paper Section 3.1, Algorithm 1): every prunable weight
``theta_l`` is multiplied by a 0/1 mask ``m_l`` after each optimizer step, and the masks are rewired
at the end of each epoch (:mod:`dnr_sweep.sparsity.rewiring`). :class:`Masking` holds the masks and does
both, like TimDettmers/sparse_learning's ``Masking`` but with masks on the weight's own device.

Prunable: the ``weight`` of every ``nn.Conv2d`` (and ``nn.Linear`` with ``prune_linear=True``), keyed
by module name in ``named_modules()`` order. Initial masks are seeded by the caller's ``generator``:

- **irregular**: ``round(density * numel)`` active weights per layer; the total never changes after.
- **channel** (Section 3.3): input slices ``W[:, c]``; the stem stays dense (its inputs are the
  image's colours) and every other layer keeps at least one channel.
- **channel_group** (ours): whole feature-map channels (:mod:`dnr_sweep.sparsity.channel_groups`).

A density below a mode's floor raises ``ValueError`` naming :func:`minimum_density`. Momentum is read
from the optimizer (``momentum_buffer`` for SGD, ``exp_avg`` for Adam), zeros when missing.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dnr_sweep.sparsity.accounting import prunable_layers
from dnr_sweep.sparsity.channel_groups import ChannelGroups
from dnr_sweep.sparsity.rewiring import (
    RewireStats,
    channel_mask_to_full,
    rewire_channel,
    rewire_irregular,
    round_to_slices,
)

__all__ = ["Masking", "PRUNING_KINDS", "minimum_density"]

PRUNING_KINDS: tuple[str, ...] = ("irregular", "channel", "channel_group")
_MOMENTUM_KEYS = ("momentum_buffer", "exp_avg")


def _check_density(density: float) -> float:
    if not isinstance(density, int | float) or isinstance(density, bool) or not (0.0 < density <= 1.0):
        raise ValueError(f"density must be a number in (0, 1], got {density!r}")
    return float(density)


def _check_prune_rate(prune_rate: float) -> float:
    if not isinstance(prune_rate, int | float) or isinstance(prune_rate, bool) or not (0.0 <= prune_rate <= 1.0):
        raise ValueError(f"prune_rate must be a number in [0, 1], got {prune_rate!r}")
    return float(prune_rate)


def _ceil_to(value: Fraction, digits: int = 4) -> str:
    """``value`` (exact: a count over a count) rounded *up* to ``digits`` significant digits, as text (a
    density that is enough). Exact arithmetic: in floats 7/25 * 1000 is 280.00000000000006, "0.2801"."""
    value = Fraction(value)
    if value <= 0:
        return "0"
    scale = Fraction(10) ** (digits - 1 - math.floor(math.log10(value)))
    return f"{float(math.ceil(value * scale) / scale):.{digits}g}"


def _channel_floor(weights: list[Tensor]) -> int:
    """Channel mode's smallest active count: the dense stem plus one input channel per other layer."""
    return weights[0].numel() + sum(w.numel() // w.shape[1] for w in weights[1:])


def minimum_density(
    model: nn.Module, pruning: str, prune_linear: bool = False, example_input: Tensor | None = None
) -> float:
    """The smallest ``density`` that ``Masking`` accepts for ``model`` in ``pruning`` mode.

    - irregular: every prunable layer keeps at least one weight: ``layers / prunable weights``
      (a smaller target is met within one weight per layer).
    - channel: the dense stem plus one input channel of every other prunable layer; a smaller
      target is refused at ``Masking`` construction.
    - channel_group: one channel in every prunable channel space (the model is traced with
      ``torch.fx`` on ``example_input``, default a 32x32 zero batch); a smaller target is refused.

    Pure: reads only the shapes of the prunable weights (no masks, no optimizer; channel_group
    traces the model once, in eval mode, and restores its mode). For the config dry run
    (``dnr-sweep validate``) and the error message of ``Masking``.
    """
    _check_pruning(pruning)
    weights = [m.weight for _, m in prunable_layers(model, bool(prune_linear))]
    if not weights:
        kinds = "Conv2d or Linear" if prune_linear else "Conv2d"
        raise ValueError(f"model has no prunable ({kinds}) layer")
    total = sum(w.numel() for w in weights)
    if pruning == "irregular":
        return len(weights) / total
    if pruning == "channel_group":
        groups = ChannelGroups(model, prune_linear=bool(prune_linear), example_input=example_input)
        return groups.minimum_active() / total
    return _channel_floor(weights) / total


def _check_pruning(pruning: str) -> str:
    if pruning not in PRUNING_KINDS:
        raise ValueError(f"pruning must be one of {list(PRUNING_KINDS)}, got {pruning!r}")
    return pruning


def _uniform_with_floor(budget: int, channels: list[int], slice_sizes: list[int]) -> list[Fraction]:
    """Real channel counts ``max(1, lam * channels_l)`` whose weights sum to ``budget`` exactly.

    One uniform density ``lam`` for every layer whose share is at least one channel; the others get
    exactly one. Requires ``sum(slice_sizes) <= budget <= sum(channels_l * slice_sizes_l)``.
    """
    floored: set[int] = set()
    while True:
        free = [i for i in range(len(channels)) if i not in floored]
        rest = budget - sum(slice_sizes[i] for i in floored)
        room = sum(channels[i] * slice_sizes[i] for i in free)
        lam = Fraction(rest, room) if room else Fraction(0)
        low = {i for i in free if lam * channels[i] < 1}
        if not low:
            return [Fraction(1) if i in floored else lam * channels[i] for i in range(len(channels))]
        floored |= low


class Masking:
    """Masks of a model's prunable weights; applies them after each step and rewires them per epoch.

    Typical use (one epoch)::

        masking = Masking(model, optimizer, density=0.05, pruning="irregular",
                          prune_rate=0.5, total_epochs=200, generator=torch.Generator().manual_seed(0))
        for x, t in loader:
            optimizer.zero_grad(); loss_fn(model(x), t).backward()
            masking.step()                 # optimizer.step(), then weights *= masks
        stats = masking.rewire(epoch)      # end of epoch `epoch` (0-based)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        density: float,
        pruning: Literal["irregular", "channel", "channel_group"],
        prune_rate: float,
        total_epochs: int,
        prune_linear: bool = False,
        generator: torch.Generator | None = None,
        example_input: Tensor | None = None,
    ) -> None:
        self.density = _check_density(density)
        self.pruning = _check_pruning(pruning)
        self.prune_rate = _check_prune_rate(prune_rate)
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"total_epochs must be a positive integer, got {total_epochs!r}")
        self.total_epochs = total_epochs
        self.prune_linear = bool(prune_linear)
        self.model = model
        self.optimizer = optimizer

        layers = prunable_layers(model, self.prune_linear)
        if not layers:
            kinds = "Conv2d or Linear" if self.prune_linear else "Conv2d"
            raise ValueError(f"model has no prunable ({kinds}) layer")
        self._names: list[str] = [name for name, _ in layers]
        self._weights: list[nn.Parameter] = [m.weight for _, m in layers]
        self.num_prunable: int = sum(w.numel() for w in self._weights)

        self.masks: dict[str, Tensor] = {}
        #: channel_group only: the groups and the extra (parameter, mask) pairs masked with them
        self.groups: ChannelGroups | None = None
        self._extra: list[tuple[Tensor, Tensor]] = []
        #: channel_group only: draws the fresh filters of regrown groups (seeded from `generator`)
        self._rng: torch.Generator | None = None
        if self.pruning == "irregular":
            self._init_irregular(generator)
            self.target_active: int = self._count_active()
        elif self.pruning == "channel":
            self.target_active = round(self.density * self.num_prunable)
            self._init_channel(generator)
        else:
            self.target_active = round(self.density * self.num_prunable)
            self._init_channel_group(generator, example_input)
        self.apply_masks()

    # ------------------------------------------------------------------ initialisation
    def _init_irregular(self, generator: torch.Generator | None) -> None:
        for name, w in zip(self._names, self._weights, strict=True):
            n = w.numel()
            k = n if self.density >= 1.0 else max(1, round(self.density * n))
            flat = torch.zeros(n, dtype=w.dtype)
            flat[torch.randperm(n, generator=generator)[:k]] = 1.0
            self.masks[name] = flat.reshape(w.shape).to(w.device)

    def _init_channel(self, generator: torch.Generator | None) -> None:
        stem_w = self._weights[0]
        self.masks[self._names[0]] = torch.ones_like(stem_w)
        others = list(zip(self._names[1:], self._weights[1:], strict=True))
        if self.density >= 1.0:
            for name, w in others:
                self.masks[name] = torch.ones_like(w)
            return
        floor = _channel_floor(self._weights)
        if self.target_active < floor:
            raise ValueError(
                f"density={self.density} is below the minimum for channel pruning of this model "
                f"({floor / self.num_prunable:.4g}): the first layer {self._names[0]!r} is kept dense "
                f"({stem_w.numel()} weights) and every other prunable layer keeps at least one input "
                f"channel ({floor - stem_w.numel()} weights), {floor} of {self.num_prunable} prunable "
                f"weights; set density >= {_ceil_to(Fraction(floor, self.num_prunable))} (or use pruning='irregular')"
            )
        budget = self.target_active - stem_w.numel()
        slice_sizes = [w.numel() // w.shape[1] for _, w in others]
        ideal = _uniform_with_floor(budget, [w.shape[1] for _, w in others], slice_sizes)
        counts = round_to_slices(ideal, slice_sizes, budget)
        for (name, w), c in zip(others, counts, strict=True):
            ch = torch.zeros(w.shape[1], dtype=w.dtype)
            ch[torch.randperm(w.shape[1], generator=generator)[:c]] = 1.0
            self.masks[name] = channel_mask_to_full(ch, w).to(w.device)

    def _init_channel_group(self, generator: torch.Generator | None, example_input: Tensor | None) -> None:
        self.groups = ChannelGroups(self.model, prune_linear=self.prune_linear, example_input=example_input)
        floor = self.groups.minimum_active()
        if self.density < 1.0 and self.target_active < floor:
            raise ValueError(
                f"density={self.density} is below the minimum for channel_group pruning of this model "
                f"({floor / self.num_prunable:.4g}): every prunable channel space keeps at least one channel "
                f"({len(self.groups.spaces)} spaces, {floor} of {self.num_prunable} prunable weights); set "
                f"density >= {_ceil_to(Fraction(floor, self.num_prunable))} (or use pruning='irregular')"
            )
        if self.density < 1.0:
            self.groups.init_masks(self.target_active, generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        self._rng = torch.Generator().manual_seed(seed)
        self._refresh_group_masks()

    def _refresh_group_masks(self) -> None:
        """Layer masks and extra masks from the group masks (channel_group)."""
        assert self.groups is not None
        derived = self.groups.masks()
        for name in self._names:
            self.masks[name] = derived[name]
        self._extra = self.groups.extra_masks()

    @torch.no_grad()
    def _reinit_groups(self, space: int, channels: Tensor) -> None:
        """Fresh producer filters (PyTorch's default conv init), bias 0, BatchNorm (1, 0; 0, 1) for
        groups revived from zero; their readers' slices stay 0 (see channel_groups)."""
        assert self.groups is not None and self._rng is not None
        modules = dict(self.model.named_modules())
        spec = self.groups.spaces[space]
        idx = channels.to(torch.long)
        for name in spec.producers:
            conv = modules[name]
            w = conv.weight
            fan_in = w.numel() // w.shape[0]
            bound = 1.0 / math.sqrt(fan_in)
            fresh = torch.empty((len(idx), *w.shape[1:]), dtype=w.dtype).uniform_(-bound, bound, generator=self._rng)
            w[idx.to(w.device)] = fresh.to(w.device)
            if conv.bias is not None:
                conv.bias[idx.to(conv.bias.device)] = 0.0
        for name in spec.norms:
            bn = modules[name]
            at = idx.to(bn.running_mean.device) if bn.running_mean is not None else idx
            if bn.weight is not None:
                bn.weight[idx.to(bn.weight.device)] = 1.0
                bn.bias[idx.to(bn.bias.device)] = 0.0
            if bn.running_mean is not None:
                bn.running_mean[at] = 0.0
                bn.running_var[at] = 1.0

    # ------------------------------------------------------------------ masks
    @property
    def layer_names(self) -> list[str]:
        """Names of the prunable layers, in network order."""
        return list(self._names)

    @property
    def weights(self) -> list[nn.Parameter]:
        """The prunable layers' weight parameters (live, not copies), in :attr:`layer_names` order;
        ``masks[name]`` masks the weight at the same position."""
        return list(self._weights)

    def named_weights(self) -> list[tuple[str, nn.Parameter]]:
        """``(layer name, weight parameter)`` per prunable layer, in network order."""
        return list(zip(self._names, self._weights, strict=True))

    @torch.no_grad()
    def apply_masks(self) -> None:
        """``weight *= mask`` for every prunable layer (channel_group: and the extra masked parameters),
        in one ``torch._foreach_mul_`` call."""
        params = list(self._weights) + [p for p, _ in self._extra]
        torch._foreach_mul_(params, [self.masks[n] for n in self._names] + [m for _, m in self._extra])

    def step(self) -> None:
        """``optimizer.step()``, then re-apply the masks so pruned weights stay exactly zero."""
        self.optimizer.step()
        self.apply_masks()

    def _count_active(self) -> int:
        if self.groups is not None:
            return self.groups.active()  # exact from the group counts (the masks are their products)
        return sum(int((m != 0).sum().item()) for m in self.masks.values())

    def mask_density(self) -> float:
        """Active mask entries / all prunable weights."""
        return self._count_active() / self.num_prunable

    def layer_densities(self) -> dict[str, float]:
        """Per prunable layer (network order): active mask entries / its weights."""
        return {n: int((self.masks[n] != 0).sum().item()) / self.masks[n].numel() for n in self._names}

    # ------------------------------------------------------------------ rewiring
    def prune_rate_at(self, epoch: int) -> float:
        """``p_i = prune_rate * (1 - epoch / total_epochs)`` (epoch 0-based; 0 from ``total_epochs`` on)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        return max(0.0, self.prune_rate * (1.0 - epoch / self.total_epochs))

    def _momentum(self, w: nn.Parameter) -> Tensor:
        state = self.optimizer.state.get(w, {})
        for key in _MOMENTUM_KEYS:
            buf = state.get(key)
            if isinstance(buf, Tensor):
                return buf
        return torch.zeros_like(w)

    def rewire(self, epoch: int) -> RewireStats:
        """Prune and regrow at the end of epoch ``epoch`` (0-based) with ``p = prune_rate_at(epoch)``."""
        p = self.prune_rate_at(epoch)
        if self.pruning == "channel_group":
            return self._rewire_groups(epoch, p)
        names = self._names if self.pruning == "irregular" else self._names[1:]
        zeros = {n: 0 for n in names}
        if self.density >= 1.0 or p == 0.0 or not names:
            return RewireStats(epoch, p, dict(zeros), dict(zeros), {n: 0.0 for n in names}, self._count_active())
        weights = self._weights if self.pruning == "irregular" else self._weights[1:]
        masks = [self.masks[n] for n in names]
        momenta = [self._momentum(w) for w in weights]
        if self.pruning == "irregular":
            pruned, regrown, importance = rewire_irregular(weights, masks, momenta, p)
            stats = RewireStats(
                epoch,
                p,
                dict(zip(names, pruned, strict=True)),
                dict(zip(names, regrown, strict=True)),
                dict(zip(names, importance, strict=True)),
                0,
            )
        else:
            target_rest = self.target_active - self._weights[0].numel()
            pc, rc, pw, rw, importance = rewire_channel(weights, masks, momenta, p, target_rest)
            stats = RewireStats(
                epoch,
                p,
                dict(zip(names, pw, strict=True)),
                dict(zip(names, rw, strict=True)),
                dict(zip(names, importance, strict=True)),
                0,
                pruned_channels=dict(zip(names, pc, strict=True)),
                regrown_channels=dict(zip(names, rc, strict=True)),
            )
        self.apply_masks()
        return dataclasses.replace(stats, active=self._count_active())

    def _rewire_groups(self, epoch: int, p: float) -> RewireStats:
        assert self.groups is not None
        keys = self.groups.keys
        if self.density >= 1.0 or p == 0.0 or not keys:
            zeros = {k: 0 for k in keys}
            return RewireStats(epoch, p, dict(zeros), dict(zeros), {k: 0.0 for k in keys}, self._count_active(),
                               pruned_channels=dict(zeros), regrown_channels=dict(zeros))  # fmt: skip
        momenta = {layer.name: self._momentum(layer.module.weight) for layer in self.groups.layers}
        result = self.groups.rewire(momenta, p, self.target_active, self._reinit_groups)
        self._refresh_group_masks()
        self.apply_masks()
        return RewireStats(
            epoch, p, result.pruned_weights, result.regrown_weights, result.importance, self._count_active(),
            pruned_channels=result.pruned, regrown_channels=result.regrown,
        )  # fmt: skip

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Masks and settings; tensors and plain types only, so ``torch.load(weights_only=True)`` works.

        channel_group adds ``group_masks`` (by space key) and ``rng`` (the regrowth generator's state)."""
        extra: dict[str, Any] = {}
        if self.groups is not None and self._rng is not None:
            extra["group_masks"] = {
                k: m.detach().clone() for k, m in zip(self.groups.keys, self.groups.group_masks, strict=True)
            }
            extra["rng"] = self._rng.get_state()
        return extra | {
            "masks": {n: self.masks[n].detach().clone() for n in self._names},
            "density": self.density,
            "pruning": self.pruning,
            "prune_rate": self.prune_rate,
            "total_epochs": self.total_epochs,
            "prune_linear": self.prune_linear,
            "target_active": self.target_active,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks from :meth:`state_dict` (same model layout and settings) and apply them."""
        for key in ("pruning", "prune_linear"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"checkpoint has {key}={state.get(key)!r}, this masker {getattr(self, key)!r}")
        if not math.isclose(float(state.get("density", math.nan)), self.density):
            raise ValueError(f"checkpoint has density={state.get('density')!r}, this masker {self.density!r}")
        masks = state["masks"]
        if list(masks) != self._names:
            raise ValueError(f"checkpoint masks cover layers {list(masks)}, this model has {self._names}")
        for n, w in zip(self._names, self._weights, strict=True):
            if tuple(masks[n].shape) != tuple(w.shape):
                raise ValueError(f"mask {n!r} has shape {tuple(masks[n].shape)}, weight {tuple(w.shape)}")
        self.masks = {
            n: masks[n].detach().to(device=w.device, dtype=w.dtype).clone()
            for n, w in zip(self._names, self._weights, strict=True)
        }
        if self.groups is not None and self._rng is not None:
            saved = state.get("group_masks")
            if not isinstance(saved, dict) or list(saved) != self.groups.keys:
                got = list(saved) if isinstance(saved, dict) else None
                raise ValueError(f"checkpoint group masks cover spaces {got}, this model has {self.groups.keys}")
            for k, key in enumerate(self.groups.keys):
                if tuple(saved[key].shape) != tuple(self.groups.group_masks[k].shape):
                    raise ValueError(f"group mask {key!r} has shape {tuple(saved[key].shape)}, "
                                     f"expected {tuple(self.groups.group_masks[k].shape)}")  # fmt: skip
                self.groups.group_masks[k] = (
                    saved[key].detach().to(self.groups.group_masks[k].device, torch.bool).clone()
                )
            derived = self.groups.masks()
            if any(not torch.equal(derived[n], self.masks[n]) for n in self._names):
                raise ValueError("checkpoint masks disagree with its group masks; the checkpoint is damaged")
            self._refresh_group_masks()
            self._rng.set_state(state["rng"])
        self.prune_rate = _check_prune_rate(state.get("prune_rate", self.prune_rate))
        self.total_epochs = int(state.get("total_epochs", self.total_epochs))
        self.target_active = int(state["target_active"])
        self.apply_masks()
