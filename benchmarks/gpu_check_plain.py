"""The GPU check's independent reference: a plain dense PGD-7 adversarial-training epoch.

Written from the definitions (Madry et al. PGD with a random start, then a step on
``0.5 * CE(clean) + 0.5 * CE(adversarial)``), deliberately *not* through dnr_sweep's engine or
attacks: no masks, no dynamic L2, no mode bookkeeping, no loss totals. It is what a careful user
would write by hand, so the engine's epoch time over this loop's (same model, same batches, same
precision and memory format) is what the project's machinery costs on top of the arithmetic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def pgd_linf(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int, bf16: bool) -> Tensor:
    """L-inf PGD with a uniform random start, model in eval mode (restored by the caller)."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with _autocast(x.device, bf16):
            loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, *, steps: int = 7, bf16: bool = False
) -> Tensor:
    """One dense PGD adversarial-training step; returns the (detached) loss."""
    model.eval()
    adv = pgd_linf(model, x, y, eps=8 / 255, alpha=0.01, steps=steps, bf16=bf16)
    model.train()
    with _autocast(x.device, bf16):
        loss = 0.5 * F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(adv), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    steps: int = 7,
    bf16: bool = False,
    channels_last: bool = False,
) -> float:
    """One epoch over ``batches`` (already on the device); returns the mean loss (one host sync, at the end)."""
    total, n = None, 0
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = train_step(model, optimizer, x, y, steps=steps, bf16=bf16)
        total = loss if total is None else total + loss
        n += 1
    return float(total) / max(n, 1) if total is not None else float("nan")
