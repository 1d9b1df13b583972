"""The one writer: every file and folder dnr-sweep creates, replaces, moves or removes goes through here.

A folder handed to dnr-sweep (someone else's run or model folder, a shared data folder) may hold symbolic
links planted at the very names dnr-sweep writes. So the writer trusts no folder it writes into:

- **No link is followed.** A path is walked from ``/`` one folder at a time (``O_NOFOLLOW`` directory
  descriptors, ``*at`` calls), so a link at the target or at any folder on the way is refused with a
  :class:`~dnr_sweep.foundation.errors.PathError` naming it, also one swapped in after a check. Folders a
  user names are resolved once, where they are named (:func:`output_folder`, :func:`output_file`,
  :func:`named_folder`): the links in a path the user typed are the user's; below it every name is dnr-sweep's.
  Only the links on the way to the temporary, home and Ray folders (the machine's setup) are followed.
- **Atomic, with names only it owns.** A file is written to ``.NAME.<random>.tmp`` beside the target
  (created ``O_EXCL``), fsynced, given the mode ``open()`` gives (``0666`` minus the umask) and renamed
  over the target; on failure that temporary file, and only it, is removed.
- **Replacing is the caller's decision:** ``replace=False`` creates a file that must not exist (a hard
  link from the temporary name, so even a race cannot clobber). What a command may replace (``--force``)
  is decided by the command before it starts; the writer never writes *through* anything.

A full disk (quota, read-only mount, I/O error) is a :class:`~dnr_sweep.foundation.errors.StorageError`
naming the file. Standard library only: the reports and the run contract's readers use it too.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from dnr_sweep.foundation.errors import PathError, StorageError
from dnr_sweep.foundation.os_errors import is_outside_world, storage_error

#: how a folder on the way is opened: never through a link, without needing read permission (O_PATH)
_DIR_FLAGS = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_PATH", os.O_RDONLY)
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Where = str | os.PathLike[str]


# ------------------------------------------------------------------------------------------------
# Walking a path without following links


def link_refused(link: Path, shown: Path | None = None) -> PathError:
    """The one message for a symbolic link where dnr-sweep writes (``shown``: the path being written)."""
    try:
        target = f" -> {os.readlink(link)}"
    except OSError:
        target = ""
    where = f"{shown}: " if shown is not None and shown != link else ""
    return PathError(f"{where}{link} is a symbolic link{target}; dnr-sweep never writes through or over a link in a "
                     "folder it writes into (it could point at any file you can write). Remove the link, or name "
                     "the real folder instead")  # fmt: skip


@functools.cache
def _machine_links() -> frozenset[str]:
    """Links on the way to the temporary, home and Ray folders (macOS ``/tmp -> /private/tmp``, a cluster's
    ``/scratch -> /lustre/scratch``): the machine's setup, never a folder's content, so they are followed."""
    found = set()
    for start in (tempfile.gettempdir(), "/tmp", os.path.expanduser("~"), os.environ.get("RAY_TMPDIR", "")):
        if start:
            path = Path(os.path.abspath(start))
            found.update(str(p) for p in (path, *path.parents) if p.is_symlink())
    return frozenset(found)


def _absolute(path: Where) -> Path:
    raw = os.fspath(path)
    if not raw or "\0" in raw:
        raise PathError(f"{raw!r}: not a path to write to")
    return Path(os.path.abspath(raw))


def _open_dir(name: str, dir_fd: int, at: Path, shown: Path) -> int:
    """``name`` inside ``dir_fd`` (the folder ``at``) as a directory descriptor; a link is refused unless it
    is one of :func:`_machine_links`."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISLNK(info.st_mode):
            raise PathError(f"{shown}: {at} is a file, not a folder; name another path") from None
        if str(at) not in _machine_links():
            raise link_refused(at, shown) from None
        return os.open(name, _DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=dir_fd)


def _walk(folder: Path, *, create: bool, shown: Path) -> int:
    """A descriptor of ``folder`` (absolute), reached from ``/`` without following a link; missing folders
    are made (mode ``0777`` minus the umask) when ``create``, else ``FileNotFoundError``."""
    fd = os.open("/", _DIR_FLAGS)
    at = Path("/")
    try:
        for part in folder.parts[1:]:
            at = at / part
            try:
                following = _open_dir(part, fd, at, shown)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):  # made meanwhile: opened (and checked) below
                    os.mkdir(part, 0o777, dir_fd=fd)
                following = _open_dir(part, fd, at, shown)
            os.close(fd)
            fd = following
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _failures(path: Path, doing: str) -> Iterator[None]:
    """The filesystem's refusals while writing ``path``: a full disk (quota, read-only, I/O error) as a
    StorageError, a permission as a PathError, both naming ``path``; anything else passes."""
    try:
        yield
    except PathError:
        raise
    except BaseException as exc:
        if is_outside_world(exc):
            raise storage_error(exc, path, doing=doing) from None
        if isinstance(exc, PermissionError):
            raise PathError(
                f"{path}: cannot {doing} it (permission denied); choose a folder you can write to"
            ) from None
        raise


