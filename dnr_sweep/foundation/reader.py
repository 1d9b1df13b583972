"""The one reader of JSON files. Every JSON file dnr-sweep reads, its own (``sweep.json``, ``driver_end.json``,
a trial's ``epochs.json``, ``evaluation.json``, ``attack_strength.json``, the data set's verification record,
the fetch journal, the lock record) and Ray Tune's (``experiment_state-*.json`` and the trial entries inside it,
``result.json`` lines, ``params.json``), is parsed here and validated against its typed schema (pydantic, strict
types: :mod:`.schemas`, :mod:`.tune_schemas`). A file of the right syntax but the wrong shape (a wrong type, NaN
or infinity where a finite number belongs, a number out of range, a folder where the file belongs) is met the
same way by every command:

- :func:`read_strict` / :func:`parse_strict` (what ``resume`` reads before Ray starts): the first problem is an
  :class:`~.errors.InputFileError` naming the file, the field and the fix;
- :func:`read_lenient` / :func:`parse_lenient` (``report``, ``status``): each bad part is left out, the smallest
  that can go (a field, a list item, a trial entry; the whole file only when the rest cannot stand), with one
  note naming the file and the field; the caller says what a note becomes (a warning, a line of ``status``);
- :func:`read_lines`: JSON lines (Tune's ``result.json``), each line read leniently on its own.

``tests/test_reader.py`` fails when a module of the package parses JSON or YAML anywhere else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, from_json

from dnr_sweep.foundation.errors import InputFileError

M = TypeVar("M", bound=BaseModel)

#: larger than any JSON file dnr-sweep or Tune writes (a 1,000-trial experiment state is tens of MB)
MAX_BYTES: Final = 1 << 30
#: validation context key: the file must hold every field its writer writes and nothing else (``resume``)
COMPLETE: Final = "complete"
#: pruning rounds before a lenient read gives the file up (each round removes every part that failed)
_MAX_ROUNDS = 8

Path_ = tuple[str | int, ...]


class Unreadable(Exception):
    """The file cannot be read as a file (missing, a folder, too large, an I/O error); ``str()`` says which."""


class Missing(Unreadable):
    """There is no file at the path."""


@dataclass(frozen=True)
class Problem:
    """One way a file differs from its schema: ``field`` (``""`` for the whole file) and what is wrong."""

    field: str
    what: str

    def __str__(self) -> str:
        return f"{self.field} {self.what}" if self.field else self.what


# ------------------------------------------------------------------------------------------------
# Bytes


def read_bytes(path: Path) -> bytes:
    """The file's bytes; :class:`Unreadable` for a missing file, a folder, a special file, an oversized file or a
    read the filesystem refuses."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise Missing("does not exist") from None
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc})") from None
    if path.is_dir():
        raise Unreadable("is a folder, not a file")
    if not path.is_file():
        raise Unreadable("is not a regular file")
    if info.st_size > MAX_BYTES:
        raise Unreadable(f"holds {info.st_size:,} bytes, more than any file dnr-sweep or Ray Tune writes")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc})") from None


def document(data: bytes | str) -> Any:
    """The JSON value of ``data`` as plain data, unchecked (NaN and infinities allowed, as Tune writes them);
    :class:`Unreadable` when it is not JSON. Only for a screen that must see every part whatever its shape (the
    pickle screen of :mod:`dnr_sweep.sweep.tune_state`): whatever uses a value reads it through a schema."""
    value = _document(data)
    if value is _NOT_JSON:
        raise Unreadable("is not readable JSON (corrupt, truncated, or nested too deeply)")
    return value


def embedded(text: str) -> Any | None:
    """A JSON object or list held as text inside a JSON file (Tune stores each trial entry so), unchecked like
    :func:`document`; ``None`` when ``text`` holds none."""
    value = _embedded(text)
    return None if value is _NOT_JSON else value


# ------------------------------------------------------------------------------------------------
# Strict: the first problem refuses the file


