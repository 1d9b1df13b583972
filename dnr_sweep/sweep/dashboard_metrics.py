"""A sweep's epochs as Ray custom metrics: the dashboard's Metrics view, Prometheus and Grafana.

Each trial's worker sets one gauge per figure after every epoch (``dnr_sweep_epoch``,
``dnr_sweep_val_clean_acc``, ``dnr_sweep_val_pgd_acc``, ``dnr_sweep_density``,
``dnr_sweep_epoch_time_s``: this epoch's own figures, see :data:`GAUGES`), tagged with the run and
the trial id. A missing or NaN figure leaves its gauge at the last value; monitoring never fails a
trial. The gauges are created once per process on the first call; importing this module does not
import Ray. Setting up Prometheus and Grafana: docs/WATCHING.md.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from dnr_sweep.foundation import run_contract as rc

#: gauge name -> (Tune result key, description)
GAUGES: dict[str, tuple[str, str]] = {
    "dnr_sweep_epoch": (rc.EPOCH_KEY, "DNR sweep: epochs the trial has trained"),
    "dnr_sweep_val_clean_acc": (rc.epoch_key("val_clean_acc"), "DNR sweep: clean validation accuracy of the epoch, %"),
    "dnr_sweep_val_pgd_acc": (rc.epoch_key("val_pgd_acc"), "DNR sweep: PGD validation accuracy of the epoch, %"),
    "dnr_sweep_density": (rc.epoch_key("density"), "DNR sweep: nonzero / all prunable weights after the epoch"),
    "dnr_sweep_epoch_time_s": (rc.epoch_key("epoch_time_s"), "DNR sweep: wall time of the epoch, s"),
}
TAG_KEYS = ("run", "trial_id")

_gauges: dict[str, Any] | None = None


def gauges() -> dict[str, Any]:
    """This process's gauges (``ray.util.metrics.Gauge``), created on first use."""
    global _gauges
    if _gauges is None:
        from ray.util.metrics import Gauge  # lazy: importing this module must not import Ray (see above)

        _gauges = {name: Gauge(name, description=text, tag_keys=TAG_KEYS) for name, (_, text) in GAUGES.items()}
    return _gauges


def report_epoch(result: Mapping[str, Any], *, run: str, trial_id: str) -> dict[str, float]:
    """Set the gauges from one epoch's Tune result; returns ``{gauge: value}`` of those set."""
    values: dict[str, float] = {}
    for name, (key, _) in GAUGES.items():
        value = result.get(key)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            continue
        values[name] = float(value)  # numpy scalars too: Gauge.set takes int or float only
    if values:
        tags = {"run": str(run), "trial_id": str(trial_id)}
        live = gauges()
        for name, value in values.items():
            live[name].set(value, tags=tags)
    return values
