"""Where a run's files live: a local folder, or any filesystem URI that ``pyarrow.fs`` (and so Ray
Tune's ``storage_path``) understands: ``file:///shared/runs``, ``s3://bucket/runs``,
``gs://bucket/runs``, ``hdfs://...``, with pyarrow's URI options, e.g.
``s3://bucket/runs?endpoint_override=10.0.0.5:9000&scheme=http`` for an S3-compatible server.

A :class:`Location` is a filesystem and a path on it. On a local filesystem (a plain path or a
``file://`` URI) every write goes through the one writer (:mod:`dnr_sweep.foundation.files`: atomic,
never through a link) on the folder itself (:attr:`Location.local`); elsewhere files are written as
whole objects through ``pyarrow.fs`` (an S3 PUT is atomic; an object store has no links) and readers
that need a folder use :func:`staged`, which copies the small files into a private temporary folder,
lets the caller work there and copies what it wrote back.

Standard library and pyarrow only: the report layer (which never imports torch) uses it too.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from dnr_sweep.foundation import files
from dnr_sweep.foundation.errors import PathError


def is_uri(text: str) -> bool:
    """``scheme://...`` (a one-letter scheme is a Windows drive, not a URI)."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").replace("-", "").isalnum()


def _join_uri(uri: str, parts: tuple[str, ...]) -> str:
    """``s3://b/runs?x=1`` + ``("a", "b")`` -> ``s3://b/runs/a/b?x=1`` (options stay at the end)."""
    base, sep, query = uri.partition("?")
    joined = "/".join([base.rstrip("/"), *parts]) if parts else base
    return joined + (sep + query if sep else "")


@dataclass(frozen=True)
class Location:
    """A path on a ``pyarrow.fs`` filesystem; ``uri`` is how a user (or Ray Tune) names it."""

    fs: pafs.FileSystem
    path: str
    uri: str = ""

    def __post_init__(self) -> None:
        if not self.uri:
            object.__setattr__(
                self, "uri", self.path if self.local is not None else f"{self.fs.type_name}://{self.path}"
            )

    @property
    def local(self) -> Path | None:
        """The folder itself when the filesystem is the local one, else ``None``."""
        return Path(self.path) if isinstance(self.fs, pafs.LocalFileSystem) else None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        base, sep, query = self.uri.partition("?")
        parent_uri = base.rstrip("/").rsplit("/", 1)[0] + (sep + query if sep else "")
        return Location(self.fs, posixpath.dirname(self.path.rstrip("/")), parent_uri)

    def __truediv__(self, part: str) -> Location:
        parts = tuple(p for p in str(part).split("/") if p)
        return Location(self.fs, posixpath.join(self.path, *parts), _join_uri(self.uri, parts))

    def __str__(self) -> str:
        return self.uri


def locate(text: str | os.PathLike[str], *, what: str = "--storage") -> Location:
    """A local path (``~`` expanded, made absolute) or a ``pyarrow.fs`` URI, as a :class:`Location`; a URI
    that cannot be used is a :class:`~dnr_sweep.foundation.errors.PathError` naming ``what`` and the fix."""
    text = str(text)
    if not is_uri(text):
        path = Path(text).expanduser().resolve()
        return Location(pafs.LocalFileSystem(), str(path), str(path))
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (ValueError, OSError, TypeError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise PathError(
            f"{what} {text!r}: {exc}; give a local folder or a filesystem URI that pyarrow understands, "
            "e.g. s3://bucket/runs, gs://bucket/runs or file:///shared/runs"
        ) from None
    if isinstance(fs, pafs.LocalFileSystem):
        return Location(fs, str(Path(path).resolve()), text)
    if not path.strip("/"):
        raise PathError(f"{what} {text!r} names no bucket or folder; give a local folder or a filesystem URI "
                        "with a path, e.g. s3://bucket/runs")  # fmt: skip
    return Location(fs, path.rstrip("/"), text)


Where = Location | str | os.PathLike[str]


def as_location(where: Where) -> Location:
    """``where`` itself when it is a :class:`Location`; a URI located, a local path made absolute (not resolved:
    the links below a folder a user named are never followed, :mod:`dnr_sweep.foundation.files`)."""
    if isinstance(where, Location):
        return where
    if is_uri(str(where)):
        return locate(where, what="path")
    path = os.path.abspath(os.path.expanduser(os.fspath(where)))
    return Location(pafs.LocalFileSystem(), path, path)


# ------------------------------------------------------------------------------------------------
# Files (each accepts a Location, a local path or a URI)


def _info(loc: Where) -> pafs.FileInfo:
    loc = as_location(loc)
    return loc.fs.get_file_info(loc.path)


def exists(loc: Where) -> bool:
    return _info(loc).type != pafs.FileType.NotFound


def is_file(loc: Where) -> bool:
    return _info(loc).type == pafs.FileType.File


def is_dir(loc: Where) -> bool:
    return _info(loc).type == pafs.FileType.Directory


def listdir(loc: Where) -> list[str]:
    """Names directly inside the folder ``loc`` (empty when it does not exist), sorted."""
    loc = as_location(loc)
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, allow_not_found=True, recursive=False))
    return sorted(posixpath.basename(info.path) for info in infos)