def parse_strict(data: bytes | str, schema: type[M], *, source: object, expected: str, fix: str,
                 complete: bool = False) -> M:  # fmt: skip
    """``data`` validated as ``schema``, or :class:`InputFileError` naming ``source``, the first field that is
    wrong and ``fix``. ``complete``: every field the writer writes must be there and nothing else."""
    try:
        return schema.model_validate_json(data, context={COMPLETE: complete})
    except ValidationError as exc:
        errors = exc.errors()
    doc = _document(data)
    problem = _problem(doc, errors[0])
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise InputFileError(source, f"{_field_phrase(problem)}{more}", expected=expected, fix=fix)


def read_strict(path: Path, schema: type[M], *, expected: str, fix: str, complete: bool = False) -> M:
    """:func:`parse_strict` of the file at ``path`` (a missing file, a folder, an unreadable one: refused too)."""
    try:
        data = read_bytes(path)
    except Unreadable as exc:
        raise InputFileError(path, str(exc), expected=expected, fix=fix) from None
    return parse_strict(data, schema, source=path, expected=expected, fix=fix, complete=complete)


def _field_phrase(problem: Problem) -> str:
    return f"field {problem.field} {problem.what}" if problem.field else problem.what


# ------------------------------------------------------------------------------------------------
# Lenient: bad parts are left out


def parse_lenient(data: bytes | str, schema: type[M], *, source: object, unusable: str,
                  prune: bool = True) -> tuple[M | None, list[str]]:  # fmt: skip
    """``data`` validated as ``schema`` with each part that fails left out, and a note per part left out:
    ``<source>: <field> <what is wrong>; <what was left out>``. The whole file goes (``None``, the note ending in
    ``unusable``) when it is not JSON, when its top level is wrong, when a field of the schema's ``IDENTITY`` is
    (a result line's epoch), when ``prune`` is false (a record that is used whole or not at all), or when what is
    left still fails."""
    try:
        return schema.model_validate_json(data), []
    except ValidationError as exc:
        errors = exc.errors()
    doc = _document(data)
    identity = getattr(schema, "IDENTITY", ())  # top-level fields without which the rest means nothing
    found: list[tuple[Problem, Path_]] = []  # each problem and where it was, in the file's own coordinates
    pruned: list[Path_] = []
    origin: dict[Path_, list[int]] = {}  # a shortened list (file coordinates) -> its items' indices in the file
    for _ in range(_MAX_ROUNDS):
        cuts = []
        heres = [_input_path(doc, error["loc"]) for error in errors]
        # a list missing a positional item is a fixed-length tuple (a trial entry): it goes whole, never shifted
        tuples = [here for here, error in zip(heres, errors, strict=True) if error["type"] == "missing"
                  and len(error["loc"]) > len(here) and isinstance(error["loc"][len(here)], int)]  # fmt: skip
        for error, here in zip(errors, heres, strict=True):
            here = min((t for t in tuples if here[: len(t)] == t), key=len, default=here)
            where = _original(here, origin)
            if not any(_related(where, p) for p in pruned):  # not a consequence of an earlier cut
                found.append((_problem(doc, error, field=_field_text(where)), where))
            cuts.append(() if here and here[0] in identity else here)
        if doc is _NOT_JSON or not prune or any(not here for here in cuts):
            break
        pruned += [_original(here, origin) for here in cuts]
        doc = _without(doc, cuts, origin)
        try:
            return schema.model_validate_json(json.dumps(doc)), _notes(source, found, pruned, unusable)
        except ValidationError as exc:
            errors = exc.errors()
    return None, _notes(source, found, [()], unusable)


def read_lenient(path: Path, schema: type[M], *, unusable: str, prune: bool = True) -> tuple[M | None, list[str]]:
    """:func:`parse_lenient` of the file at ``path``; a missing file is ``(None, [])``, a folder or an unreadable
    file one note."""
    try:
        data = read_bytes(path)
    except Missing:
        return None, []
    except Unreadable as exc:
        return None, [f"{path}: {exc}; {unusable}"]
    return parse_lenient(data, schema, source=path, unusable=unusable, prune=prune)