@contextlib.contextmanager
def _parent(path: Path, *, create: bool, doing: str) -> Iterator[int]:
    """The descriptor of ``path``'s folder (walked as :func:`_walk` does), closed after the block."""
    with _failures(path, doing):
        fd = _walk(path.parent, create=create, shown=path)
    try:
        yield fd
    finally:
        os.close(fd)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _check_name(name: str, dir_fd: int, path: Path, *, replace: bool) -> os.stat_result | None:
    """What is at ``path`` now: nothing, or a file it may replace; a link or a folder is refused."""
    info = _lstat(name, dir_fd)
    if info is None:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise link_refused(path)
    if stat.S_ISDIR(info.st_mode):
        raise PathError(f"{path}: a folder is in the way; move it away or choose another path")
    if not replace:
        raise PathError(f"{path}: exists already and dnr-sweep does not write over it; move it away or choose "
                        "another path")  # fmt: skip
    return info


def find_link(folder: Where) -> Path | None:
    """The first symbolic link inside ``folder`` (at any depth, none followed), or ``None``: a folder dnr-sweep
    wrote holds none, so one there was put by someone else (a command that hands the folder to a library
    that writes without this module, Ray Tune on ``resume``, refuses it first)."""
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted(dirs + names):
            if os.path.islink(os.path.join(root, name)):
                return Path(root, name)
    return None


def check_target(path: Where) -> Path:
    """Refuse now what a write of ``path`` would refuse later: a link at it or at a folder on its way, a folder
    in its place (a command checks its outputs before the expensive work). Missing folders are fine."""
    path = _absolute(path)
    try:
        with _parent(path, create=False, doing="write") as fd:
            _check_name(path.name, fd, path, replace=True)
    except FileNotFoundError:
        pass
    return path


# ------------------------------------------------------------------------------------------------
# Files


