"""Cost counting: parameters, multiply-accumulates and measured CPU latency of a model."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ForwardEstimate", "count_macs", "count_params", "estimate_forward", "measure_latency"]


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


@dataclass(frozen=True)
class ForwardEstimate:
    """What one forward pass of one input costs, per image: multiply-accumulates (as :func:`count_macs`
    counts them) and the largest input plus output of any layer, in elements (what inference holds at once,
    residual streams aside)."""

    macs: int
    activations: int


def estimate_forward(model: nn.Module, input_size: Sequence[int]) -> ForwardEstimate:
    """:class:`ForwardEstimate` of ``model`` for one input of shape ``input_size`` (C, H, W), measured on a
    copy on torch's ``meta`` device: shapes only, nothing computed or allocated, milliseconds at any size.
    Raises what the model raises for an input it cannot take (torch's ``RuntimeError`` for one its
    pooling reduces to nothing)."""
    meta = copy.deepcopy(model).to("meta").eval()
    macs, activations = 0, 0

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal macs, activations
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features
        sizes = [t.numel() for t in (*inputs, output) if isinstance(t, torch.Tensor)]
        activations = max(activations, sum(sizes))

    for module in meta.modules():
        if not list(module.children()):
            module.register_forward_hook(hook)
    with torch.inference_mode():
        meta(torch.empty(1, *input_size, device="meta"))
    return ForwardEstimate(int(macs), int(activations))


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
