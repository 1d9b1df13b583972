"""Channel spaces: which convs, BatchNorms and readers share one feature map's channel axis.

A **channel space** is a feature map's channel axis as the network shares it: the convs that produce
it (several when residual adds tie them), the BatchNorms on it and the convs/linears that read it
(its **consumers**). Spaces are found by tracing with ``torch.fx``; anything the tracer does not
understand (the input, the output, an unknown op, a grouped conv, a module called twice) marks the
space ``fixed`` with the reason, so an unknown model is shrunk less, never wrongly.

Channel ``c`` is **removable** only when every consumer's weights for it are zero (a zero input to
BatchNorm yields its bias, not zero, so zero weights alone are not enough); each space keeps one.
Used by :mod:`dnr_sweep.export.shrinking` and :mod:`dnr_sweep.sparsity.channel_groups`. Why own code
and not Torch-Pruning: docs/DNR.md, "Channel groups".
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from dnr_sweep.foundation.errors import ExportError

__all__ = ["ChannelSpace", "find_channel_spaces"]


_PASSTHROUGH_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardtanh, nn.Identity, nn.Dropout,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_PASSTHROUGH_FUNCTIONS = {
    torch.relu, torch.nn.functional.relu, torch.nn.functional.max_pool2d, torch.nn.functional.avg_pool2d,
    torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.adaptive_max_pool2d,
}  # fmt: skip
_PASSTHROUGH_METHODS = {"relu", "relu_", "contiguous"}
_ADD_TARGETS = {operator.add, operator.iadd, torch.add, "add", "add_"}
_FLATTEN_TARGETS = {torch.flatten, "flatten", "view", "reshape"}


@dataclass
class ChannelSpace:
    """One shared channel axis: who writes it, who normalises it, who reads it."""

    channels: int
    producers: list[str] = field(default_factory=list)  # Conv2d names (output channels)
    norms: list[str] = field(default_factory=list)  # BatchNorm2d names
    consumers: list[str] = field(default_factory=list)  # Conv2d / Linear names (input channels)
    fixed: str | None = None  # why this space must keep all its channels, or None
    removable: list[int] = field(default_factory=list)  # channel indices every consumer ignores


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, ids: Sequence[int]) -> int:
        root = self.find(ids[0])
        for i in ids[1:]:
            self.parent[self.find(i)] = root
        return root


def _dead_input_channels(module: nn.Module) -> torch.Tensor:
    """Bool per input channel: all weights reading it are exactly zero."""
    w = module.weight.detach()
    return w.transpose(0, 1).reshape(w.shape[1], -1).abs().amax(dim=1) == 0


def find_channel_spaces(model: nn.Module, example_input: torch.Tensor) -> list[ChannelSpace]:
    """The model's channel spaces (see the module docstring), with their removable channels.

    ``example_input`` is one batch the model accepts (its shape decides whether a ``flatten`` sees
    1x1 maps). The model is traced with ``torch.fx.symbolic_trace`` and run once in eval mode.
    """
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds; all mean "cannot trace"
        raise ExportError(f"cannot trace {type(model).__name__} with torch.fx ({exc}); "
                          "shrinking needs a model without data-dependent control flow") from exc  # fmt: skip
    was_training = model.training
    graph_module.eval()
    with torch.no_grad():
        ShapeProp(graph_module).propagate(example_input)
    model.train(was_training)
    modules = dict(graph_module.named_modules())

    uf = _UnionFind()
    space_of: dict[fx.Node, int] = {}
    fixed: dict[int, str] = {}  # space id -> reason (resolved to roots at the end)
    roles: list[tuple[int, str, str]] = []  # (space id, role, module name)
    channels: dict[int, int] = {}
    calls: dict[str, int] = {}

    def new_space(n_channels: int | None = None, reason: str | None = None) -> int:
        sid = uf.new()
        if n_channels is not None:
            channels[sid] = n_channels
        if reason is not None:
            fixed[sid] = reason
        return sid

    def tensor_args(node: fx.Node) -> list[fx.Node]:
        return [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]

    def fix_inputs(node: fx.Node, reason: str) -> None:
        for arg in tensor_args(node):
            if arg in space_of:
                fixed[space_of[arg]] = reason

    for node in graph_module.graph.nodes:
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if node.op == "placeholder":
            space_of[node] = new_space(reason="network input")
        elif node.op == "get_attr":
            space_of[node] = new_space(reason=f"tensor attribute {node.target}")
        elif node.op == "output":
            fix_inputs(node, "network output")
        elif node.op == "call_module":
            module = modules[node.target]
            name = str(node.target)
            calls[name] = calls.get(name, 0) + 1
            if isinstance(module, nn.Conv2d) and module.groups == 1 and first is not None:
                roles.append((space_of[first], "consumer", name))
                space_of[node] = new_space(module.out_channels)
                roles.append((space_of[node], "producer", name))
            elif isinstance(module, nn.Linear) and first is not None and first.meta.get("tensor_meta") is not None \
                    and len(first.meta["tensor_meta"].shape) == 2:  # fmt: skip
                roles.append((space_of[first], "consumer", name))
                space_of[node] = new_space(reason=f"output of linear {name}")
            elif isinstance(module, nn.BatchNorm2d) and first is not None:
                space_of[node] = space_of[first]
                roles.append((space_of[node], "norm", name))
            elif isinstance(module, _PASSTHROUGH_MODULES) and first is not None:
                space_of[node] = space_of[first]
            else:
                fix_inputs(node, f"input of unsupported module {name} ({type(module).__name__})")
                space_of[node] = new_space(reason=f"output of unsupported module {name}")
        elif node.target in _ADD_TARGETS and tensor_args(node):
            space_of[node] = uf.union([space_of[a] for a in tensor_args(node)])
        elif node.target in _FLATTEN_TARGETS and first is not None and _flattens_1x1(first, node):
            space_of[node] = space_of[first]
        elif (node.target in _PASSTHROUGH_FUNCTIONS or node.target in _PASSTHROUGH_METHODS) and first is not None:
            space_of[node] = space_of[first]
        else:
            fix_inputs(node, f"input of unsupported operation {node.target}")
            space_of[node] = new_space(reason=f"output of unsupported operation {node.target}")

    spaces: dict[int, ChannelSpace] = {}
    for sid, n in channels.items():
        spaces.setdefault(uf.find(sid), ChannelSpace(channels=n))
    for sid, role, name in roles:
        root = uf.find(sid)
        space = spaces.setdefault(root, ChannelSpace(channels=0))
        getattr(space, {"producer": "producers", "norm": "norms", "consumer": "consumers"}[role]).append(name)
    for sid, reason in fixed.items():
        root = uf.find(sid)
        if root in spaces and spaces[root].fixed is None:
            spaces[root].fixed = reason
    for space in spaces.values():
        if not space.channels and space.consumers:  # e.g. the network input: size it by its reader
            space.channels = int(modules[space.consumers[0]].weight.shape[1])
        shared = [n for n in (*space.producers, *space.norms, *space.consumers) if calls.get(n, 0) > 1]
        if space.fixed is None and shared:
            space.fixed = f"module {shared[0]} is called more than once"
        if space.fixed is None and not space.producers:
            space.fixed = "no conv produces it"
        if space.fixed is None and not space.consumers:
            space.fixed = "no conv or linear reads it"
        if space.fixed is not None:
            continue
        dead = torch.ones(space.channels, dtype=torch.bool)
        for name in space.consumers:
            dead &= _dead_input_channels(modules[name])
        removable = [int(c) for c in torch.nonzero(dead).flatten()]
        if len(removable) == space.channels:  # keep one channel: zero-size layers are not worth the risk
            removable = removable[1:]
        space.removable = removable
    return list(spaces.values())


def _flattens_1x1(source: fx.Node, node: fx.Node) -> bool:
    """``node`` turns an (N, C, 1, 1) map into (N, C) features (channel c stays feature c)."""
    src, out = source.meta.get("tensor_meta"), node.meta.get("tensor_meta")
    if src is None or out is None:
        return False
    s, o = tuple(src.shape), tuple(out.shape)
    return len(s) == 4 and s[2:] == (1, 1) and o == s[:2]
