"""One writer per folder: ``train --out``, ``run``, ``resume`` and ``evaluate`` hold a lock on theirs.

The lock is ``fcntl.flock`` on :data:`~dnr_sweep.foundation.run_contract.LOCK_FILE` inside the folder. The
file records the holder (host, pid, command, start time) so a refused second writer can say who
holds it. A ``flock`` belongs to the open file: the kernel releases it when the holder exits, even
by ``SIGKILL``, so a dead holder's lock never blocks (its stale record is simply overwritten). The
file is never deleted (deleting a lock file others may have open would let two holders in); on
release it is emptied. On NFS, Linux maps ``flock`` to NFS byte-range locks, so the lock also holds
between machines sharing the storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import FolderBusyError, PathError


def _holder() -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": " ".join(["dnr-sweep", *sys.argv[1:]]) if sys.argv else "dnr-sweep",
        "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def _describe(record: bytes) -> str:
    from dnr_sweep.foundation.reader import parse_lenient
    from dnr_sweep.foundation.schemas import LockRecord

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
    path = folder / rc.LOCK_FILE
    created = not folder.exists()
    lock_created = created or not path.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise PathError(f"{folder}: cannot create the folder or its lock file {rc.LOCK_FILE} ({exc.strerror}); "
                        "choose a folder you can write to") from None  # fmt: skip
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            raise FolderBusyError(
                f"{folder} is in use: {holder} is writing into it. Wait for it to finish (or stop it), "
                f"or {purpose} into another folder; the lock frees itself when that process exits"
            ) from None
        record = json.dumps(_holder()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
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


def _remove_own_traces(folder: Path, *, created: bool, lock_created: bool) -> None:
    """After a failure: a folder this lock created and nothing else wrote into is removed, and a lock
    file it added to someone's folder goes again (both while still locked), so a command refused
    after taking the lock leaves nothing behind."""
    with contextlib.suppress(OSError):  # best effort: the failure being raised matters more
        if created and [p.name for p in folder.iterdir()] == [rc.LOCK_FILE]:
            (folder / rc.LOCK_FILE).unlink()
            folder.rmdir()
        elif lock_created:
            (folder / rc.LOCK_FILE).unlink()