def read_lines(path: Path, schema: type[M], *, max_lines: int | None = None,
               tail: int | None = None) -> tuple[list[M], list[str]]:  # fmt: skip
    """JSON lines (Tune's ``result.json``): each line read with :func:`parse_lenient` (a bad figure is left out of
    its line; a line that is no JSON object is skipped). ``max_lines``: the first that many good lines;
    ``tail``: the last that many (the others are not validated). A missing file is ``([], [])``."""
    try:
        raw = read_bytes(path).splitlines()
    except Missing:
        return [], []
    except Unreadable as exc:
        return [], [f"{path}: {exc}; its trial is left out"]
    numbered = [(n, text) for n, text in enumerate(raw, start=1) if text.strip()]
    if tail is not None:
        numbered.reverse()
    lines: list[M] = []
    notes: list[str] = []
    for number, text in numbered:
        if len(lines) == (max_lines if tail is None else tail):
            break
        line, line_notes = parse_lenient(text, schema, source=f"{path}:{number}", unusable="skipped")
        if line is None and _document(text) is _NOT_JSON:
            last = number == len(raw) or all(not rest.strip() for rest in raw[number:])
            what = "a half-written last line: the writer is mid-line or a crash cut it short" if last else (
                f"unreadable line {number}")  # fmt: skip
            line_notes = [f"{path}:{number} is not a complete JSON line ({what}); skipped"]
        notes += line_notes
        if line is not None:
            lines.append(line)
    if tail is not None:
        lines.reverse()
    return lines, notes


def _notes(source: object, found: list[tuple[Problem, Path_]], pruned: list[Path_], unusable: str) -> list[str]:
    """One note per problem: what is wrong, then what went (the part itself, an enclosing part, or the file)."""
    notes = []
    for problem, where in found:
        cut = min((p for p in pruned if where[: len(p)] == p), key=len, default=where)
        gone = unusable if not cut else ("left out" if cut == where else f"{_field_text(cut)} left out")
        note = f"{source}: {problem}; {gone}"
        if note not in notes:
            notes.append(note)
    return notes


def _related(a: Path_, b: Path_) -> bool:
    """One part holds the other (or they are the same)."""
    return a[: len(b)] == b or b[: len(a)] == a


# ------------------------------------------------------------------------------------------------
# Where an error points in the document, and what it says


class _NotJson:
    pass


_NOT_JSON: Any = _NotJson()


def _document(data: bytes | str) -> Any:
    """The parsed JSON (NaN and infinities allowed, as Tune writes them), or ``_NOT_JSON``."""
    try:
        return from_json(data, allow_inf_nan=True)
    except ValueError:
        return _NOT_JSON


def _embedded(node: str) -> Any:
    """A JSON object or list held as text (Tune stores each trial entry so), else ``_NOT_JSON``."""
    if node[:1] not in ("{", "["):
        return _NOT_JSON
    return _document(node)


def _input_path(doc: Any, loc: Sequence[str | int]) -> Path_:
    """The part of ``doc`` an error's ``loc`` points at: its steps through objects, lists and embedded JSON
    text, stopping where the document ends (a missing field's container; a union's member tag)."""
    path: list[str | int] = []
    node = doc
    for step in loc:
        if isinstance(node, str):
            node = _embedded(node)
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            break
        path.append(step)
    return tuple(path)


def _original(path: Path_, origin: dict[Path_, list[int]]) -> Path_:
    """A path into the shortened document -> the same part's path in the file as it was read."""
    out: list[str | int] = []
    for step in path:
        indices = origin.get(tuple(out)) if isinstance(step, int) else None
        out.append(indices[step] if indices is not None and step < len(indices) else step)
    return tuple(out)


def _without(doc: Any, paths: list[Path_], origin: dict[Path_, list[int]]) -> Any:
    """``doc`` with the parts at ``paths`` removed, deepest and last first; ``origin`` follows the list items."""
    order = sorted(set(paths), key=lambda p: (len(p), p[-1] if isinstance(p[-1], int) else -1), reverse=True)
    for path in order:
        if isinstance(path[-1], int):
            parent = _original(path[:-1], origin)
            indices = origin.setdefault(parent, list(range(_length(doc, path[:-1]))))
            if path[-1] < len(indices):
                del indices[path[-1]]
        doc = _remove(doc, path)
    return doc


