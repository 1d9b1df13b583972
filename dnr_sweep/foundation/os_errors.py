"""The outside world failing: the filesystem's refusals as one message each, never a traceback.

A full disk, an exhausted quota, a read-only mount, an I/O error or a symbolic-link loop is no bug of
dnr-sweep and no bad input either, but the user can fix it; so it gets the user-error path
(:class:`~dnr_sweep.foundation.errors.StorageError`: one message, exit code 2). Three places use this module:

- :mod:`dnr_sweep.foundation.files` (every file and folder is written through it) turns such an
  ``OSError`` into a :class:`StorageError` naming the file it was writing;
- :func:`dnr_sweep.cli.main` does the same for one raised anywhere else (a library's own write, a read);
- :func:`refuse_symlink_loops` checks every path argument of a command before it runs (``pathlib``'s
  ``resolve()`` reports a loop as a ``RuntimeError``, ``is_dir()`` as "missing": both would mislead).

Other ``OSError`` numbers (a missing file, a wrong kind of path) are each command's own, with its own message.
Standard library only.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from dnr_sweep.foundation.errors import StorageError

#: errno -> (what happened, how to fix it), for the refusals that are the machine's, not the input's
OUTSIDE_WORLD: Final[Mapping[int, tuple[str, str]]] = MappingProxyType({
    errno.ENOSPC: ("no space left on the device", "free space on that filesystem (or write somewhere else) "
                   "and run the command again"),
    errno.EDQUOT: ("the disk quota is exhausted", "free space within your quota (or write somewhere else) "
                   "and run the command again"),
    errno.EROFS: ("the filesystem is read-only", "write to a folder on a writable filesystem"),
    errno.EIO: ("an input/output error (the disk or the network storage failed)",
                "check the storage (dmesg, the mount) and run the command again"),
    errno.ELOOP: ("a symbolic-link loop (links that lead back to each other, so no file is reached)",
                  "fix or remove the link and pass a real path"),
})  # fmt: skip

#: the text pathlib (Python 3.11) gives the RuntimeError it raises for a loop in ``Path.resolve()``
PATHLIB_LOOP_PREFIX: Final = "Symlink loop from "


def _refusal_inside(exc: BaseException) -> OSError | None:
    """The :data:`OUTSIDE_WORLD` ``OSError`` that ``exc`` is, or that a ``RuntimeError`` was raised while
    handling: ``torch.save`` into a file on a full disk raises its own ``RuntimeError`` ("unexpected pos
    ...") with the file's ``OSError`` as its context."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return exc if exc.errno in OUTSIDE_WORLD else None
        if not isinstance(exc, RuntimeError):
            return None
        exc = exc.__cause__ or exc.__context__
    return None


def is_outside_world(exc: BaseException) -> bool:
    """An ``OSError`` whose errno is one of :data:`OUTSIDE_WORLD` (also as the context of a ``RuntimeError``,
    as torch's writer raises it), or pathlib's symlink-loop ``RuntimeError``."""
    if isinstance(exc, StorageError):
        return True
    if isinstance(exc, RuntimeError) and str(exc).startswith(PATHLIB_LOOP_PREFIX):
        return True
    return _refusal_inside(exc) is not None


def storage_error(exc: BaseException, path: object = None, *, doing: str = "use") -> StorageError:
    """The :class:`StorageError` for ``exc`` (see :func:`is_outside_world`): ``<file>: cannot <doing> it: <what>;
    <fix>``. ``path`` names the file when the error does not (a temporary file's name means nothing to a user)."""
    if isinstance(exc, StorageError):
        return exc
    refusal = _refusal_inside(exc)
    if refusal is not None:
        code = refusal.errno
        name = path if path is not None else (refusal.filename or "a file this command writes")
    else:  # pathlib's RuntimeError("Symlink loop from '...'")
        code = errno.ELOOP
        name = path if path is not None else str(exc)[len(PATHLIB_LOOP_PREFIX) :].strip("'\"")
    what, fix = OUTSIDE_WORLD[code]
    error = StorageError(f"{name}: cannot {doing} it: {what} ({errno.errorcode.get(code, code)}); {fix}")
    error.errno = code
    return error


def symlink_loop(value: str) -> bool:
    """Whether ``value``, taken as a path, runs into a symbolic-link loop (itself or a folder above it)."""
    try:
        os.stat(value)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    except ValueError:  # a NUL byte: not a path at all; the command's own check says so
        return False
    return False


def refuse_symlink_loops(arguments: Mapping[str, object]) -> None:
    """Refuse a command whose path arguments (any string, or list of strings, among ``arguments``: argparse's
    namespace as a dict) run into a symbolic-link loop, naming the path. A string that is no path (a number,
    an attack list) cannot be one, so every string is checked.

    Raises:
        StorageError: one argument is such a path.
    """
    for value in arguments.values():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and text and symlink_loop(text):
                what, fix = OUTSIDE_WORLD[errno.ELOOP]
                error = StorageError(f"{text}: {what}; {fix}")
                error.errno = errno.ELOOP
                raise error
