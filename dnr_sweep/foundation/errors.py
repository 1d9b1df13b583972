"""Failures a user can cause, as one typed hierarchy: the CLI prints them and exits with code 2.

Raise a :class:`UserError` (or a subclass) at the boundary where bad input is detected, with a
message that names what is wrong (the file, field, flag or address) and how to fix it. The command
line turns exactly these into one message on stderr and exit code 2 (:func:`dnr_sweep.cli.main`);
anything else is a bug in dnr-sweep and keeps its traceback. The classes say *what kind* of input
was wrong, so callers and tests can tell them apart:

- :class:`ConfigError`: a config value or combination (YAML, ``--set``), including what the dry
  preparation (:mod:`dnr_sweep.training.dry_run`) finds cannot run;
- :class:`InputFileError`: a file the tool reads (checkpoint, model, JSON, Parquet, Tune state) is
  missing, unreadable, corrupt or of the wrong kind;
- :class:`PathError`: a path argument that cannot be used (empty, a file where a folder is expected,
  unwritable, already holding a run);
- :class:`ExportError`: a trained model cannot be shrunk or exported as asked (input size, tracing);
- :class:`FolderBusyError`: another dnr-sweep process writes into the folder (its lock is held);
- :class:`ClusterError`: the Ray cluster cannot be reached or cannot host a trial;
- :class:`DatasetNotFoundError`: a data set is not under ``data.root`` and cannot be fetched;
- :class:`NetworkError`: a network peer (a data mirror, the Ray job API) cannot be reached, is too slow, or
  answers what it should not (:mod:`dnr_sweep.foundation.http`);
- :class:`SetupError`: the machine's setup cannot run the command (a deleted working directory, a HOME or
  TMPDIR that is no usable folder, a locale that cannot carry the paths given);
- :class:`StorageError`: the filesystem refused a read or write (disk full, quota, read-only, I/O error,
  a symbolic-link loop): :mod:`dnr_sweep.foundation.os_errors`.

Standard library only: the reports import it too.
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
