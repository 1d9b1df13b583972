"""Cross-field checks of a validated sweep that pydantic's per-field rules cannot express: search paths and
values against the schema, the tune block against the search, and ``points_to_evaluate`` against the rules.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import (
    ValidationError,
)

from dnr_sweep.config.fields import MAX_TRIALS
from dnr_sweep.config.messages import format_error
from dnr_sweep.config.overrides import leaf_paths, set_path
from dnr_sweep.config.reads import unread_by
from dnr_sweep.config.run import RunConfig, method_reads
from dnr_sweep.config.sweep import SearchSpec, SweepConfig
from dnr_sweep.foundation import run_contract as rc


def validate_search(config: SweepConfig, source: str) -> list[str]:
    """Check each search path against the schema and each value against the field's type and range."""
    errors = []
    valid_paths = leaf_paths(RunConfig)
    base = config.base_run().model_dump()
    for path, spec in config.search.items():
        if path not in valid_paths:
            close = difflib.get_close_matches(path, valid_paths, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            errors.append(
                f"{source}: search.{path}: not a field of the run config; {hint}"
                f"search keys are dotted paths such as dnr.density, dnr.pruning, dnr.beta"
            )
            continue
        if path == "name":
            errors.append(f"{source}: search.name: the run name cannot be searched")
            continue
        as_field = []  # a grid's or choice's values as the field's type ("0.5" -> 0.5), so trials and tables agree
        for value in spec.probe_values():
            trial = copy.deepcopy(base)
            set_path(trial, path, value)
            try:
                as_field.append(_get_path(RunConfig.model_validate(trial).model_dump(), path))
            except ValidationError as exc:
                kind = spec.rule[0]
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
                    if loc == path or not loc:
                        msg = format_error(RunConfig, err)
                        msg = msg.split(": ", 1)[1] if ": " in msg and loc else msg
                        if err["type"] == "int_from_float":
                            msg += f" ({kind} draws fractional values; use randint or grid for this integer field)"
                        errors.append(f"{source}: search.{path}.{kind}: {msg}")
                        break
                else:
                    errors.append(
                        f"{source}: search.{path}: {value!r} makes the config invalid: {exc.errors()[0]['msg']}"
                    )
                break
        else:
            kind, values = spec.rule
            if kind in ("grid", "choice"):
                values[:] = as_field
    return errors


def _get_path(data: Mapping[str, Any], path: str) -> Any:
    for key in path.split("."):
        data = data[key]
    return data


def validate_tune(config: SweepConfig, source: str) -> list[str]:
    errors = []
    tune = config.tune
    if config.grid_size() > MAX_TRIALS:
        errors.append(
            f"{source}: tune.num_samples: {config.grid_size()} trials (num_samples x grid sizes) is more than "
            f"{MAX_TRIALS}; lower tune.num_samples or shorten the grids"
        )
    searcher, searcher_spec = tune.search_alg.chosen if tune.search_alg is not None else (None, None)
    if searcher is not None:
        grids = [path for path, spec in config.search.items() if spec.rule[0] == "grid"]
        if grids and not searcher.accepts_grid:
            errors.append(
                f"{source}: search.{grids[0]}: {searcher.label} cannot take grid dimensions; "
                f"use 'choice' ({searcher.label} samples it as a categorical) or drop tune.search_alg"
            )
        if not config.search and searcher.needs_dimensions:
            errors.append(f"{source}: tune.search_alg: {searcher.label} needs at least one search dimension")
    asha = tune.scheduler.asha if tune.scheduler is not None else None
    if asha is not None and asha.grace_period > (asha.max_t or config.train.epochs):
        errors.append(
            f"{source}: tune.scheduler.asha.grace_period: {asha.grace_period} is above max_t "
            f"({asha.max_t or config.train.epochs}{'' if asha.max_t else ', train.epochs'}): no trial could be "
            "stopped early; lower grace_period or raise max_t"
        )
    single_objective = searcher is not None and not searcher_spec.objectives
    if tune.metric is None and (single_objective or (asha is not None and asha.metric is None)):
        errors.append(
            f"{source}: tune.metric: the searcher or scheduler needs a metric; e.g. tune.metric: val_clean_acc"
        )
    if asha is not None:
        for path in asha.group_by or []:
            if path not in config.search:
                errors.append(
                    f"{source}: tune.scheduler.asha.group_by: {path!r} is not a search path, so all trials share "
                    f"its value; group by searched paths ({', '.join(config.search) or 'none here'})"
                )
    errors += _validate_points(config, source)
    if config.train.select_on == "test":
        used = {"tune.metric": tune.metric, "tune.scheduler.asha.metric": asha.metric if asha else None}
        if searcher is not None:
            used.update({f"tune.search_alg.{searcher.name}.objectives.{k}": k for k in searcher_spec.objectives or {}})
        for where, metric in used.items():
            if metric is not None and rc.is_validation_metric(metric):
                errors.append(
                    f"{source}: {where}: {metric!r} needs validation figures, but train.select_on is 'test' (the "
                    "paper's protocol) and the run measures none; use select_on: val with a data.val_size, "
                    "or set tune.metric: null for a plain grid"
                )
    return errors


def in_domain(spec: SearchSpec, value: Any) -> bool:
    """Whether ``value`` is one the rule can produce (a listed value, or inside the range)."""
    kind, rule = spec.rule
    if kind in ("grid", "choice"):
        return value in rule
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "randint":
        return isinstance(value, int) and rule[0] <= value < rule[1]
    return rule[0] <= value <= rule[1]


def _validate_points(config: SweepConfig, source: str) -> list[str]:
    """``tune.points_to_evaluate``: searched, non-grid paths only, values inside their rule, valid configs."""
    points = config.tune.points_to_evaluate or []
    errors = []
    where = f"{source}: tune.points_to_evaluate"
    if len(points) > config.tune.num_samples:
        errors.append(f"{where}: {len(points)} points but tune.num_samples is {config.tune.num_samples}; each point "
                      f"takes one sample, so set num_samples to at least {len(points)}")  # fmt: skip
    base = config.base_run().model_dump()
    for index, point in enumerate(points):
        trial = copy.deepcopy(base)
        for path, value in point.items():
            if path in config.search:
                set_path(trial, path, value)
        try:
            validated = RunConfig.model_validate(trial).model_dump()
        except ValidationError as exc:
            errors += [f"{where}[{index}]: {format_error(RunConfig, err)}" for err in exc.errors()]
            validated = None
        for path, value in point.items():
            spec = config.search.get(path)
            if spec is None:
                errors.append(f"{where}[{index}].{path}: not a search path; a point sets searched paths only "
                              f"({', '.join(config.search) or 'none here'}), so its value shows in the results")  # fmt: skip
                continue
            if validated is not None:  # as the field's type ("0.5" -> 0.5), like the grids
                point[path] = value = _get_path(validated, path)
            if spec.rule[0] == "grid":
                errors.append(f"{where}[{index}].{path}: a grid dimension; every point is run at each of its "
                              "values, so leave it out of the point")  # fmt: skip
            elif not in_domain(spec, value):
                kind, rule = spec.rule
                errors.append(f"{where}[{index}].{path}: {value!r} is outside its search rule "
                              f"{kind}: {list(rule)}; widen the rule or change the point")  # fmt: skip
    return errors


def validate_method(
    raw: Mapping[str, Any], config: SweepConfig, source: str, overridden: Iterable[str] = ()
) -> list[str]:
    """Fields the run's methods never read (:mod:`.reads`, each method's block declares what it reads): a search
    dimension no method of the run reads is refused (its trials would all train the same), and so is a ``--set``
    (``overridden``: the dotted paths the overrides set) that none reads, naming the method. A search over
    ``method`` reads what any of its methods reads. A baseline's ``train.epochs`` is the sum of its phases: a
    different value written in the YAML is refused, not silently replaced; other fields written in the YAML are
    allowed, since every resolved config.yaml holds all of them."""
    errors: list[str] = []
    base = config.base_run().model_dump()
    valid_paths = set(leaf_paths(RunConfig))

    def values_of(path: str) -> list[Any]:
        spec = config.search.get(path)
        return spec.probe_values() if spec is not None else [_get_path(base, path)]

    methods = [m for m in values_of("method") if m in rc.METHODS]  # an unknown one: validate_search names it
    for path in config.search:
        why = unread_by(path, methods, method_reads, values_of) if path in valid_paths and methods else None
        if why:
            errors.append(f"{source}: search.{path}: {why}, so every trial would train the same; drop the dimension")
    overridden = [path for path in dict.fromkeys(overridden) if path in valid_paths and methods]
    for path in overridden:
        why = unread_by(path, methods, method_reads, values_of)
        if why:
            errors.append(f"{source}: --set {path}: {why}, so it would change nothing; drop it")
    block = config.method_block
    train = raw.get("train")
    written = train.get("epochs") if isinstance(train, Mapping) else None
    if "method" not in config.search and block is not None and written is not None and "train.epochs" not in \
            overridden and written != block.total_epochs:  # fmt: skip
        errors.append(
            f"{source}: train.epochs: method {config.method} trains for the sum of its phases' epochs "
            f"({block.total_epochs}); drop train.epochs and set the {config.method}.*_epochs instead"
        )
    return errors
