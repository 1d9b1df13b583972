"""What the machine must give a command before it starts: a working directory, HOME and TMPDIR that are
usable folders, a filesystem encoding that can carry the arguments.

:func:`check` runs first in :func:`dnr_sweep.cli.main`, before a command imports torch or Ray or reads a
file, and checks only what that command needs (:data:`HOME_READERS` ...); a broken piece is one
:class:`~dnr_sweep.foundation.errors.SetupError` naming it and the fix (exit 2), instead of a traceback from
deep inside torch (which cannot load from a deleted folder) or Ray:

- the working directory: every command (relative paths; torch and Ray resolve it as they load);
- ``HOME`` (when set): no file for the commands that expand ``~`` (``data.root``'s default
  ``~/.cache/dnr-sweep/data``, ``--storage ~/...``, Ray's ``~/.ray/auth_token``), an existing writable
  folder for those that may write there (a data set is fetched into ``data.root``);
- ``TMPDIR`` (and ``RAY_TMPDIR`` for Ray), when set: an existing writable folder for the commands that
  write temporary files (Python's tempfile would fall back to /tmp, not where the user asked) or start
  Ray (its session folder is ``$TMPDIR/ray``; Ray does not fall back);
- the filesystem encoding: UTF-8, or nothing but ASCII in the arguments, the working directory, HOME and
  TMPDIR. Python 3.11 switches to UTF-8 by itself under ``LC_ALL=C``; ``PYTHONUTF8=0`` with it, or a
  Latin-1 locale, would store a non-ASCII path in the run's UTF-8 files (and hand it to Ray) as another name.
"""

from __future__ import annotations

import argparse
import codecs
import os
import sys
from collections.abc import Sequence

from dnr_sweep.foundation.errors import SetupError

#: commands that expand ``~`` (data.root, --storage, the Ray token file)
HOME_READERS = frozenset({"train", "run", "resume", "submit", "evaluate", "data"})
#: commands that may write under ``~`` (a data set fetched into data.root's default)
HOME_WRITERS = frozenset({"train", "run", "resume", "data fetch"})
#: commands that write temporary files (submit's job folder, staged remote run folders, Ray's session)
TMP_USERS = frozenset({"train", "run", "resume", "submit", "evaluate", "export", "report"})
#: commands that start Ray, whose session folder goes to $RAY_TMPDIR, else $TMPDIR, else /tmp
RAY_STARTERS = frozenset({"run", "resume"})


def _writable(folder: str) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _shown(text: str) -> str:
    """A name as the user typed it, in ASCII whatever the terminal's encoding."""
    return ascii(os.fsencode(text).decode("utf-8", errors="replace"))[1:-1]


def _working_directory() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise SetupError("the working directory no longer exists (deleted or moved after the shell entered it); "
                         "`cd` to an existing folder and run the command again") from None  # fmt: skip
    except PermissionError:
        raise SetupError("the working directory cannot be read (no permission on it or a folder above it); "
                         "`cd` to a folder you can read and run the command again") from None  # fmt: skip


def _home(command: str) -> None:
    home = os.environ.get("HOME")
    if not home:
        return  # unset: `~` comes from the password database
    uses = "`~` (data.root's default ~/.cache/dnr-sweep/data, ~/.ray/auth_token, --storage ~/...)"
    fix = "export HOME=<your home folder> (or another folder you can write) and run the command again"
    if os.path.exists(home) and not os.path.isdir(home):
        raise SetupError(f"HOME={home} is a file, not a folder, and {command} resolves {uses} under it; {fix}")
    if command in HOME_WRITERS and not os.path.isdir(home):
        raise SetupError(f"HOME={home} does not exist, and {command} may write under it (data.root's default "
                         f"~/.cache/dnr-sweep/data); {fix}")  # fmt: skip
    if command in HOME_WRITERS and not _writable(home):
        raise SetupError(f"HOME={home} is not writable by this user, and {command} may write under it (data.root's "
                         f"default ~/.cache/dnr-sweep/data); {fix}, or give data.root (--root, --set data.root=...) "
                         "and --storage outside it")  # fmt: skip


def _temporary(command: str) -> None:
    names = ["RAY_TMPDIR", "TMPDIR"] if command in RAY_STARTERS else ["TMPDIR"]
    for name in names:
        folder = os.environ.get(name)
        if not folder:
            continue
        what = "Ray's session folder and temporary files go there" if command in RAY_STARTERS else (
            "its temporary files go there (Python would fall back to /tmp instead)")  # fmt: skip
        fix = f"create it (mkdir -p {folder}), point {name} at an existing writable folder, or unset {name}"
        if not os.path.isdir(folder):
            problem = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
            raise SetupError(f"{name}={folder} {problem}; {command}: {what}. Fix: {fix}")
        if not _writable(folder):
            raise SetupError(f"{name}={folder} is not writable by this user; {command}: {what}. Fix: {fix}")


def _encoding(argv: Sequence[str], cwd: str) -> None:
    encoding = sys.getfilesystemencoding()
    if codecs.lookup(encoding).name == "utf-8":
        return
    named = [("the argument", a) for a in argv] + [("the working directory", cwd)]
    named += [(f"{k}=", os.environ[k]) for k in ("HOME", "TMPDIR") if os.environ.get(k)]
    for what, text in named:
        if not text.isascii():
            locale = next((f"{k}={os.environ[k]}" for k in ("LC_ALL", "LC_CTYPE", "LANG") if os.environ.get(k)),
                          "no LC_ALL, LC_CTYPE or LANG")  # fmt: skip
            utf8 = f", PYTHONUTF8={os.environ['PYTHONUTF8']}" if "PYTHONUTF8" in os.environ else ""
            raise SetupError(f"{what}{' ' if not what.endswith('=') else ''}{_shown(text)} is not ASCII, and this "
                             f"Python's filesystem encoding is {encoding} ({locale}{utf8}): the name would be stored "
                             "in the run's UTF-8 files, and handed to Ray, as another name. Run with a UTF-8 locale "
                             "(LC_ALL=C.UTF-8) or PYTHONUTF8=1")  # fmt: skip


def check(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Refuse to start ``args.command`` on a machine setup it cannot run with (:class:`SetupError`)."""
    command = args.command
    cwd = _working_directory()
    _encoding(argv, cwd)
    full = f"{command} {args.verb}" if command == "data" else command
    if command in HOME_READERS:
        _home(full)
    if command in TMP_USERS:
        _temporary(command)
