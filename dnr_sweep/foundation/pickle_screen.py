"""An allowlist screen for pickles another program will load, without unpickling anything.

A pickle is a program: ``GLOBAL``/``STACK_GLOBAL`` import any attribute of any module and ``REDUCE``/
``NEWOBJ``/``BUILD`` call what is on the stack, so a blocklist is always bypassed (``pydoc.locate``,
``builtins.getattr``, ``functools.partial``, ...). This screen runs the unpickler's stack machine
abstractly over the opcodes and decides by a :class:`PicklePolicy`:

- every import must be listed, as *callable* (a data class or reconstructor) or *reference only*;
- a call must call a callable import, never something the pickle computed;
- ``BUILD``/``SETITEM(S)``/``APPEND(S)`` must target an object the pickle built;
- code shipped by value passes only where :attr:`PicklePolicy.code_allowed` accepts its exact fields;
- what cannot be read exactly (non-constant ``STACK_GLOBAL`` operands, ``EXT*``, ``PERSID``) is refused.

The policy used on Ray Tune's state: :mod:`dnr_sweep.sweep.tune_state`. Standard library only.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_PICKLE_BYTES = 1 << 30  # 1 GiB: far above any state Tune writes for a sweep of this tool

#: opcodes that push a str; the bytes opcodes push bytes, which STACK_GLOBAL does not accept
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                         "STRING"})  # fmt: skip
_CONSTANT_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                           "SHORT_BINBYTES", "BINBYTES", "BINBYTES8"})  # fmt: skip
_FIXED = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_CALL_OPS = frozenset({"REDUCE", "NEWOBJ", "NEWOBJ_EX"})
_FILL_OPS = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"})
_REFUSED_OPS = {
    "EXT1": "imports through the copyreg extension registry (EXT1)",
    "EXT2": "imports through the copyreg extension registry (EXT2)",
    "EXT4": "imports through the copyreg extension registry (EXT4)",
    "PERSID": "refers to a persistent object (PERSID)",
    "BINPERSID": "refers to a persistent object (BINPERSID)",
}
#: the modules of cloudpickle's by-value code helpers (Ray vendors its own copy)
_CLOUDPICKLE_MODULES = ("ray.cloudpickle.cloudpickle", "cloudpickle.cloudpickle")


class PickleRefused(ValueError):
    """The pickle does something the policy does not allow, or cannot be read; the message says what."""


@dataclass(frozen=True)
class PicklePolicy:
    """What a pickle may import, as ``(module, qualified name)`` pairs:

    - ``callables``: may be called with any arguments (``REDUCE``, ``OBJ``, ``INST``): enums, data
      types, reconstructors;
    - ``classes``: may only be instantiated without ``__init__`` (``NEWOBJ``: ``cls.__new__(cls)``,
      then ``BUILD``), as pickle stores every plain object, or stored;
    - ``references``: may only be stored as a value, never called;
    - ``code_allowed(fields)`` accepts the fields of a code object shipped by value (the arguments
      cloudpickle passes to ``types.CodeType``); by default none is.
    """

    callables: frozenset[tuple[str, str]]
    classes: frozenset[tuple[str, str]] = frozenset()
    references: frozenset[tuple[str, str]] = frozenset()
    code_allowed: Callable[[tuple], bool] = field(default=lambda fields: False)


class _Mark:
    """The unpickler's mark on the simulated stack."""


