"""White-box L-inf attacks used by DNR (Kundu et al., ASP-DAC 2021, Sec. 2.1): FGSM (Eq. 1) and PGD (Eq. 2).

Both take images in [0, 1] and return adversarial images in [0, 1]; a model that normalises its inputs
must do so inside its ``forward``. The update arithmetic matches ``torchattacks`` 3.5.1 (``FGSM``,
``PGD``) operation for operation, so with ``random_start=False`` the results are bit-identical to it on
CPU float32 (checked in ``tests/test_attacks.py``). On top of torchattacks these functions

* restore the train/eval flag of *every* submodule afterwards, also on exceptions (torchattacks only
  calls ``model.train()`` when the model was in train mode, which flattens mixed modes),
* optionally generate with BatchNorm in train mode (batch statistics) without letting the attack's
  forward passes move the running statistics (``bn_mode="train"``),
* support PGD restarts that keep, per example, the first attempt that fools the model,
* take an explicit ``torch.Generator`` for the random start.

Gradients are taken with ``torch.autograd.grad`` with respect to the input only: parameter ``.grad``
fields are never read or written, and autograd skips the weight-gradient kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

BnMode = Literal["eval", "train"]
_BN_MODES = ("eval", "train")
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@contextmanager
def attack_mode(model: nn.Module, bn_mode: BnMode = "eval") -> Iterator[None]:
    """Put ``model`` in the mode an attack runs in, and restore everything on exit.

    ``bn_mode="eval"``: the whole model in eval mode (BatchNorm uses running statistics, no dropout),
    like torchattacks' default. ``bn_mode="train"``: the model in eval mode except BatchNorm layers
    (subclasses of ``_BatchNorm``, incl. ``SyncBatchNorm``), which normalise with the batch statistics;
    dropout stays off so the attack is deterministic. This is torchattacks'
    ``set_model_training_mode(model_training=True, batchnorm_training=True, dropout_training=False)``
    for models whose only mode-dependent layers are BatchNorm and dropout.

    On exit (also on exceptions) each submodule's own ``training`` flag is restored, so mixed modes
    (e.g. a frozen BatchNorm inside a model in train mode) survive. With ``bn_mode="train"`` the
    running statistics (``running_mean``, ``running_var``, ``num_batches_tracked``) are saved before
    and copied back after, in place. Saving and restoring was chosen over setting ``momentum=0``
    because ``momentum=None`` (cumulative average) and ``num_batches_tracked`` would still move.
    """
    if bn_mode not in _BN_MODES:
        raise ValueError(f"bn_mode must be one of {_BN_MODES}, got {bn_mode!r}")
    flags = [(module, module.training) for module in model.modules()]
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        model.eval()
        if bn_mode == "train":
            for module in model.modules():
                if isinstance(module, _BatchNorm):
                    module.train()
                    for name in _BN_BUFFERS:
                        buffer = getattr(module, name, None)
                        if buffer is not None:
                            saved.append((buffer, buffer.detach().clone()))
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        for module, was_training in flags:
            # Set the flag directly: ``module.train(flag)`` would recurse and overwrite children.
            module.training = was_training


def _check_common(images: Tensor, labels: Tensor, eps: float) -> None:
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor in [0, 1], got dtype {images.dtype}")
    if images.dim() == 0 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images (N, ...) and labels (N,) must share the batch size, got images {tuple(images.shape)} "
            f"and labels {tuple(labels.shape)}"
        )
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0 (L-inf radius in [0, 1] pixel units), got {eps}")


def _input_grad(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    """Gradient of the mean cross-entropy w.r.t. ``x`` only (``x`` is detached here)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, images: Tensor, labels: Tensor, *, eps: float) -> Tensor:
    r"""FGSM, 'Explaining and harnessing adversarial examples' [https://arxiv.org/abs/1412.6572], DNR Eq. 1.

    ``x_adv = clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1)`` with the mean cross-entropy,
    computed with the model in eval mode (its modes are restored afterwards).

    Distance measure: Linf.

    Arguments:
        model: classifier returning logits ``(N, K)`` for inputs in [0, 1].
        images: ``(N, C, H, W)`` (any ``(N, ...)`` the model accepts), floating point, in [0, 1].
        labels: ``(N,)`` int64 class indices.
        eps: maximum perturbation, >= 0. The paper uses 8/255.

    Returns:
        Detached adversarial images, same shape, dtype and device as ``images``, in [0, 1].

    Example::
        >>> x_adv = fgsm(model, images, labels, eps=8 / 255)
    """
    _check_common(images, labels, eps)
    images = images.detach().clone()
    with torch.enable_grad(), attack_mode(model, "eval"):
        grad = _input_grad(model, images, labels)
    return torch.clamp(images + eps * grad.sign(), min=0, max=1).detach()


