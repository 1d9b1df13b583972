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
    """``yaml.SafeLoader`` that also resolves YAML 1.2 floats such as ``1e-4`` and ``1.0e6``, and refuses
    a key given twice in one mapping (PyYAML keeps the last silently: a second ``train:`` would drop the
    first block; YAML 1.2 says keys are unique). Keys merged in with ``<<`` may still be overridden."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_line
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first at line {first_line[key] + 1}); PyYAML would keep only the "
                        "second silently: merge the two into one", key_node.start_mark,
                    )  # fmt: skip
                first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load(text: str | bytes) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (see the module docstring)."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 -- a SafeLoader subclass: plain data only
