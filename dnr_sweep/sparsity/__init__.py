"""Sparsity for DNR: masks and the masked step, rewiring, the dynamic L2 regulariser, accounting.

Public API:

- :class:`Masking` (``masks.py``): masks of the prunable weights, ``step()``, ``rewire(epoch)``;
  :func:`minimum_density`, the smallest target a pruning mode can meet on a model.
- :class:`RewireStats` and the pure allocation helpers (``rewiring.py``).
- :class:`ChannelGroups` (``channel_groups.py``): the unit of ``channel_group`` pruning, a channel
  with everything coupled to it, and its rewiring.
- :class:`DynamicL2` (``dynamic_l2.py``): paper Eq. 4.
- ``prunable_layers``, ``density``, ``compression``, ``channels_present``, ``layer_density``
  (``accounting.py``): the docs/RESULTS.md definitions, counted on the weights themselves.
"""

from dnr_sweep.sparsity.accounting import (
    channels_present,
    compression,
    density,
    layer_density,
    prunable_layers,
)
from dnr_sweep.sparsity.channel_groups import ChannelGroups
from dnr_sweep.sparsity.dynamic_l2 import DynamicL2
from dnr_sweep.sparsity.masks import PRUNING_KINDS, Masking, minimum_density
from dnr_sweep.sparsity.rewiring import (
    RewireStats,
    largest_remainder,
    rewire_channel,
    rewire_irregular,
    round_to_slices,
    water_fill,
)

__all__ = [
    "PRUNING_KINDS",
    "ChannelGroups",
    "DynamicL2",
    "Masking",
    "RewireStats",
    "channels_present",
    "compression",
    "density",
    "largest_remainder",
    "layer_density",
    "minimum_density",
    "prunable_layers",
    "rewire_channel",
    "rewire_irregular",
    "round_to_slices",
    "water_fill",
]
