"""Dotted paths into a config: the schema's leaf paths, setting a value at a path, and ``--set key.path=value``
overrides.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import (
    BaseModel,
)

from dnr_sweep.config.run import RunConfig
from dnr_sweep.config.sweep import SearchSpec
from dnr_sweep.foundation import yaml_safe
from dnr_sweep.foundation.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Dotted paths


def leaf_paths(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted path to a leaf field of ``model`` (``dnr.density``, ``attack.train.eps``, ...)."""
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += leaf_paths(annotation, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``path = 'a.b.c'``, creating missing mappings."""
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError([f"--set {path}: '{part}' is a value, not a section"])
        node = child
    node[parts[-1]] = value


def _set_search(data: dict[str, Any], item: str, dimension: str, value: Any) -> None:
    """``search.<dotted.path>[.<rule>]=value``: the search keys are themselves dotted paths."""
    rules = tuple(SearchSpec.model_fields)
    path, _, rule = dimension.rpartition(".")
    search = data.get("search")
    if search is None:
        search = data["search"] = {}
    if not isinstance(search, dict):
        raise ConfigError([f"--set {item!r}: 'search' is a value, not a section"])
    if rule in rules and path:
        search[path] = {rule: value}
    else:
        search[dimension] = value


def _parse(item: str) -> tuple[str, Any]:
    """``key.path=value`` -> (key, value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        raise ConfigError([f"--set {item!r}: expected key.path=value, e.g. --set dnr.density=0.1"])
    try:
        value = yaml_safe.load(raw)
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError([f"--set {key}=...: nested too deeply to be a config value"]) from None
    return key, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings; values are parsed as YAML (``0.1``, ``true``, ``[1, 2]``).

    A search dimension is set as ``search.dnr.density.grid=[0.1, 0.5]`` (or
    ``search.dnr.density={grid: [0.1, 0.5]}``).
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, value = _parse(item)
        if key.startswith("search.") and len(key) > len("search."):
            _set_search(data, item, key[len("search.") :], value)
        else:
            set_path(data, key, value)
    return data


def overridden_paths(overrides: Iterable[str]) -> list[str]:
    """The dotted paths of the run config that ``overrides`` set (a mapping value: each path inside it);
    search dimensions (``search.*``) are not among them."""
    paths: list[str] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{path}.{key}", inner)
        else:
            paths.append(path)

    for item in overrides:
        key, value = _parse(item)
        if key != "search" and not key.startswith("search."):
            walk(key, value)
    return paths
