"""Whether a run folder can be resumed: Tune's state files are present and their pickles pass the screen."""

from __future__ import annotations

import _compat_pickle
import contextlib
import json
import pickletools
from pathlib import Path
from typing import Any

from dnr_sweep.foundation.errors import InputFileError
from dnr_sweep.sweep.outcome import SweepError

TUNER_FILE = "tuner.pkl"  # Ray Tune's (Tuner.restore reads it)
EXPERIMENT_STATE_GLOB = "experiment_state-*.json"  # Ray Tune's; the newest one is restored

#: modules a pickle of Tune's state never refers to, but an attack would (the check is a screen:
#: Tune's state is cloudpickle, and `resume` trusts the folder, as the README says)
_HOSTILE_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pty", "code",
    "codeop", "ctypes", "webbrowser", "marshal", "pickle", "_pickle", "multiprocessing", "asyncio", "signal",
})  # fmt: skip
_HOSTILE_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "open", "breakpoint", "input"})


_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                         "STRING"})  # fmt: skip


def _pickle_problem(data: bytes) -> str | None:
    """Why ``data`` is not a plausible Tune pickle (empty, truncated, garbage, or importing from a
    module an attack would use), or ``None``. Reads the opcodes only; nothing is unpickled.

    ``STACK_GLOBAL`` takes its module and name from the two values pushed before it; they are
    tracked through the memo (``MEMOIZE``/``BINPUT``, ``BINGET``), as cloudpickle reuses them.
    """
    if not data:
        return "is empty"
    if data[:1] != b"\x80":  # PROTO: every pickle protocol >= 2 (Tune writes 5) starts with it
        return "is not a pickle (no protocol header)"
    memo: dict[int, object] = {}
    pushed: list[object] = []  # the values the opcodes pushed, strings where known, else None
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            module = qualname = None
            if name in _STRING_OPS:
                pushed.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = pushed[-1] if pushed else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                pushed.append(memo.get(int(arg)))
            elif name == "STACK_GLOBAL":
                if len(pushed) >= 2 and isinstance(pushed[-2], str) and isinstance(pushed[-1], str):
                    module, qualname = pushed[-2], pushed[-1]
                pushed.append(None)
            elif name in ("GLOBAL", "INST"):
                module, _, qualname = str(arg).partition(" ")
                pushed.append(None)
            else:
                pushed.append(None)
            if module is not None:
                module = _compat_pickle.IMPORT_MAPPING.get(module, module)  # protocol 2 spells Python 2 names
                root = module.split(".")[0]
                if root in _HOSTILE_MODULES or (root == "builtins" and qualname in _HOSTILE_BUILTINS):
                    return f"imports {module}.{qualname}, which Tune's state never does (a hostile file?)"
    except (ValueError, IndexError, RecursionError) as exc:
        return f"is not a complete pickle ({type(exc).__name__}: {exc})"
    return None


def check_restorable(run_dir: Path) -> None:
    """Before Ray starts: the run folder holds Tune state ``Tuner.restore`` can read.

    Checks that ``tuner.pkl`` is a complete pickle that names no module an attack would use (its
    opcodes are read, nothing is unpickled) and that the newest ``experiment_state-*.json`` is JSON
    with Tune's keys. ``Tuner.restore`` itself unpickles both: resume only folders you created.
    """
    tuner = run_dir / TUNER_FILE
    states = sorted(run_dir.glob(EXPERIMENT_STATE_GLOB))
    if not tuner.is_file() or not states:
        missing = TUNER_FILE if not tuner.is_file() else EXPERIMENT_STATE_GLOB
        raise SweepError(
            f"{run_dir}: no Ray Tune experiment to resume (no {missing}): the sweep stopped before Tune saved "
            f"its state, or this is not a sweep's run folder (a `dnr-sweep train` folder continues with "
            f"`dnr-sweep train CONFIG --out DIR --resume`). Start the sweep again into a new --name"
        )
    fix = ("Restore the run folder from a backup, or start the sweep again into a new --name (finished trials' "
           "results stay readable with `dnr-sweep report`)")  # fmt: skip
    try:
        problem = _pickle_problem(tuner.read_bytes())
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    if problem:
        raise InputFileError(tuner, problem, expected="Ray Tune's saved Tuner (a pickle Tune wrote)", fix=fix)
    newest = states[-1]
    try:
        state = json.loads(newest.read_bytes().decode("utf-8"))
        ok = isinstance(state, dict) and {"runner_data", "trial_data"} <= set(state)
        problem = _embedded_pickle_problem(state) if ok else "is JSON without Tune's runner_data and trial_data"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        problem = "is not readable JSON (corrupt or truncated)"
    if problem:
        raise InputFileError(newest, problem, expected="Ray Tune's experiment state (JSON Tune wrote)", fix=fix)


_CLOUDPICKLE_IN_JSON = "CLOUDPICKLE_FALLBACK"  # Tune's marker of a pickle embedded (as hex) in its JSON state


def _embedded_pickle_problem(state: Any) -> str | None:
    """Screen the pickles Tune embeds in its JSON state (also inside JSON-encoded strings) like tuner.pkl."""
    stack = [state]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("_type") == _CLOUDPICKLE_IN_JSON:
                try:
                    problem = _pickle_problem(bytes.fromhex(str(node.get("value"))))
                except ValueError:
                    problem = "is not hex"
                if problem:
                    return f"holds an embedded pickle that {problem}"
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node[:1] in ("{", "["):  # Tune stores each trial as a JSON string
            with contextlib.suppress(json.JSONDecodeError):
                stack.append(json.loads(node))
    return None