def _temporary(name: str, dir_fd: int) -> tuple[str, int]:
    """A new file ``.NAME.<random>.tmp`` in ``dir_fd`` that this process made (``O_EXCL``); (name, fd)."""
    for _ in range(100):
        tmp = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
        try:
            return tmp, os.open(tmp, _NEW_FILE_FLAGS, 0o666, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", name)


def _remove_own(name: str, dir_fd: int, made: os.stat_result) -> None:
    """Remove ``name`` if it is still the file this process made (``made``), nothing else."""
    with contextlib.suppress(OSError):
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
            os.unlink(name, dir_fd=dir_fd)


def write_file(path: Where, write: Callable[[IO[bytes]], object], *, replace: bool = True) -> Path:
    """Call ``write(handle)`` on a new temporary file beside ``path`` and move it into place; ``path``.

    ``replace=False``: ``path`` must not exist (a hard link from the temporary name, so a race never clobbers).
    The file has mode ``0666`` minus the umask and is fsynced before the rename.

    Raises:
        PathError: a link at ``path`` or on its way, a folder in its place, an existing file without ``replace``,
            a folder this process may not write into.
        StorageError: a full disk, quota, read-only mount or I/O error (naming ``path``, not the temporary file).
    """
    path = _absolute(path)
    with _parent(path, create=True, doing="write") as dir_fd, _failures(path, "write"):
        _check_name(path.name, dir_fd, path, replace=replace)
        tmp, fd = _temporary(path.name, dir_fd)
        made = os.fstat(fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            if replace:
                os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # a link put there meanwhile
            else:  # is replaced, never followed
                _link_new(tmp, path, dir_fd)
        except BaseException:
            _remove_own(tmp, dir_fd, made)
            raise
    return path


def _link_new(tmp: str, path: Path, dir_fd: int) -> None:
    """``tmp`` becomes ``path`` only if ``path`` does not exist (then ``tmp`` goes)."""
    try:
        os.link(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise PathError(f"{path}: appeared while it was written; dnr-sweep does not write over it. Move it away "
                        "or choose another path") from None  # fmt: skip
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        _check_name(path.name, dir_fd, path, replace=False)  # a filesystem without hard links: check, then rename
        os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(tmp, dir_fd=dir_fd)


def atomic_write_handle(path: Where, write: Callable[[IO[bytes]], object], *, replace: bool = True) -> Path:
    """:func:`write_file` (the name says how it writes)."""
    return write_file(path, write, replace=replace)


def write_bytes(path: Where, data: bytes, *, replace: bool = True) -> Path:
    """``data`` as the whole file ``path`` (:func:`write_file`)."""
    return write_file(path, lambda handle: handle.write(data), replace=replace)


def write_text(path: Where, text: str, *, replace: bool = True) -> Path:
    """``text`` (UTF-8) as the whole file ``path`` (:func:`write_file`)."""
    return write_bytes(path, text.encode(), replace=replace)


def atomic_write(path: Where, write: Callable[[Path], object], *, replace: bool = True) -> Path:
    """For writers that only take a path: ``write(tmp)`` into a private temporary folder (``0700``, outside
    every folder a user handed over), then its bytes into ``path`` by :func:`write_file`."""
    target = _absolute(path)
    with private_folder("dnr-sweep-write-") as folder:
        staged = folder / target.name
        with _failures(target, "write"):
            write(staged)

        def copy(handle: IO[bytes]) -> None:
            with open(staged, "rb") as source:
                shutil.copyfileobj(source, handle)

        return write_file(target, copy, replace=replace)


def open_new(path: Where) -> IO[bytes]:
    """A new file at ``path`` (``O_EXCL``, never through a link), open for writing: a stream (a download)
    written into a folder of this process's own, then moved into place with :func:`move`."""
    path = _absolute(path)
    with _parent(path, create=True, doing="write") as dir_fd, _failures(path, "write"):
        _check_name(path.name, dir_fd, path, replace=False)
        return os.fdopen(os.open(path.name, _NEW_FILE_FLAGS, 0o666, dir_fd=dir_fd), "wb")


def move(source: Where, target: Where, *, replace: bool = False) -> Path:
    """Rename ``source`` (a file, a folder, or a link itself) to ``target`` in the same filesystem, never
    through a link at either end or on their way; ``replace``: an existing file at ``target`` is replaced."""
    source, target = _absolute(source), _absolute(target)
    with (_parent(source, create=False, doing="move") as from_fd, _parent(target, create=True, doing="write") as to_fd,
          _failures(target, "write")):  # fmt: skip
        if _lstat(source.name, from_fd) is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(source))
        _check_name(target.name, to_fd, target, replace=replace)
        os.replace(source.name, target.name, src_dir_fd=from_fd, dst_dir_fd=to_fd)
    return target


def remove(path: Where) -> bool:
    """Remove the file or folder (with everything in it) at ``path``, never following a link on the way or
    inside; whether something was there. Callers remove only what they made, so a link at ``path`` (never
    dnr-sweep's) is refused, not removed."""
    path = _absolute(path)
    try:
        with _parent(path, create=False, doing="remove") as dir_fd, _failures(path, "remove"):
            info = _lstat(path.name, dir_fd)
            if info is None:
                return False
            if stat.S_ISLNK(info.st_mode):
                raise link_refused(path)
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(path.name, dir_fd=dir_fd)  # descriptor-based: links inside are removed, not followed
            else:
                os.unlink(path.name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def keep_earlier(path: Where) -> Path | None:
    """Before ``path`` is replaced: keep its current file as ``<stem>.earlier-<n><suffix>`` (the next free ``n``)
    and return that name, or ``None`` when there is no file. A hard link, so ``path`` itself stays in place
    until the atomic replace: no moment without it. A link at ``path`` is refused, never kept or followed."""
    path = _absolute(path)
    try:
        with _parent(path, create=False, doing="keep") as dir_fd, _failures(path, "keep"):
            info = _lstat(path.name, dir_fd)
            if info is None or not stat.S_ISREG(info.st_mode):
                if info is not None and stat.S_ISLNK(info.st_mode):
                    raise link_refused(path)
                return None
            for n in range(1, 100_000):
                aside = path.with_name(f"{path.stem}.earlier-{n}{path.suffix}")
                if _lstat(aside.name, dir_fd) is not None:
                    continue
                try:
                    os.link(path.name, aside.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    continue
                except OSError:  # a filesystem without hard links: a copy does as well
                    fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                    with os.fdopen(fd, "rb") as source:
                        write_file(
                            aside, lambda handle, source=source: shutil.copyfileobj(source, handle), replace=False
                        )
                return aside
    except FileNotFoundError:
        return None
    raise PathError(f"{path}: 100,000 earlier copies beside it already; move some away")


# ------------------------------------------------------------------------------------------------
# Folders and locks


def make_folder(path: Where, flag: str | None = None) -> Path:
    """Create the folder ``path`` and the folders on its way (mode ``0777`` minus the umask), none through a
    link. ``flag`` (e.g. ``--out``) is named in the message when the filesystem refuses."""
    folder = _absolute(path)
    try:
        with _failures(folder, "create"):
            os.close(_walk(folder, create=True, shown=folder))
    except PathError as exc:
        raise PathError(f"{flag} {exc}" if flag else str(exc)) from None
    except StorageError:
        raise
    except OSError as exc:  # a name too long, a mount that takes no new folders
        raise PathError(f"{flag + ' ' if flag else ''}{folder}: cannot create the folder ({exc.strerror}); name a "
                        "folder you can write to") from None  # fmt: skip
    return folder


def make_unique_folder(parent: Where, prefix: str, suffix: str = "") -> Path:
    """A new folder ``PREFIX<random>SUFFIX`` in ``parent`` that this process made (``mkdir`` is exclusive),
    mode ``0700``: a private place to work in (a download, an unpack) that is removed, exactly it, after."""
    folder = _absolute(parent)
    with _failures(folder, "create"):
        fd = _walk(folder, create=True, shown=folder)
        try:
            for _ in range(100):
                name = f"{prefix}{secrets.token_hex(4)}{suffix}"
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    continue
                return folder / name
        finally:
            os.close(fd)
    raise FileExistsError(errno.EEXIST, "no free folder name", str(folder / prefix))


@contextlib.contextmanager
def private_folder(prefix: str = "dnr-sweep-") -> Iterator[Path]:
    """A new folder of this process's own in the temporary folder (``0700``), removed with its contents after
    the block; its path is resolved, so the writer can write inside it."""
    folder = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    try:
        yield folder
    finally:
        remove(folder)


def open_lock(path: Where) -> tuple[int, bool]:
    """A lock file at ``path`` opened read-write (created if missing), never through a link; (descriptor,
    whether this call created it). Refused unless it is a plain file of its own (a hard link shares its data)."""
    path = _absolute(path)
    with _parent(path, create=True, doing="lock") as dir_fd, _failures(path, "lock"):
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a FIFO never hangs the open
        try:
            fd, created = os.open(path.name, flags | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dir_fd), True
        except FileExistsError:
            try:
                fd, created = os.open(path.name, flags, dir_fd=dir_fd), False
            except OSError as exc:
                info = _lstat(path.name, dir_fd)
                if exc.errno == errno.ELOOP and info is not None and stat.S_ISLNK(info.st_mode):
                    raise link_refused(path) from None
                raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            what = "a hard link to another file" if stat.S_ISREG(info.st_mode) else "not a plain file"
            raise PathError(f"{path}: the lock file is {what}; dnr-sweep writes its lock record into it, so it "
                            "refuses. Remove it (it is not dnr-sweep's) and run the command again")  # fmt: skip
        os.set_blocking(fd, True)
        return fd, created


# ------------------------------------------------------------------------------------------------
# The folders users name: resolved once, here


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def named_folder(text: Where) -> Path:
    """A folder a user named (e.g. ``MODEL``), absolute with the links in it resolved: what the user typed is
    the user's choice, so :func:`write_file` follows none below it."""
    return Path(os.fspath(text)).expanduser().resolve()


def output_folder(text: Where, flag: str) -> Path:
    """The folder named by ``flag`` (e.g. ``--out``), resolved (:func:`named_folder`), checked before any work.

    Refuses: an empty or blank value, a NUL byte, the filesystem root, an existing file, a path
    under a file, and a folder (or its nearest existing parent) this process cannot write into.
    The folder is not created here.
    """
    raw = os.fspath(text)
    if not raw.strip():
        raise PathError(f"{flag} {raw!r}: an empty path; name a folder, e.g. {flag} runs/my_run")
    if "\0" in raw:
        raise PathError(f"{flag} {raw!r}: a path cannot contain a NUL byte; name a plain folder")
    try:
        path = named_folder(raw)
        if path == Path(path.anchor):
            raise PathError(f"{flag} {raw}: the filesystem root is not a folder for results; name a sub-folder")
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


def output_file(text: Where, flag: str) -> Path:
    """A file argument that will be written (e.g. ``export --out FILE``): not empty, not a folder, not a link,
    its folder (resolved) creatable and writable."""
    raw = os.fspath(text)
    if not raw.strip() or "\0" in raw:
        raise PathError(f"{flag} {raw!r}: name a file, e.g. {flag} exports/model.pt2")
    path = Path(raw).expanduser().absolute()
    if os.path.isdir(path):  # never raises, unlike Path.is_dir on a name too long
        raise PathError(f"{flag} {raw}: {path} is a folder; name a file inside it, e.g. {path / 'model.pt2'}")
    if os.path.islink(path):
        raise PathError(f"{flag} {raw}: {path} is a symbolic link; dnr-sweep never writes through a link. Name "
                        "the file itself, or another file")  # fmt: skip
    return output_folder(path.parent, flag) / path.name
