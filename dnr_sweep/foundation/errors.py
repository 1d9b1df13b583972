"""Failures a user can cause, as one typed hierarchy: the CLI prints them and exits with code 2.

Raise a :class:`UserError` (or a subclass) where bad input is detected, with a message naming what is
wrong (file, field, flag or address) and how to fix it; :func:`dnr_sweep.cli.main` turns exactly these
into one line on stderr and exit code 2, and anything else keeps its traceback. The subclasses say what
kind of input was wrong: :class:`ConfigError` (a config value, or what the dry preparation finds cannot
run), :class:`InputFileError` (a file read), :class:`PathError` (a path argument), :class:`ExportError`
(a model that cannot be shrunk or exported as asked), :class:`FolderBusyError` (a held lock),
:class:`ClusterError`, :class:`DatasetNotFoundError`, :class:`NetworkError` (a peer that cannot be
reached or misbehaves), :class:`SetupError` (the machine's setup) and :class:`StorageError` (the
filesystem refused: :mod:`dnr_sweep.foundation.os_errors`). Standard library only.
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


class InputFileError(UserError):
    """A file the tool reads cannot be used: ``<file>: <problem>; <what it should be>. <fix>``.

    The message never quotes a loader's own advice (torch suggests disabling ``weights_only``);
    ``problem`` is written by dnr-sweep.
    """

    def __init__(self, path: object, problem: str, *, expected: str, fix: str):
        self.path = path  # a Path, or a dnr_sweep.foundation.storage.Location on remote storage
        super().__init__(f"{path}: {problem}; expected {expected}. {fix}")


class PathError(UserError):
    """A path argument (``--out``, ``--storage``, a run folder) that cannot be used as given."""


class ExportError(UserError, ValueError):
    """A model cannot be exported as asked (a bad input size, a model torch.fx or torch.export cannot take);
    the message names the flag or the model and the fix."""


class FolderBusyError(UserError):
    """Another process holds the folder's lock (it is training or sweeping into it)."""


class ClusterError(UserError):
    """The Ray cluster cannot be reached, or no node of it can host one trial."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A data set's files are missing under ``data.root`` (and cannot be fetched); the message names
    the data set, where it looked, what it tried and the ways out."""


class NetworkError(UserError):
    """A network peer failed the exchange: unreachable, past its deadline, an answer malformed, too large or
    not of the kind asked for; the message names the (redacted) URL and what it did."""


class SetupError(UserError):
    """The machine's setup cannot run the command (working directory, HOME, TMPDIR, locale); the message
    names the variable or folder and the fix."""


class StorageError(UserError, OSError):
    """The filesystem refused a read or write the input did not cause (disk full, quota, read-only, I/O
    error, a symbolic-link loop); the message names the file and what to do."""


class ConfigWarning(UserWarning):
    """A config value that runs but likely not as meant (e.g. learning-rate milestones past the last
    epoch, which never fire); the command goes on, and the CLI prints it as ``warning: ...``."""


class DataRecoveryWarning(UserWarning):
    """Something unreadable was skipped or rebuilt (a truncated ``result.json`` line, a corrupt
    ``results.parquet``); the command goes on, and the CLI prints it as ``warning: ...``."""
