"""Validation errors as users read them: ``<file>: <field.path>: <what is wrong and how to fix it>``, with
the closest valid key suggested for an unknown one.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

# --------------------------------------------------------------------------------------------
# Loading and error formatting


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config class whose fields live at ``loc`` (for suggesting keys)."""
    model: Any = root
    in_mapping = False  # the previous field was a dict[str, Model]: this part is one of its keys
    for part in loc:
        if in_mapping:
            in_mapping = False
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        in_mapping = getattr(annotation, "__origin__", None) is dict
        for candidate in getattr(annotation, "__args__", ()) or (annotation,):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def format_error(root: type[BaseModel], error: dict[str, Any], prefix: str = "") -> str:
    loc = tuple(part for part in error["loc"] if not str(part).startswith(("function-", "literal[", "[key]")))
    # pydantic appends the union member name for Optional fields; drop those
    loc = tuple(
        part for part in loc if part not in ("SchedulerConfig", "SearchAlgConfig", "EvaluateConfig", "str", "int")
    )
    path = prefix + ".".join(str(part) for part in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        valid = list(parent.model_fields) if parent else []
        key = str(loc[-1])
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        if not valid:  # never an empty list of valid keys
            return f"{path}: unknown key '{key}'; remove it (`dnr-sweep validate` prints what this block takes)"
        return f"{path}: unknown key '{key}'; {hint}valid keys: {', '.join(valid)}"
    message = error["msg"]
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.replace(noise, "")
    if kind == "missing":
        message = "required field is missing; add it"
    elif kind in ("literal_error", "enum"):
        message = f"{message}, got {error.get('input')!r}"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        message = f"{message}, got {error.get('input')!r}"
    return f"{path}: {message}" if path else message


def validation_messages(root: type[BaseModel], exc: ValidationError, source: str, prefix: str = "") -> list[str]:
    errors = exc.errors()
    # an unknown key inside a block also makes pydantic say the block's required keys are
    # missing; the unknown key is the real problem, so the "missing" noise is dropped
    unknown_parents = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
    errors = [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"][:-1]) in unknown_parents)]
    return [f"{source}: {format_error(root, err, prefix)}" for err in errors]
