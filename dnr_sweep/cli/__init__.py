"""``dnr-sweep``: the command line, one module per command, and the one place that ties core,
trainables and reports together.

Each command module has ``register(subparsers)`` (its flags) and ``run(args) -> exit code``. Heavy
modules (torch, Ray, matplotlib) are imported inside ``run``, so ``dnr-sweep --help`` and
``dnr-sweep validate`` answer at once. A :class:`~dnr_sweep.errors.UserError` (bad config, missing
or unreadable file, bad flag) prints its message without a traceback and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dnr_sweep.cli import evaluate, export, report, resume, run, status, submit, train, validate
from dnr_sweep.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError

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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "EXIT_USAGE", "UserError", "build_parser", "main"]
