"""Physically shrinking a channel-pruned model, counting its cost, and exporting it with ``torch.export``.

One module per concern:

- :mod:`~dnr_sweep.sparsity.channel_spaces`: channel-space analysis (``torch.fx`` tracing,
  :class:`ChannelSpace`, :func:`find_channel_spaces`); shared with channel-group DNR.
- :mod:`~dnr_sweep.export.shrinking`: :func:`shrink` and its :class:`ShrinkReport`.
- :mod:`~dnr_sweep.export.cost`: :func:`count_params`, :func:`count_macs`, :func:`measure_latency`.
- :mod:`~dnr_sweep.export.pipeline`: :func:`export_model` (a trained folder -> ``.pt2`` + JSON),
  input sizes, ``torch.export``.

Every public name is importable from ``dnr_sweep.export`` directly.
"""

from dnr_sweep.export.cost import ForwardEstimate, count_macs, count_params, estimate_forward, measure_latency
from dnr_sweep.export.pipeline import (
    MAX_EXPORT_BATCH,
    MAX_EXPORT_MACS,
    MAX_INPUT_SIDE,
    TOLERANCE,
    check_input_size,
    default_input_size,
    export_model,
    export_program,
    parse_input_size,
    summary_text,
)
from dnr_sweep.export.shrinking import ShrinkReport, shrink
from dnr_sweep.sparsity.channel_spaces import ChannelSpace, find_channel_spaces

__all__ = [
    "MAX_EXPORT_BATCH",
    "MAX_EXPORT_MACS",
    "MAX_INPUT_SIDE",
    "TOLERANCE",
    "ChannelSpace",
    "ForwardEstimate",
    "check_input_size",
    "ShrinkReport",
    "count_macs",
    "count_params",
    "default_input_size",
    "estimate_forward",
    "export_model",
    "export_program",
    "find_channel_spaces",
    "measure_latency",
    "parse_input_size",
    "shrink",
    "summary_text",
]