def read_bytes(loc: Where) -> bytes:
    loc = as_location(loc)
    if not is_file(loc):
        raise FileNotFoundError(f"{loc}: no such file")
    with loc.fs.open_input_stream(loc.path) as stream:
        return stream.read()


def read_text(loc: Where) -> str:
    return read_bytes(loc).decode()


def write_bytes(loc: Where, data: bytes) -> Location:
    """Write ``data`` to ``loc`` whole: locally through the writer (atomic, no link followed), elsewhere as one
    object."""
    loc = as_location(loc)
    if loc.local is not None:
        files.write_bytes(loc.local, data)
        return loc
    loc.fs.create_dir(loc.parent.path, recursive=True)
    with loc.fs.open_output_stream(loc.path) as stream:
        stream.write(data)
    return loc


def write_text(loc: Where, text: str) -> Location:
    loc = as_location(loc)
    return write_bytes(loc, text.encode())


def delete(loc: Where) -> None:
    """Remove a file or a folder (with its contents); nothing when it does not exist."""
    loc = as_location(loc)
    if loc.local is not None:
        files.remove(loc.local)
        return
    info = _info(loc)
    if info.type == pafs.FileType.Directory:
        loc.fs.delete_dir(loc.path)
    elif info.type != pafs.FileType.NotFound:
        loc.fs.delete_file(loc.path)


def upload(local_dir: Path, loc: Where, names: list[str] | None = None) -> list[Location]:
    """Copy the files under ``local_dir`` (or only the relative ``names``) to the folder ``loc``."""
    local_dir, loc = Path(local_dir), as_location(loc)
    if names is None:
        names = [p.relative_to(local_dir).as_posix() for p in sorted(local_dir.rglob("*")) if p.is_file()]
    written = []
    for name in names:
        target = loc / name
        if target.local is not None:
            with open(local_dir / name, "rb") as source:
                files.write_file(target.local, lambda handle, source=source: shutil.copyfileobj(source, handle))
        else:
            loc.fs.create_dir(target.parent.path, recursive=True)
            pafs.copy_files(str(local_dir / name), target.path, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=loc.fs)  # fmt: skip
        written.append(target)
    return written


def run_folder_files(relative: str) -> bool:
    """The files a report or a results table reads from a run folder: those of the run folder and
    of its trial folders (not checkpoints, which sit one level deeper), except torch files."""
    return relative.count("/") <= 1 and not relative.endswith((".pt", ".pt2"))


@contextlib.contextmanager
def staged(loc: Where, include: Callable[[str], bool] = run_folder_files) -> Iterator[Path]:
    """A local folder with ``loc``'s contents for code that works on folders.

    Local: the folder itself. Elsewhere: a copy of the files ``include`` accepts (relative POSIX paths)
    in a private temporary folder; on a normal exit the files the caller added or changed are copied back.
    """
    loc = as_location(loc)
    if loc.local is not None:
        yield loc.local
        return
    with files.private_folder("dnr-sweep-stage-") as root:
        before: dict[str, tuple[int, int]] = {}
        infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, allow_not_found=True, recursive=True))
        prefix = loc.path.rstrip("/") + "/"
        for info in infos:
            relative = info.path[len(prefix) :] if info.path.startswith(prefix) else None
            if info.type != pafs.FileType.File or relative is None or ".." in relative.split("/"):
                continue  # a key that would climb out of the private folder is no run folder's file
            if not include(relative):
                continue
            target = root / relative
            with loc.fs.open_input_stream(info.path) as source:
                files.write_file(target, lambda handle, source=source: shutil.copyfileobj(source, handle))
            stat = target.stat()
            before[relative] = (stat.st_size, stat.st_mtime_ns)
        yield root
        changed = []
        for path in sorted(root.rglob("*")):
            if path.is_file():
                relative = path.relative_to(root).as_posix()
                stat = path.stat()
                if before.get(relative) != (stat.st_size, stat.st_mtime_ns):
                    changed.append(relative)
        upload(root, loc, changed)