def _pgd_attempt(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
    generator: torch.Generator | None,
) -> Tensor:
    # The op order mirrors torchattacks.PGD exactly: the perturbation is re-formed as
    # ``delta = clamp(x_adv - x, -eps, eps)`` and the image as ``clamp(x + delta, 0, 1)``. In floating
    # point ``x + (x_adv - x)`` is not always ``x_adv``, so e.g. ``torch.min(torch.max(x_adv, x - eps),
    # x + eps)`` would differ in the last bit.
    x_adv = images
    if random_start:
        noise = torch.empty_like(images).uniform_(-eps, eps, generator=generator)
        x_adv = torch.clamp(images + noise, min=0, max=1)
    for _ in range(steps):
        grad = _input_grad(model, x_adv, labels)
        x_adv = x_adv.detach() + alpha * grad.sign()
        delta = torch.clamp(x_adv - images, min=-eps, max=eps)
        x_adv = torch.clamp(images + delta, min=0, max=1)
    return x_adv.detach()


def pgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = False,
    restarts: int = 1,
    generator: torch.Generator | None = None,
    bn_mode: BnMode = "eval",
) -> Tensor:
    r"""PGD, 'Towards Deep Learning Models Resistant to Adversarial Attacks' [https://arxiv.org/abs/1706.06083].

    DNR Eq. 2: ``x^1 = x`` (or ``clamp(x + U(-eps, eps), 0, 1)`` with ``random_start``), then ``steps``
    times ``x^k = clamp(x + clamp(x^{k-1} + alpha * sign(grad) - x, -eps, eps), 0, 1)``, the gradient
    being that of the mean cross-entropy w.r.t. the input. Equals ``torchattacks.PGD`` (bit for bit
    with ``random_start=False``; with ``random_start=True`` and ``generator=None`` it draws the same
    noise from the global RNG).

    Distance measure: Linf.

    Arguments:
        model: classifier returning logits ``(N, K)`` for inputs in [0, 1].
        images: ``(N, C, H, W)`` (any ``(N, ...)`` the model accepts), floating point, in [0, 1].
        labels: ``(N,)`` int64 class indices.
        eps: maximum perturbation, >= 0. Paper: 8/255.
        alpha: step size, > 0. Paper: 0.01.
        steps: number of gradient steps, >= 1. Paper: 7.
        random_start: start from a uniform random point in the eps-ball. (Default: False, as in the
            paper's Eq. 2; torchattacks defaults to True.)
        restarts: number of attempts, >= 1; more than 1 needs ``random_start``. Each example keeps the
            first attempt whose result the model misclassifies (in the attack's mode); examples never
            fooled keep the last attempt's result. Only still-unfooled examples are re-attacked, so
            attempt r draws its random start for those examples, in batch order, from ``generator``.
            With ``bn_mode="train"`` a re-attacked subset has its own batch statistics. (Default: 1)
        generator: RNG for the random start, on the images' device type. (Default: None, global RNG)
        bn_mode: ``"eval"`` attacks the model in eval mode (torchattacks' default, for evaluation);
            ``"train"`` lets BatchNorm use batch statistics (for training-time adversarial generation)
            while keeping dropout off and leaving the running statistics untouched. See
            :func:`attack_mode`. (Default: "eval")

    Returns:
        Detached adversarial images, same shape, dtype and device as ``images``, in [0, 1] and within
        eps of ``images`` in L-inf.

    Example::
        >>> x_adv = pgd(model, images, labels, eps=8 / 255, alpha=0.01, steps=7)
        >>> g = torch.Generator(device=images.device).manual_seed(0)
        >>> x_adv = pgd(model, images, labels, eps=8 / 255, alpha=2 / 255, steps=10,
        ...             random_start=True, restarts=5, generator=g)
    """
    _check_common(images, labels, eps)
    if not alpha > 0:
        raise ValueError(f"alpha (PGD step size) must be > 0, got {alpha}")
    if steps < 1:
        raise ValueError(f"steps (PGD iterations) must be >= 1, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if restarts > 1 and not random_start:
        raise ValueError(
            f"restarts={restarts} needs random_start=True: without a random start every attempt is "
            "the same deterministic PGD run"
        )
    if bn_mode not in _BN_MODES:
        raise ValueError(f"bn_mode must be one of {_BN_MODES}, got {bn_mode!r}")
    if generator is not None and generator.device.type != images.device.type:
        raise ValueError(
            f"generator is on device {generator.device} but images are on {images.device}; "
            f"create it with torch.Generator(device=images.device)"
        )

    images = images.detach().clone()
    with torch.enable_grad(), attack_mode(model, bn_mode):
        x_adv = _pgd_attempt(model, images, labels, eps, alpha, steps, random_start, generator)
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            todo = torch.nonzero(model(x_adv).argmax(dim=1) == labels).squeeze(1)
        for attempt in range(1, restarts):
            if todo.numel() == 0:  # one host sync per restart, none inside the step loop
                break
            retry = _pgd_attempt(model, images[todo], labels[todo], eps, alpha, steps, random_start, generator)
            x_adv[todo] = retry
            if attempt < restarts - 1:
                with torch.no_grad():
                    todo = todo[model(retry).argmax(dim=1) == labels[todo]]
    return x_adv


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """Number of ``images`` that ``model`` (in eval mode, restored afterwards) classifies as ``labels``.

    Returns a 0-dim int64 tensor on the images' device (a count, not a fraction: counts add up
    across batches without a host sync; divide by ``len(labels)`` for the fraction).
    """
    with attack_mode(model, "eval"):
        return (model(images).argmax(dim=1) == labels).sum()