class _Global:
    """An imported module attribute on the stack."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


class _Built:
    """An object the pickle built (a container, or the result of a call): may be filled and built."""

    def __init__(self, what: str):
        self.what = what


class _Opaque:
    """A value the screen need not know (it can be stored, never called or filled)."""


_MARK, _OPAQUE = _Mark(), _Opaque()
_CODE_TYPE, _CODE, _FUNCTION = _Built("types.CodeType"), _Built("a checked code object"), _Built("a checked function")


def _normalise(module: str, name: str, proto: int) -> tuple[str, str]:
    """The (module, name) Python 3's unpickler imports: below protocol 3 it maps Python 2 names
    (``__builtin__`` -> ``builtins``), as ``pickle.Unpickler.find_class`` does with ``fix_imports``."""
    if proto >= 3:
        return module, name
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def screen(data: bytes, policy: PicklePolicy) -> list[tuple[str, str]]:
    """Check ``data`` against ``policy``; return the ``(module, name)`` pairs it imports, in order.

    Raises :class:`PickleRefused` (with the byte offset) for anything the policy does not allow, and for a
    pickle that is empty, malformed, truncated or larger than :data:`MAX_PICKLE_BYTES`.
    """
    if not data:
        raise PickleRefused("is empty")
    if len(data) > MAX_PICKLE_BYTES:
        raise PickleRefused(f"is {len(data)} bytes, above the {MAX_PICKLE_BYTES} a state file can be")
    if data[:1] != b"\x80":  # PROTO: every pickle of protocol >= 2 (Tune writes 5) starts with it
        raise PickleRefused("is not a pickle (no protocol header)")
    return _Machine(policy).run(data)


def referenced_globals(data: bytes) -> list[tuple[str, str]]:
    """Every ``(module, name)`` ``data`` imports, whatever it then does with them (for research and
    messages; never a safety check on its own)."""
    return _Machine(PicklePolicy(frozenset()), collect=[]).run(data)


def calls(data: bytes) -> list[tuple[str, str]]:
    """What ``data`` calls, in order, as ``("CALL" | "NEWOBJ", callee)`` (for research, as above)."""
    found: list[tuple[str, str]] = []
    _Machine(PicklePolicy(frozenset()), collect=found).run(data)
    return found


class _Machine:
    def __init__(self, policy: PicklePolicy, collect: list | None = None):
        self.policy = policy
        self.collect = collect  # research mode: record every import, allow everything
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}
        self.imports: list[tuple[str, str]] = []
        self.proto = 0

    def run(self, data: bytes) -> list[tuple[str, str]]:
        try:
            for opcode, arg, pos in pickletools.genops(data):
                self.pos = pos
                if opcode.name == "STOP":
                    return self.imports
                self._step(opcode, arg)
        except PickleRefused:
            raise
        except (ValueError, IndexError, RecursionError, UnicodeDecodeError, TypeError) as exc:
            raise PickleRefused(f"is not a complete pickle ({type(exc).__name__}: {exc})") from None
        raise PickleRefused("is not a complete pickle (no STOP)")

    def _refuse(self, what: str) -> PickleRefused:
        return PickleRefused(f"{what} (at byte {self.pos})")

    # -- the stack
    def _pop(self) -> object:
        if not self.stack or self.stack[-1] is _MARK:
            raise self._refuse("takes a value from an empty stack")
        return self.stack.pop()

    def _pop_mark(self) -> list[object]:
        items: list[object] = []
        while self.stack:
            item = self.stack.pop()
            if item is _MARK:
                return items[::-1]
            items.append(item)
        raise self._refuse("pops to a mark that was never set")

    def _top(self) -> object:
        if not self.stack:
            raise self._refuse("reads an empty stack")
        return self.stack[-1]

    # -- one opcode
    def _step(self, opcode: pickletools.OpcodeInfo, arg: object) -> None:
        name, stack = opcode.name, self.stack
        if name in _REFUSED_OPS:
            raise self._refuse(_REFUSED_OPS[name])
        if name == "PROTO":
            self.proto = int(arg)  # type: ignore[arg-type]
        elif name in _STRING_OPS:
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        elif name in _CONSTANT_OPS:
            stack.append(arg)
        elif name in _FIXED:
            stack.append(_FIXED[name])
        elif name in _TUPLE_N:
            items = [self._pop() for _ in range(_TUPLE_N[name])]
            stack.append(tuple(items[::-1]))
        elif name == "TUPLE":
            stack.append(tuple(self._pop_mark()))
        elif name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            imported = self._import(module, qualname)
            if name == "INST":
                self._pop_mark()
                stack.append(self._call(imported, ()))
            else:
                stack.append(imported)
        elif name == "STACK_GLOBAL":
            qualname, module = self._pop(), self._pop()
            if not isinstance(module, str) or not isinstance(qualname, str):
                raise self._refuse("computes the name it imports (a STACK_GLOBAL on values that are not strings)")
            stack.append(self._import(module, qualname))
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self._top()
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(arg)] = self._top()  # type: ignore[arg-type]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:  # type: ignore[arg-type]
                raise self._refuse(f"reads memo slot {arg} before storing it")
            stack.append(self.memo[int(arg)])  # type: ignore[arg-type]
        elif name == "DUP":
            stack.append(self._top())
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "POP":
            self._pop()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name in _CALL_OPS:
            if name == "NEWOBJ_EX":
                self._pop()  # kwargs
            args = self._pop()
            stack.append(self._call(self._pop(), args, new=name != "REDUCE"))
        elif name == "OBJ":
            items = self._pop_mark()
            if not items:
                raise self._refuse("OBJ without a class")
            stack.append(self._call(items[0], tuple(items[1:])))
        elif name == "BUILD":
            self._pop()  # the state
            target = self._top()
            if not isinstance(target, _Built) or target in (_CODE_TYPE, _CODE, _FUNCTION):
                raise self._refuse(f"sets the state of {self._describe(target)}, not of an object it built")
        elif name in _FILL_OPS:
            if name in ("APPENDS", "SETITEMS", "ADDITEMS"):
                self._pop_mark()
            else:
                for _ in range(2 if name == "SETITEM" else 1):
                    self._pop()
            target = self._top()
            if not isinstance(target, _Built) or target in (_CODE_TYPE, _CODE, _FUNCTION):
                raise self._refuse(f"fills {self._describe(target)}, not a container it built")
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "LIST", "DICT", "FROZENSET", "BYTEARRAY8"):
            if pickletools.markobject in opcode.stack_before:
                self._pop_mark()
            stack.append(_Built(name.lower()))
        else:  # FRAME, NEXT_BUFFER, READONLY_BUFFER, ...: by the stack effect pickletools documents
            before = opcode.stack_before
            if pickletools.markobject in before:
                self._pop_mark()
                before = before[: before.index(pickletools.markobject)]
            for _ in before:
                self._pop()
            stack.extend(_OPAQUE for _ in opcode.stack_after)

    @staticmethod
    def _describe(value: object) -> str:
        if isinstance(value, _Global):
            return f"the imported {value}"
        if isinstance(value, _Built):
            return value.what
        return f"a {type(value).__name__} constant" if not isinstance(value, _Opaque) else "a value it computed"

    def _import(self, module: str, qualname: str) -> _Global:
        module, qualname = _normalise(module, qualname, self.proto)
        self.imports.append((module, qualname))
        if self.collect is not None:
            return _Global(module, qualname)
        pair = (module, qualname)
        allowed = self.policy.callables | self.policy.classes | self.policy.references
        code_helper = module in _CLOUDPICKLE_MODULES and qualname in ("_builtin_type", "_make_function",
                                                                       "_function_setstate")  # fmt: skip
        if pair not in allowed and not code_helper:
            raise self._refuse(f"imports {module}.{qualname}, which the state this tool reads never holds")
        return _Global(module, qualname)

    def _call(self, func: object, args: object, *, new: bool = False) -> object:
        """The value a call leaves; ``new`` for ``NEWOBJ`` (``cls.__new__(cls, *args)``, no ``__init__``)."""
        if self.collect is not None:
            self.collect.append(("NEWOBJ" if new else "CALL", str(func)))
            return _Built(f"the result of {self._describe(func)}")
        if func is _CODE_TYPE:  # types.CodeType(*fields): code shipped by value
            if not isinstance(args, tuple) or not self.policy.code_allowed(args):
                name = args[-7] if isinstance(args, tuple) and len(args) > 7 and isinstance(args[-7], str) else "?"
                raise self._refuse(f"builds a code object by value (qualified name {name!r}) that is not one "
                                   "this tool's state holds")  # fmt: skip
            return _CODE
        if not isinstance(func, _Global):
            raise self._refuse(f"calls {self._describe(func)}")
        if func.module in _CLOUDPICKLE_MODULES:
            first = args[0] if isinstance(args, tuple) and args else None
            if func.name == "_builtin_type" and args == ("CodeType",):
                return _CODE_TYPE
            if func.name == "_make_function" and first is _CODE:
                return _FUNCTION
            if func.name == "_function_setstate" and first is _FUNCTION:
                return _Built("the state of a checked function")
            raise self._refuse(f"calls {func} on {self._describe(first)}, which builds code this tool never reads")
        pair = (func.module, func.name)
        if pair not in self.policy.callables and not (new and pair in self.policy.classes):
            how = (
                "may only be instantiated without running its __init__"
                if pair in self.policy.classes
                else ("may only be stored, never called")
            )
            raise self._refuse(f"calls {func}, which {how}")
        return _Built(f"a {func.name}")


__all__ = ["MAX_PICKLE_BYTES", "PicklePolicy", "PickleRefused", "referenced_globals", "screen"]
