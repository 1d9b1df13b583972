"""Sweep results -> Parquet -> Pareto fronts -> figures and tables. Reads files only; needs no Ray.

>>> import reports
>>> df = reports.load("runs/cifar10_vgg16")                       # doctest: +SKIP
>>> front = reports.pareto_front(df, {"compression": "max", "pgd_acc": "max"})  # doctest: +SKIP
>>> reports.build_report("runs/cifar10_vgg16")                    # doctest: +SKIP

``reports.load`` and ``reports.load_epochs`` are functions (the module is ``reports.load`` only in
``from reports.load import ...``). Plotting modules (matplotlib) are imported on first use, so
``import reports`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .load import load, load_epochs, load_run, rebuild_tables
from .pareto import ParetoFront, pareto_front

if TYPE_CHECKING:
    from .build import build_report

__all__ = [
    "ParetoFront",
    "build_report",
    "load",
    "load_epochs",
    "load_run",
    "pareto_front",
    "rebuild_tables",
]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from .build import build_report

        return build_report
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
