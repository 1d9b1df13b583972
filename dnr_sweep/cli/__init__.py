"""``dnr-sweep``: the command line, one module per command, and the one place that ties core,
trainables and reports together.

Each command module has ``register(subparsers)`` (its flags) and ``run(args) -> exit code``. Heavy
modules (torch, Ray, matplotlib) are imported inside ``run``, so ``dnr-sweep --help`` and
``dnr-sweep validate`` answer at once.

:func:`main` first checks what the machine gives the command (the working directory, HOME, TMPDIR, a
filesystem encoding for its arguments: :mod:`dnr_sweep.cli._environment`), and is the one place where
expected failures become messages: a
:class:`~dnr_sweep.foundation.errors.UserError` (bad config or flag, a file that cannot be loaded, a path that
cannot be used, a busy folder, an unreachable cluster; raised where the input is read) prints its
message without a traceback and exits with code 2; so does the filesystem's refusal (disk full, quota,
read-only, I/O error, a symbolic-link loop in a path argument: :mod:`dnr_sweep.foundation.os_errors`).
Anything else is a bug and keeps its traceback.
A :class:`~dnr_sweep.foundation.errors.DataRecoveryWarning` (a skipped truncated line, a rebuilt table) or
:class:`~dnr_sweep.foundation.errors.ConfigWarning` (a value that runs, likely not as meant) prints as one
``warning:`` line.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from dnr_sweep.cli import _environment, data, evaluate, export, report, resume, run, status, submit, train, validate
from dnr_sweep.foundation import os_errors
from dnr_sweep.foundation.errors import EXIT_INTERRUPTED, EXIT_USAGE, ConfigWarning, DataRecoveryWarning, UserError

#: command name -> module, in the order `dnr-sweep --help` lists them
COMMANDS = {
    "validate": validate,
    "train": train,
    "run": run,
    "resume": resume,
    "submit": submit,
    "status": status,
    "report": report,
    "evaluate": evaluate,
    "export": export,
    "data": data,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnr-sweep",
        description="Dynamic Network Rewiring (robust one-shot pruning) sweeps on Ray Tune.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.register(sub)
    return parser


def _show_recovery(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warnings.showwarning`` for :class:`DataRecoveryWarning`: one ``warning:`` line, once per text."""
    if issubclass(category, (DataRecoveryWarning, ConfigWarning)):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _DEFAULT_SHOWWARNING(message, category, filename, lineno, file, line)


_DEFAULT_SHOWWARNING = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default", DataRecoveryWarning)  # each distinct message once
        warnings.simplefilter("default", ConfigWarning)
        warnings.showwarning = _show_recovery
        try:
            _environment.check(args, list(argv) if argv is not None else sys.argv[1:])
            os_errors.refuse_symlink_loops(vars(args))
            return COMMANDS[args.command].run(args)
        except UserError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        except (OSError, RuntimeError) as exc:  # the machine's refusal (disk full, a link loop): not a bug
            if not os_errors.is_outside_world(exc):
                raise
            print(os_errors.storage_error(exc), file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "EXIT_USAGE", "UserError", "build_parser", "main"]
