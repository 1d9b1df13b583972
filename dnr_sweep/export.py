"""Physically shrinking a channel-pruned model, counting its cost, and exporting it with ``torch.export``.

Channel DNR zeroes whole input-channel slices ``W[:, c]`` of convolutions, but a masked model costs
as much as a dense one. :func:`shrink` removes the dead channels for real:

* A **channel space** is one feature map's channel axis as the network shares it: the convs that
  produce it (several when residual adds tie their outputs together), the BatchNorms on it, and the
  convs/linears that read it (its **consumers**). Spaces are found by tracing the model with
  ``torch.fx``; an ``add`` merges the spaces of its operands, ReLU/pooling/BatchNorm keep a space,
  and ``flatten`` keeps it only when the map is 1x1 (global pooling before the head).
* Channel ``c`` of a space is **removable** only when every consumer has all-zero weights for it.
  Then nobody reads the channel and dropping it (with the producers' output channel, their bias and
  the BatchNorm channel) is exact. A channel some consumer still reads stays, even if other
  consumers ignore it: a zero input to BatchNorm yields its bias, not zero, so "zero weights" alone
  is never enough.
* Spaces touching anything the tracer does not understand (the network input, the output, an
  unknown op, a grouped conv, a module called twice) are left alone, so a model of unknown shape
  shrinks less, never wrongly. At least one channel of each space is kept.

Why own code and not Torch-Pruning: the rule above is consumer-side ("all readers are zero"), which
Torch-Pruning's producer-side groups do not decide for us; with it we would still walk every group
and classify each member's handler. Tracing our plain models with ``torch.fx`` is about as short,
adds no dependency, and the tests check it against the unshrunk model's outputs (an oracle).

:func:`export_model` ties it together for a trained model folder: shrink, check the outputs, write a
``torch.export`` program (dynamic batch dimension) and a JSON summary with parameter and MAC counts
and measured CPU latency before and after.
"""

from __future__ import annotations

import copy
import json
import operator
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from dnr_sweep.errors import UserError

__all__ = [
    "ChannelSpace",
    "ExportError",
    "ShrinkReport",
    "TOLERANCE",
    "count_macs",
    "count_params",
    "default_input_size",
    "export_model",
    "find_channel_spaces",
    "measure_latency",
    "shrink",
]

#: largest allowed max |shrunk - masked| output difference (eval mode, float32)
TOLERANCE = 1e-5
#: largest batch the exported program accepts (its dynamic batch dimension's upper bound)
MAX_EXPORT_BATCH = 65536


class ExportError(UserError, ValueError):
    """A user-fixable export problem (bad input size, unsupported model); printed without a traceback."""


# --------------------------------------------------------------------------------------------------
# Channel spaces

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


# --------------------------------------------------------------------------------------------------
# Shrinking


@dataclass
class ShrinkReport:
    """The shrunk model and what changed. Counts are per image (MACs) and over all parameters."""

    model: nn.Module
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    channels_removed: int  # feature-map channels removed, summed over channel spaces
    layers: dict[str, dict[str, list[int]]]  # conv/linear name -> {"in": [before, after], "out": [...]}
    spaces: list[ChannelSpace]

    def summary(self) -> dict[str, Any]:
        return {
            "params_before": self.params_before, "params_after": self.params_after,
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "channels_removed": self.channels_removed,
            "input_channels_removed": {n: v["in"][0] - v["in"][1] for n, v in self.layers.items()},
            "layers": self.layers,
        }  # fmt: skip


def _keep(module: nn.Module, name: str, index: torch.Tensor, dim: int) -> None:
    tensor = getattr(module, name)
    if tensor is None:
        return
    new = tensor.detach().index_select(dim, index).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, new)


