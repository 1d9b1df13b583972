"""TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy", ICML 2019)
as HYDRA's public code trains with it (``utils/adv.py: trades_loss``, ``distance="l_inf"``): the
adversary that maximises the KL divergence from the clean prediction, and the loss's robust term.

Loss: ``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x'))`` with the KL summed over the batch and
divided by its size (``nn.KLDivLoss(size_average=False)`` / batch size: ``reduction="batchmean"``);
gradients flow through the clean logits of both terms and through the adversarial logits.

The authors recompute the clean forward at every attack step; with the model in eval mode and the
weights fixed it is the same tensor every time, so :func:`perturb` computes it once (without a graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnr_sweep.attacks.gradient import BnMode, attack_mode

#: scale of the Gaussian start ``x + START_STD * N(0, 1)`` (HYDRA's and TRADES' code)
START_STD = 0.001


def robust_term(logits_adv: Tensor, logits_clean: Tensor) -> Tensor:
    """``KL(softmax(logits_clean) || softmax(logits_adv))`` summed over the batch / batch size (TRADES' term)."""
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="sum")
    return kl / logits_adv.shape[0]


def perturb(
    model: nn.Module,
    images: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    generator: torch.Generator | None = None,
    bn_mode: BnMode = "eval",
) -> Tensor:
    r"""TRADES' L-inf adversary: ``x' = x + 0.001 * N(0, 1)`` (not clamped), then ``steps`` times
    ``x' = clamp(min(max(x' + alpha * sign(grad_x' KL(f(x) || f(x'))), x - eps), x + eps), 0, 1)``.

    The KL is summed over the batch (its sign is all the step uses) with the clean softmax as the fixed
    target; the model runs in eval mode (the authors' ``model.eval()``; ``bn_mode="train"``: BatchNorm
    on batch statistics, running statistics untouched, see :func:`~dnr_sweep.attacks.gradient.attack_mode`)
    and every module's mode is restored afterwards. Gradients w.r.t. the input only.

    Arguments:
        model: classifier returning logits ``(N, K)`` for inputs in [0, 1].
        images: ``(N, C, H, W)`` floating point, in [0, 1].
        eps: L-inf radius, >= 0 (HYDRA's configs.yml: 0.031).
        alpha: step size, > 0 (HYDRA: 0.0078).
        steps: iterations, >= 1 (HYDRA: 10).
        generator: RNG of the Gaussian start, on the images' device type (None: the global RNG).

    Returns:
        Detached adversarial images, same shape, dtype and device, in [0, 1] and within eps of ``images``.

    Example::
        >>> g = torch.Generator(device=images.device).manual_seed(0)
        >>> x_adv = perturb(model, images, eps=8 / 255, alpha=2 / 255, steps=10, generator=g)
    """
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor in [0, 1], got dtype {images.dtype}")
    if not eps >= 0 or not alpha > 0 or steps < 1:
        raise ValueError(f"need eps >= 0, alpha > 0, steps >= 1; got eps {eps}, alpha {alpha}, steps {steps}")
    images = images.detach()
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    x_adv = images + START_STD * noise
    with attack_mode(model, bn_mode):
        with torch.no_grad():
            target = F.softmax(model(images), dim=1)
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), target, reduction="sum")
                (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = x_adv.detach() + alpha * torch.sign(grad)
            x_adv = torch.min(torch.max(x_adv, images - eps), images + eps)
            x_adv = torch.clamp(x_adv, 0.0, 1.0)
    return x_adv.detach()
