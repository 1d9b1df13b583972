"""Reading a config: safe YAML with bounded size, ``--set`` overrides, validation of the whole, and the
typed result (or one :class:`~dnr_sweep.foundation.errors.ConfigError` listing every problem).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from dnr_sweep.config.checks import validate_method, validate_search, validate_tune
from dnr_sweep.config.messages import validation_messages
from dnr_sweep.config.overrides import apply_overrides, overridden_paths, set_path
from dnr_sweep.config.run import RunConfig
from dnr_sweep.config.sweep import SweepConfig
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import yaml_safe
from dnr_sweep.foundation.errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000  # a config is a few kB; anything near this is not one
MAX_CONFIG_VALUES = 100_000  # values after YAML aliases are expanded ("billion laughs" stays bounded)


def _count_values(data: Any, budget: int) -> int:
    """Values in ``data`` as pydantic would walk them (shared aliases counted each time), up to ``budget``."""
    count, stack = 0, [data]
    while stack and count <= budget:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return count


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader (:mod:`dnr_sweep.foundation.yaml_safe`); errors name the file (and line)."""
    path = Path(path)
    if not path.is_file():
        hint = "it is a directory" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
        raise ConfigError([f"{path}: cannot read config ({hint}); check the path"])
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{path}: {path.stat().st_size} bytes is not a config (at most {MAX_CONFIG_BYTES}); "
                               "check the path"])  # fmt: skip
        text = path.read_bytes().decode("utf-8")
        data = yaml_safe.load(text)
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read config ({exc.strerror}); check the path and its permissions"]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not a text file (byte {exc.start} is not UTF-8); pass a YAML config"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: {where}malformed YAML: {problem}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: nested too deeply to be a config; check the file"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}: top level must be a mapping of sections (data, model, ...), got {type(data).__name__}"]
        )
    if _count_values(data, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError([f"{path}: more than {MAX_CONFIG_VALUES} values once YAML aliases are expanded; "
                           "a config is a few dozen values, check the file"])  # fmt: skip
    return data


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """A single-run config from YAML; ``search``/``tune``/``report`` blocks are allowed and ignored."""
    sweep = load_sweep_config(path, overrides)
    return sweep.base_run()


def load_sweep_config(path: str | Path, overrides: Iterable[str] = ()) -> SweepConfig:
    """Read, override and validate a sweep YAML. Raises :class:`ConfigError` with every problem."""
    source = str(path)
    overrides = list(overrides)
    data = read_yaml(path)
    if not data and not overrides:  # its defaults never run (5,000 validation images of digits' 1,437)
        raise ConfigError([f"{path}: the config is empty (no settings); write at least a data: block, e.g. "
                           "`data: {dataset: digits, val_size: 200}`, or start from a file in search_spaces/"])  # fmt: skip
    raw = apply_overrides(data, overrides)
    return validate_sweep(raw, source, overridden=overridden_paths(overrides))


def validate_sweep(raw: dict[str, Any], source: str = "<config>", *, overridden: Iterable[str] = ()) -> SweepConfig:
    """The validated sweep; ``overridden``: the paths ``--set`` set (a field no method of the run reads is
    refused there, :func:`dnr_sweep.config.checks.validate_method`). :class:`ConfigError` with every problem."""
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_messages(SweepConfig, exc, source)) from None
    errors = (
        validate_search(config, source)
        + validate_tune(config, source)
        + validate_method(raw, config, source, overridden)
    )
    if errors:
        raise ConfigError(errors)
    return config


def run_config_from_flat(base: RunConfig, flat: Mapping[str, Any]) -> RunConfig:
    """A trial's run config: ``base`` with dotted ``flat`` values (Tune's sampled config) set."""
    data = base.model_dump()
    for path, value in flat.items():
        set_path(data, path, value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_messages(RunConfig, exc, "trial config")) from None


#: run-config keys :func:`to_yaml_dict` leaves out when they hold their defaults (a DNR run's ``method`` and the
#: blocks of the baselines it does not run); every other key is in every config.yaml dnr-sweep writes
LEFT_OUT_WHEN_DEFAULT: tuple[str, ...] = ("method", *rc.METHODS[1:])


def to_yaml_dict(config: BaseModel) -> dict[str, Any]:
    """The resolved config as plain data (the schema's keys), for printing and saving.

    A baseline's block left at its defaults, by a config that does not run it, is left out, and so is
    ``method: dnr``: a DNR config is written without a ``method:`` key (so checkpoints of the layout
    without one still resume); nothing that differs from a default is ever dropped (a sweep's base config carries the
    blocks its ``method`` trials read)."""
    data = config.model_dump(mode="json")
    if isinstance(config, RunConfig):
        for name in rc.METHODS[1:]:
            if name != config.method and data.get(name) == type(getattr(config, name))().model_dump(mode="json"):
                data.pop(name, None)
        if config.method == "dnr":
            data.pop("method", None)
    return data
