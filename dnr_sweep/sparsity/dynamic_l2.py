"""The dynamic L2 regulariser of DNR (paper Eq. 4).

``penalty = rho / 2 * sum_l || theta_l * m_l - z_l ||_2^2`` where ``z_l`` is a detached copy of the
masked weights taken at the start of every epoch (after rewiring) and once at construction
(Algorithm 1, lines 4 and 25). It is ADMM's dynamic regulariser without the indicator term: it keeps
large weights from moving unless the loss insists, and only the *active* weights are penalised (its
gradient is ``rho * (theta * m - z) * m``, zero on pruned weights).

Disabled (``enabled=False``) or ``rho == 0`` makes :meth:`DynamicL2.penalty` return a zero scalar
without touching the weights and :meth:`DynamicL2.snapshot` a no-op, so the ablation costs nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dnr_sweep.sparsity.masks import Masking

__all__ = ["DynamicL2"]


class DynamicL2:
    """Dynamic L2 penalty around per-epoch snapshots ``z`` of the masked prunable weights."""

    def __init__(self, masking: Masking, rho: float, *, enabled: bool = True) -> None:
        if isinstance(rho, bool) or not isinstance(rho, int | float) or not rho >= 0.0:
            raise ValueError(f"rho must be a number >= 0, got {rho!r}")
        self.masking = masking
        self.rho = float(rho)
        self.enabled = bool(enabled)
        self.z: dict[str, Tensor] = {}
        self.snapshot()

    @property
    def active(self) -> bool:
        """Whether the penalty is computed at all (enabled and ``rho > 0``)."""
        return self.enabled and self.rho > 0.0

    def _weights_and_masks(self) -> tuple[list[str], list[Tensor], list[Tensor]]:
        m = self.masking
        names = m.layer_names
        return names, m.weights, [m.masks[n] for n in names]

    @torch.no_grad()
    def snapshot(self) -> None:
        """``z_l = (theta_l * m_l).detach().clone()`` for every prunable layer."""
        if not self.active:
            self.z = {}
            return
        names, weights, masks = self._weights_and_masks()
        self.z = dict(zip(names, torch._foreach_mul(weights, masks), strict=True))

    def penalty(self) -> Tensor:
        """``rho / 2 * sum_l ||theta_l * m_l - z_l||^2`` as a differentiable scalar."""
        names, weights, masks = self._weights_and_masks()
        if not self.active:
            return torch.zeros((), dtype=weights[0].dtype, device=weights[0].device)
        if list(self.z) != names:
            raise RuntimeError("DynamicL2.snapshot() must be called before penalty()")
        diffs = torch._foreach_sub(torch._foreach_mul(weights, masks), [self.z[n] for n in names])
        norms = torch._foreach_norm(diffs)
        return 0.5 * self.rho * torch.stack(norms).pow(2).sum()

    def state_dict(self) -> dict[str, Any]:
        """``z``, ``rho`` and ``enabled``; tensors and plain types only."""
        return {"z": {n: t.clone() for n, t in self.z.items()}, "rho": self.rho, "enabled": self.enabled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (``z`` moved to the weights' device and dtype)."""
        self.rho = float(state["rho"])
        self.enabled = bool(state["enabled"])
        names, weights, _ = self._weights_and_masks()
        z = state["z"]
        if self.active and list(z) != names:
            raise ValueError(f"checkpoint z covers layers {list(z)}, this model has {names}")
        self.z = {
            n: z[n].to(device=w.device, dtype=w.dtype).clone() for n, w in zip(names, weights, strict=True) if n in z
        }