def shrink(model: nn.Module, example_input: torch.Tensor) -> ShrinkReport:
    """A copy of ``model`` with every removable channel physically removed, plus counts.

    The input model is not modified. In eval mode the shrunk model computes the same outputs (up to
    float rounding). Models without channel-zero slices (dense, irregular pruning) come back as an
    equal-size copy.
    """
    spaces = find_channel_spaces(model, example_input)
    input_size = tuple(example_input.shape[1:])
    shrunk = copy.deepcopy(model)
    for space in spaces:
        if not space.removable:
            continue
        gone = set(space.removable)
        keep = torch.tensor([c for c in range(space.channels) if c not in gone], dtype=torch.long)
        for name in space.producers:
            conv = shrunk.get_submodule(name)
            _keep(conv, "weight", keep, 0)
            _keep(conv, "bias", keep, 0)
            conv.out_channels = len(keep)
        for name in space.norms:
            bn = shrunk.get_submodule(name)
            for attr in ("weight", "bias", "running_mean", "running_var"):
                _keep(bn, attr, keep, 0)
            bn.num_features = len(keep)
        for name in space.consumers:
            layer = shrunk.get_submodule(name)
            _keep(layer, "weight", keep, 1)
            if isinstance(layer, nn.Conv2d):
                layer.in_channels = len(keep)
            else:
                layer.in_features = len(keep)
    layers = {}
    before = dict(model.named_modules())
    for name, module in shrunk.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            old = before[name]
            layers[name] = {"in": [old.weight.shape[1], module.weight.shape[1]],
                            "out": [old.weight.shape[0], module.weight.shape[0]]}  # fmt: skip
    return ShrinkReport(
        model=shrunk,
        params_before=count_params(model), params_after=count_params(shrunk),
        macs_before=count_macs(model, input_size), macs_after=count_macs(shrunk, input_size),
        channels_removed=sum(len(s.removable) for s in spaces), layers=layers, spaces=spaces,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Counting and timing


def count_params(model: nn.Module) -> int:
    """All parameters (weights, biases, BatchNorm affine); buffers are not counted."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: Sequence[int]) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers for ONE input of shape ``input_size`` (C, H, W).

    Conv2d: ``out_elements * (in_channels / groups) * kh * kw``; Linear: ``out_elements * in_features``.
    Biases, BatchNorm, activations and pooling are not counted.
    """
    total = 0

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, *input_size))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(total)


