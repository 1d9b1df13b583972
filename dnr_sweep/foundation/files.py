"""Writing result files safely, and checking the folders users name before anything is written.

- :func:`atomic_write`: a temporary file beside the target, flushed to disk, given the mode a plain
  ``open()`` would have given it (``0666`` minus the process umask: group-readable on shared
  storage under the usual ``umask 022``/``002``; ``mkstemp`` alone would leave ``0600``), then
  renamed over the target. A crash leaves the old file or the new one, never a truncated one.
- :func:`output_folder`: ``--out``/``--storage``-style arguments refused early (empty, a file where
  a folder is expected, inside a file, unwritable) with a message naming the flag and the fix.

Standard library only: :mod:`reports` writes its Parquet tables through it too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dnr_sweep.foundation.errors import PathError
from dnr_sweep.foundation.os_errors import is_outside_world, storage_error


def process_umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``; elsewhere set-and-restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it over ``path``.

    The file gets mode ``0666 & ~umask`` (what ``open(path, "w")`` would give), is fsynced before
    the rename, and the temporary file is removed when ``write`` fails. A full disk (or quota, read-only
    mount, I/O error) raises :class:`~dnr_sweep.foundation.errors.StorageError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~process_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_outside_world(exc):  # disk full, quota, read-only, I/O error: the file named, not its temporary
            raise storage_error(exc, path, doing="write") from None
        raise
    return path


def atomic_write_handle(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """:func:`atomic_write` for writers that take an open binary file (``torch.save``, text encoders)."""

    def to_path(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            write(handle)

    return atomic_write(path, to_path)


def keep_earlier(path: str | os.PathLike[str]) -> Path | None:
    """Before ``path`` is replaced: keep its current file as ``<stem>.earlier-<n><suffix>`` (the next free ``n``)
    and return that name, or ``None`` when there is no file. A hard link, so ``path`` itself stays in place
    until the atomic replace: no moment without it."""
    path = Path(path)
    if not path.is_file():
        return None
    for n in range(1, 100_000):
        aside = path.with_name(f"{path.stem}.earlier-{n}{path.suffix}")
        try:
            os.link(path, aside)
        except FileExistsError:
            continue
        except OSError:  # a filesystem without hard links: a copy does as well
            import shutil

            if aside.exists():
                continue
            shutil.copy2(path, aside)
        return aside
    raise PathError(f"{path}: 100,000 earlier copies beside it already; move some away")


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def output_folder(text: str | os.PathLike[str], flag: str) -> Path:
    """The folder named by ``flag`` (e.g. ``--out``), absolute, checked before any work starts.

    Refuses: an empty or blank value, a NUL byte, the filesystem root, an existing file, a path
    under a file, and a folder (or its nearest existing parent) this process cannot write into.
    The folder is not created here.
    """
    raw = os.fspath(text)
    if not raw.strip():
        raise PathError(f"{flag} {raw!r}: an empty path; name a folder, e.g. {flag} runs/my_run")
    if "\0" in raw:
        raise PathError(f"{flag} {raw!r}: a path cannot contain a NUL byte; name a plain folder")
    path = Path(raw).expanduser().absolute()
    if path == Path(path.anchor):
        raise PathError(f"{flag} {raw}: the filesystem root is not a folder for results; name a sub-folder")
    try:
        existing = _nearest_existing(path)
        is_dir = existing.is_dir()
    except OSError as exc:  # a name too long, a folder on the way this process may not enter
        raise PathError(f"{flag} {raw}: cannot be used ({exc.strerror}); name another folder") from None
    if existing == path and not is_dir:
        raise PathError(f"{flag} {raw}: {path} is a file, not a folder; name a folder (new or empty)")
    if existing != path and not is_dir:
        raise PathError(f"{flag} {raw}: {existing} is a file, so {path} cannot be created; name another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(
            f"{flag} {raw}: cannot write into {existing} (permission denied); name a folder you can write to"
        )
    return path


def make_folder(path: str | os.PathLike[str], flag: str) -> Path:
    """Create the output folder ``path`` (and its parents) named by ``flag``; what the filesystem
    refuses (a mount that takes no new folders, permission, a full disk) is one :class:`PathError`
    (or :class:`StorageError`) naming the flag, never a traceback. :func:`output_folder` checks a path
    before work starts; this is the moment the folder is made, where only trying tells."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_outside_world(exc):
            raise storage_error(exc, folder, doing="create") from None
        raise PathError(f"{flag} {folder}: cannot create the folder ({exc.strerror}); name a folder you can "
                        "write to") from None  # fmt: skip
    return folder


def output_file(text: str | os.PathLike[str], flag: str) -> Path:
    """A file argument that will be written (e.g. ``export --out FILE``): not empty, not a folder,
    its folder creatable and writable."""
    raw = os.fspath(text)
    if not raw.strip() or "\0" in raw:
        raise PathError(f"{flag} {raw!r}: name a file, e.g. {flag} exports/model.pt2")
    path = Path(raw).expanduser().absolute()
    if os.path.isdir(path):  # never raises, unlike Path.is_dir on a name too long
        raise PathError(f"{flag} {raw}: {path} is a folder; name a file inside it, e.g. {path / 'model.pt2'}")
    output_folder(path.parent, flag)
    return path
