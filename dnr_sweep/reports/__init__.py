"""Sweep results -> Parquet -> Pareto sets -> figures and tables. Reads files only; needs no Ray.

>>> from dnr_sweep import reports
>>> df = reports.load("runs/cifar10_vgg16")                       # doctest: +SKIP
>>> choice = reports.select(df)      # joint Pareto sets and dense baseline, chosen on validation  # doctest: +SKIP
>>> choice.fronts[("", "irregular")]                              # doctest: +SKIP
>>> reports.build_report("runs/cifar10_vgg16")                    # doctest: +SKIP

One chooser, :mod:`reports.chooser`, decides which trials are finished, which configurations form a
front and which represent a method in Table 2; every output reads it. Compute first, draw second:
:mod:`reports.chooser`, :mod:`reports.seeds`, :mod:`reports.figure_data`, :mod:`reports.tables` and
:mod:`reports.methods` never import matplotlib; only
:mod:`reports.figures` (drawing) and :mod:`reports.build` do. ``reports.load`` and
``reports.load_epochs`` are functions (the module is ``reports.load`` only in
``from dnr_sweep.reports.load import ...``). ``build_report`` is imported on first use, so ``from dnr_sweep import reports``
stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .chooser import FrontChoice, MethodChoice, RunChoice, choose_methods, choose_run, select
from .load import load, load_epochs, load_run, rebuild_tables
from .pareto import ParetoFront, pareto_front

if TYPE_CHECKING:
    from .build import build_report

__all__ = [
    "FrontChoice",
    "MethodChoice",
    "ParetoFront",
    "RunChoice",
    "build_report",
    "choose_methods",
    "choose_run",
    "load",
    "load_epochs",
    "load_run",
    "pareto_front",
    "rebuild_tables",
    "select",
]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from .build import build_report  # lazy: build pulls matplotlib; `import dnr_sweep.reports` stays light

        return build_report
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
