"""One writer per folder: ``train --out``, ``run``, ``resume`` and ``evaluate`` hold a lock on theirs.

The lock is ``fcntl.flock`` on :data:`~dnr_sweep.foundation.run_contract.LOCK_FILE` inside the folder. The
file records the holder (host, pid, command, start time) so a refused second writer can say who
holds it. A ``flock`` belongs to the open file: the kernel releases it when the holder exits, even
by ``SIGKILL``, so a dead holder's lock never blocks (its stale record is simply overwritten). The
file is never deleted (deleting a lock file others may have open would let two holders in); on
release it is emptied. On NFS, Linux maps ``flock`` to NFS byte-range locks, so the lock also holds
between machines sharing the storage. The lock file is opened by the writer
(:func:`dnr_sweep.foundation.files.open_lock`): never through a link, and only a plain file of its own,
since the record is written into it. :func:`hold_file` is the same lock on a named file, waiting for
the holder (a data set being fetched).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dnr_sweep.foundation import files, os_errors
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import FolderBusyError, PathError
from dnr_sweep.foundation.reader import parse_lenient
from dnr_sweep.foundation.schemas import LockRecord


def _holder() -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": " ".join(["dnr-sweep", *sys.argv[1:]]) if sys.argv else "dnr-sweep",
        "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def _describe(record: bytes) -> str:
    info, _ = parse_lenient(record, LockRecord, source=rc.LOCK_FILE, unusable="", prune=False)
    if info is None:
        return "another process (it left no readable record)"
    return f"pid {info.pid} on {info.host} since {info.since} (`{info.command}`)"


@contextlib.contextmanager
def hold(folder: str | os.PathLike[str], *, purpose: str) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (creating the folder); refuse if it is held.

    Raises:
        FolderBusyError: another process holds it; the message names the holder and the fix.
        PathError: the folder cannot be created or its lock file cannot be opened.
    """
    folder = Path(folder)
    created = not folder.exists()
    fd, lock_created = _open(folder / rc.LOCK_FILE, folder)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(
                f"{folder} is in use: {_describe(os.pread(fd, 4096, 0))} is writing into it. Wait for it to finish "
                f"(or stop it), or {purpose} into another folder; the lock frees itself when that process exits"
            ) from None
        _record(fd)
        try:
            yield folder
        except BaseException:
            _remove_own_traces(folder, created=created, lock_created=lock_created)
            raise
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold_file(path: str | os.PathLike[str], *, waiting: Callable[[str], None]) -> Iterator[Path]:
    """Hold the lock file ``path`` for the ``with`` block; when another process holds it, call
    ``waiting(holder)`` once and wait for it (the lock file stays, emptied, after the block)."""
    path = Path(path)
    fd, _ = _open(path, path.parent)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(_describe(os.pread(fd, 4096, 0)))
            fcntl.flock(fd, fcntl.LOCK_EX)
        _record(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open(path: Path, folder: Path) -> tuple[int, bool]:
    """The lock file's descriptor (the folder made if missing) and whether it was created now."""
    try:
        files.make_folder(folder)
        return files.open_lock(path)
    except OSError as exc:  # a link or a foreign lock file is a PathError from the writer already
        if os_errors.is_outside_world(exc):
            raise os_errors.storage_error(exc, path, doing="create") from None
        raise PathError(f"{folder}: cannot create the folder or its lock file {path.name} ({exc.strerror}); "
                        "choose a folder you can write to") from None  # fmt: skip


def _record(fd: int) -> None:
    """Who holds the lock, written into the lock file."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_holder()).encode(), 0)


def _remove_own_traces(folder: Path, *, created: bool, lock_created: bool) -> None:
    """After a failure: a folder this lock created and nothing else wrote into is removed, and a lock
    file it added to someone's folder goes again (both while still locked), so a command refused
    after taking the lock leaves nothing behind."""
    with contextlib.suppress(OSError, PathError):  # best effort: the failure being raised matters more
        if created and [p.name for p in folder.iterdir()] == [rc.LOCK_FILE]:
            files.remove(folder)
        elif lock_created:
            files.remove(folder / rc.LOCK_FILE)
