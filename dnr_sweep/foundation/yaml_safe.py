"""How dnr-sweep reads YAML: PyYAML's safe loader (plain data, never Python objects), with YAML 1.2
numbers.

PyYAML follows YAML 1.1, where ``1e-4`` and ``1.0e6`` (no dot, or no sign in the exponent) are
*strings*; researchers write ``rho: 1e-4`` and ``grid: [1e-5, 1e-4]`` and mean numbers, and a
string in a search grid would reach a trial (and the results table) as text. YAML 1.2, and every
other tool a config passes through, reads them as floats; so does :func:`load`.

Standard library and PyYAML only: the reports use it too.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also resolves YAML 1.2 floats such as ``1e-4`` and ``1.0e6``."""


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load(text: str | bytes) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (see the module docstring)."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 -- a SafeLoader subclass: plain data only
