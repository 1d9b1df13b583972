"""Which config fields each training method reads, declared once per method on its config block.

Most of a run config means the same to every method (data, model, attacks, batch size, momentum, seed).
The fields of :data:`METHOD_FIELDS` do not: DNR's schedule (``train.epochs``, ``lr``, ``lr_milestones``,
``lr_gamma``, ``warmup_epochs``), ``train.weight_decay`` (HYDRA has its own) and the four method blocks
(``dnr``, ``admm``, ``lasso``, ``hydra``). Each block (``DNRConfig``, ``ADMMConfig``, ...) declares, as its
``reads``, which of them its method reads (:class:`MethodReads`); a field it leaves out changes nothing in
its runs. Validation refuses a search dimension or a ``--set`` on a field that no method of the run reads
(:func:`unread_by`), so a sweep never "searches" a field into identical trials.
``tests/test_method_reads.py`` fails when a method reads a field its block does not declare, or when
changing an undeclared field changes a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: fields whose meaning depends on the method; every other field is read by all methods alike
METHOD_FIELDS: tuple[str, ...] = (
    "train.epochs", "train.lr", "train.lr_milestones", "train.lr_gamma", "train.warmup_epochs",
    "train.weight_decay", "dnr", "admm", "lasso", "hydra",
)  # fmt: skip


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def method_dependent(path: str) -> bool:
    """Whether ``path`` (a dotted leaf path) is one of :data:`METHOD_FIELDS` or inside one of its blocks."""
    return any(_under(path, prefix) for prefix in METHOD_FIELDS)


@dataclass(frozen=True)
class MethodReads:
    """The fields of :data:`METHOD_FIELDS` one method reads.

    ``fields``: dotted paths, or a block's name for all its fields. ``only_when``: a field read only while
    another field holds one of some values (``{"hydra.beta": ("hydra.loss", ("pgd",))}``). ``instead``: what
    the method reads in place of the fields it leaves out, for the refusal's message."""

    fields: tuple[str, ...]
    only_when: Mapping[str, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)
    instead: str = ""

    def __post_init__(self) -> None:
        for path in (*self.fields, *self.only_when):
            if not method_dependent(path):
                raise ValueError(f"{path!r} is read by every method; declare only fields of {METHOD_FIELDS}")

    def covers(self, path: str) -> bool:
        """Whether ``path`` is among the declared fields (whatever ``only_when`` says)."""
        return any(_under(path, declared) for declared in self.fields)

    def reads(self, path: str, values_of: Callable[[str], Iterable[Any]]) -> bool:
        """Whether the method reads ``path`` for some value ``values_of(condition)`` can give its condition."""
        if not self.covers(path):
            return False
        if path not in self.only_when:
            return True
        condition, allowed = self.only_when[path]
        return any(_is_one_of(value, allowed) for value in values_of(condition))

    def why_not(self, path: str) -> str:
        """Why the method does not read ``path`` (``covers`` it only under a condition, or not at all)."""
        if self.covers(path) and path in self.only_when:
            condition, allowed = self.only_when[path]
            return f"it reads {path} only with {condition}: {' or '.join(_show(v) for v in allowed)}"
        return self.instead


def _is_one_of(value: Any, allowed: tuple[Any, ...]) -> bool:
    # `True == 1` in Python: a bool condition must not match an int value, nor the reverse
    return any(type(value) is type(a) and value == a for a in allowed)


def _show(value: Any) -> str:
    """A condition's value as YAML writes it."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def unread_by(path: str, methods: Iterable[str], reads_of: Callable[[str], MethodReads],
              values_of: Callable[[str], Iterable[Any]]) -> str | None:  # fmt: skip
    """Why no method of ``methods`` reads ``path``, as the end of a refusal; ``None`` when one does (or
    ``path`` means the same to every method)."""
    methods = list(dict.fromkeys(methods))
    if not method_dependent(path) or any(reads_of(m).reads(path, values_of) for m in methods):
        return None
    if len(methods) > 1:
        return f"none of the searched methods ({', '.join(methods)}) reads {path}"
    method, block = methods[0], path.split(".", 1)[0]
    if block in METHOD_FIELDS and block != method:
        return (
            f"method {method} does not read {path} (a setting of method {block}: set method: {block}, or search method)"
        )
    reason = reads_of(method).why_not(path)
    return f"method {method} does not read {path}" + (f" ({reason})" if reason else "")
