"""Failures a user can cause, as one typed hierarchy: the CLI prints them and exits with code 2.

Raise a :class:`UserError` (or a subclass) at the boundary where bad input is detected, with a
message that names what is wrong (the file, field, flag or address) and how to fix it. The command
line turns exactly these into one message on stderr and exit code 2 (:func:`dnr_sweep.cli.main`);
anything else is a bug in dnr-sweep and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Something the user can fix; printed without a traceback, exit code 2."""


class ConfigError(UserError, ValueError):
    """A configuration error: one or more ``file: field: message`` lines."""

    def __init__(self, messages: Iterable[str] | str):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))