def measure_latency(model: nn.Module, input_size: Sequence[int], batch_sizes: Sequence[int] = (1, 128),
                    repeats: int = 10, warmup: int = 2, threads: int | None = None) -> dict[int, dict[str, float]]:  # fmt: skip
    """CPU latency of one forward pass per batch size: median over ``repeats`` timed runs after ``warmup``.

    Runs in eval mode under ``torch.inference_mode`` with ``threads`` intra-op threads (default:
    torch's current ``torch.get_num_threads()``; restored afterwards). On a busy machine fewer threads
    than cores give steadier numbers: idle-spinning OpenMP threads suffer badly from contention. Returns ``{batch: {"latency_ms": ..., "throughput_per_s": ...}}``
    (throughput in images per second).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    was_training, old_threads = model.training, torch.get_num_threads()
    model.eval()
    if threads is not None:
        torch.set_num_threads(threads)
    results: dict[int, dict[str, float]] = {}
    try:
        with torch.inference_mode():
            for batch in batch_sizes:
                x = torch.rand(batch, *input_size)
                for _ in range(warmup):
                    model(x)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model(x)
                    times.append(time.perf_counter() - start)
                median = statistics.median(times)
                results[int(batch)] = {"latency_ms": median * 1e3, "throughput_per_s": batch / median}
    finally:
        model.train(was_training)
        torch.set_num_threads(old_threads)
    return results


# --------------------------------------------------------------------------------------------------
# Export of a trained model

_DEFAULT_SIZES = {"digits": 8, "synthetic": 32, "cifar10": 32, "cifar100": 32, "tinyimagenet": 64}


def default_input_size(config: Any, model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) of the run's images: digits 8 (or ``data.image_size``), CIFAR 32, Tiny-ImageNet 64;
    channels from the model's normalisation stem (or its first conv)."""
    side = config.data.image_size or _DEFAULT_SIZES[config.data.dataset]
    stem = getattr(model, "normalize", None)
    if stem is not None and hasattr(stem, "mean"):
        channels = int(stem.mean.shape[1])
    else:
        channels = next(m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    return channels, int(side), int(side)


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"C,H,W"`` -> (C, H, W), all positive ints; ``ExportError`` naming the value otherwise."""
    parts = [p.strip() for p in text.split(",")]
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise ExportError(f"--input-size must be three positive integers C,H,W (e.g. 3,32,32), got {text!r}")
    return size  # type: ignore[return-value]


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((a(x) - b(x)).abs().max())


def export_program(model: nn.Module, input_size: Sequence[int]) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` in eval mode for inputs (N, *input_size), N dynamic in [1, 65536]."""
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    return torch.export.export(model, (torch.rand(2, *input_size),), dynamic_shapes=({0: batch},))


def export_model(path: str | Path, out_file: str | Path, *, trial: str | None = None, shrink: bool = True,
                 input_size: Sequence[int] | None = None, batch_sizes: Sequence[int] = (1, 128),
                 repeats: int = 10, threads: int | None = None, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Export the trained model at ``path`` (a train folder, a trial folder, or a run folder + ``trial``).

    Shrinks it (unless ``shrink=False``), checks that its outputs equal the loaded model's within
    :data:`TOLERANCE` on random inputs, writes ``out_file`` with ``torch.export.save`` (load it with
    ``torch.export.load(out_file).module()``; the batch dimension is dynamic) and
    ``out_file.with_suffix(".json")`` with the summary, which it also returns. Latency is the median
    of ``repeats`` CPU forward passes per batch size with ``threads`` threads (default torch's); with
    ``shrink=False`` the "after" figures are the "before" ones (the same model).

    Raises:
        FileNotFoundError: no model at ``path``.
        ExportError: a bad ``input_size`` or a model that cannot be traced or exported.
        RuntimeError: the shrunk model's outputs differ (a bug, never expected).
    """
    from dnr_sweep import checkpoint
    from dnr_sweep.artifacts import load_trained

    try:
        trained = load_trained(path, trial, load_data=False)
    except RuntimeError as exc:  # load_state_dict: shapes or keys that do not fit the config's model
        raise ExportError(f"{path}: model.pt does not fit the model its config.yaml describes: {exc}") from exc
    masked = trained.model.eval()
    size = tuple(int(v) for v in input_size) if input_size is not None else default_input_size(trained.config, masked)
    if len(size) != 3 or min(size) < 1:
        raise ExportError(f"input_size must be (C, H, W) positive ints, got {input_size!r}")
    generator = torch.Generator().manual_seed(seed)
    try:
        report = _shrink_fn(masked, torch.rand(2, *size, generator=generator))
    except RuntimeError as exc:  # shape errors from a wrong input size
        raise ExportError(f"the model does not accept inputs of size {list(size)} ({exc}); "
                          "fix --input-size C,H,W") from exc  # fmt: skip
    final = report.model.eval() if shrink else masked
    probe = torch.rand(16, *size, generator=generator)
    diff = _max_diff(final, masked, probe)
    if not diff <= TOLERANCE:
        raise RuntimeError(f"shrunk model differs from the masked one by {diff:.3g} > {TOLERANCE}")

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        program = export_program(final, size)
    except Exception as exc:  # noqa: BLE001 - torch.export raises many kinds
        raise ExportError(f"torch.export failed for {trained.config.model.arch}: {exc}") from exc
    torch.export.save(program, out_file)
    loaded = torch.export.load(out_file).module()
    diff_exported = _max_diff(loaded, masked, probe)

    before = measure_latency(masked, size, batch_sizes, repeats=repeats, threads=threads)
    after = measure_latency(final, size, batch_sizes, repeats=repeats, threads=threads) if shrink else before
    removable = sum(len(s.removable) for s in report.spaces)
    summary: dict[str, Any] = {
        "model": str(trained.folder), "file": str(out_file), "arch": trained.config.model.arch,
        "dataset": trained.config.data.dataset, "pruning": trained.config.dnr.pruning,
        "density": trained.config.dnr.density, "input_size": list(size), "shrunk": shrink,
        "dynamic_batch": [1, MAX_EXPORT_BATCH],
        "params_before": report.params_before, "params_after": report.params_after if shrink else report.params_before,
        "macs_before": report.macs_before, "macs_after": report.macs_after if shrink else report.macs_before,
        "channels_removable": removable, "channels_removed": removable if shrink else 0,
        "max_abs_diff": diff, "max_abs_diff_exported": diff_exported, "tolerance": TOLERANCE,
        "latency_ms": {"before": {str(b): v["latency_ms"] for b, v in before.items()},
                       "after": {str(b): v["latency_ms"] for b, v in after.items()}},
        "throughput_per_s": {"before": {str(b): v["throughput_per_s"] for b, v in before.items()},
                             "after": {str(b): v["throughput_per_s"] for b, v in after.items()}},
        "speedup": {str(b): before[b]["latency_ms"] / after[b]["latency_ms"] for b in before},
        "timing": {"device": "cpu", "threads": threads or torch.get_num_threads(), "repeats": repeats, "statistic": "median",
                   "torch": torch.__version__},
        "input_channels_removed": ({n: v["in"][0] - v["in"][1] for n, v in report.layers.items()} if shrink
                                   else {n: 0 for n in report.layers}),
        "layers": report.layers if shrink else {n: {"in": [v["in"][0]] * 2, "out": [v["out"][0]] * 2}
                                                for n, v in report.layers.items()},
    }  # fmt: skip
    if removable == 0:
        summary["note"] = ("no channel is zero in all its consumers (irregular pruning zeroes single weights, "
                           "not whole input channels), so no channels were removable")  # fmt: skip
    checkpoint.write_json(summary, out_file.with_suffix(".json"))
    return summary


_shrink_fn = shrink  # export_model's `shrink` flag shadows the function inside it


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as indented JSON (what ``dnr-sweep export`` prints)."""
    return json.dumps(summary, indent=2)