def _length(doc: Any, path: Path_) -> int:
    return len(_at(doc, path))


def _remove(node: Any, path: Path_) -> Any:
    if isinstance(node, str):  # embedded JSON text: edited as data, stored back as text
        inner = _embedded(node)
        return node if inner is _NOT_JSON else json.dumps(_remove(inner, path))
    head, rest = path[0], path[1:]
    in_dict = isinstance(node, dict) and head in node
    in_list = isinstance(node, list) and isinstance(head, int) and 0 <= head < len(node)
    if not (in_dict or in_list):
        return node
    copy = dict(node) if in_dict else list(node)
    if rest:
        copy[head] = _remove(node[head], rest)
    else:
        del copy[head]
    return copy


def _at(doc: Any, path: Path_) -> Any:
    node = doc
    for step in path:
        node = _embedded(node) if isinstance(node, str) else node
        node = node[step]
    return _embedded(node) if isinstance(node, str) and _embedded(node) is not _NOT_JSON else node


def _field_text(loc: Sequence[str | int]) -> str:
    """``("trial_data", 3, 0, "status")`` -> ``trial_data[3][0].status``."""
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


#: what a pydantic type error expected, in a user's words
_EXPECTED = {
    "float_type": "a number", "float_parsing": "a number", "int_type": "an integer", "int_parsing": "an integer",
    "int_from_float": "an integer", "string_type": "text", "bool_type": "true or false", "dict_type": "a JSON object",
    "model_type": "a JSON object", "model_attributes_type": "a JSON object", "list_type": "a JSON list",
    "tuple_type": "a JSON list", "json_type": "JSON held as text", "none_required": "null",
    "finite_number": "a finite number",
}  # fmt: skip
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _problem(doc: Any, error: ErrorDetails, *, field: str | None = None) -> Problem:
    """An error as ``field`` (by default where it points in ``doc``) and a sentence: ``is the text 'x', expected
    a number``."""
    kind, loc, value, ctx = error["type"], error["loc"], error.get("input"), error.get("ctx") or {}
    where = _input_path(doc, loc) if doc is not _NOT_JSON else ()
    field = _field_text(where) if field is None else field
    if kind == "json_invalid":
        detail = str(ctx.get("error", "")).strip() or "not JSON"
        return Problem(field, f"is not readable JSON ({detail})")
    if kind == "missing":
        step = loc[len(where)] if len(loc) > len(where) else None
        if isinstance(step, int):
            return Problem(field, f"has no item {step} (it is {describe(_at(doc, where))})")
        return Problem(field, f"lacks the field {step!r}" if step is not None else "is missing")
    if kind == "extra_forbidden":
        return Problem(field, f"is not a field of this file (it holds {describe(value)})")
    if kind in _EXPECTED:
        return Problem(field, f"is {describe(value)}, expected {_EXPECTED[kind]}")
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return Problem(field, f"is {describe(value)}, expected a number {_BOUNDS[kind]} {bound}")
    if kind == "literal_error":
        return Problem(field, f"is {describe(value)}, expected {ctx.get('expected', 'another value')}")
    if kind in ("too_short", "too_long"):
        return Problem(field, f"is {describe(value)}, expected {error['msg'].lower().removeprefix('input should ')}")
    if "expected" in ctx:  # the schemas' own checks
        return Problem(field, f"is {describe(value)}, expected {ctx['expected']}")
    return Problem(field, f"is {describe(value)} ({error['msg'][:1].lower()}{error['msg'][1:]})")


def describe(value: Any) -> str:
    """A JSON value in a few words: ``the text 'abc'``, ``NaN``, ``a list of 3 items``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**15 else f"an integer of {len(str(abs(value)))} digits"
        return f"the integer {text}" if abs(value) < 10**15 else text
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return ("infinite" if value > 0 else "minus infinite") if math.isinf(value) else f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


__all__ = ["COMPLETE", "MAX_BYTES", "Missing", "Problem", "Unreadable", "describe", "document", "embedded",
           "parse_lenient", "parse_strict", "read_bytes", "read_lenient", "read_lines", "read_strict"]  # fmt: skip
