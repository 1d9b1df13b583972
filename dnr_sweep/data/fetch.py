"""Getting a data set onto disk, once, verified: the one owner of downloads (trials never download).

Each downloadable data set's facts (URL, size, MD5s, folder) are its :class:`~dnr_sweep.data.specs.Archive`.

- :func:`ensure` (``run``/``train``/``data fetch``; one task per node on a cluster): present and intact
  is nothing to do; otherwise, under a file lock in ``data.root``, the archive is taken from there or
  downloaded (official URL or mirror) through :mod:`dnr_sweep.foundation.http`, checked, unpacked into a
  folder of its own and renamed into place. A failed download is not retried: one
  :class:`~dnr_sweep.foundation.errors.DatasetNotFoundError` names the data set, the URL and the ways out.
- :func:`verify` (``data check``): every file against its MD5, or Tiny-ImageNet's structure; a small
  record (:data:`RECORD_FILE`) spares the next run re-reading unchanged files.
- :func:`check_present` (each trial): the recorded files exist with their sizes; no network.

Corrupt or partial data is named, never deleted; a crashed fetch's leftovers are removed exactly as its
journal names them. No torch, so ``dnr-sweep data`` answers at once. The steps: docs/DATA.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tarfile
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.data.specs import Archive, DatasetSpec
from dnr_sweep.foundation import files, http, locks, reader
from dnr_sweep.foundation.errors import DatasetNotFoundError, InputFileError, PathError, UserError
from dnr_sweep.foundation.schemas import DataRecord, FetchJournal

__all__ = [
    "MIN_RATE",
    "MIRROR_ENV",
    "RECORD_FILE",
    "TIMEOUT_S",
    "check_present",
    "download_limits",
    "ensure",
    "mirror_url",
    "resolve_mirror",
    "source_url",
    "verify",
]

#: the environment variable naming a mirror (below ``--mirror`` and ``data.mirror``)
MIRROR_ENV = "DNR_SWEEP_DATA_MIRROR"
#: seconds a connection (and each read) may wait: an unreachable mirror fails within them
TIMEOUT_S = 15.0
#: the slowest average a download may keep (bytes/s): the whole archive must arrive within
#: DEADLINE_BASE_S + size / MIN_RATE (CIFAR-10: about 44 minutes), however the server paces it
MIN_RATE = 64 * 1024
DEADLINE_BASE_S = 60.0
#: redirects a download follows (an official host that moved a file, a mirror's CDN); never off this
#: machine from a loopback mirror, never from https to http (:mod:`dnr_sweep.foundation.http`)
MAX_REDIRECTS = 5
#: what a verified folder records about its files (size, mtime), inside the folder
RECORD_FILE = ".dnr-sweep-verified.json"
_CHUNK = 1 << 20
_MIRROR_SCHEMES = ("http", "https", "file")
_WORK_SUFFIX = ".dnr-sweep-fetch"

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Where an archive comes from


def mirror_url(value: str) -> str:
    """A mirror as a base URL: ``http(s)://`` and ``file://`` as given (no trailing ``/``), a folder
    path as its ``file://`` URL. ``ValueError`` naming the value otherwise."""
    text = value.strip()
    if not text:
        raise ValueError("an empty mirror; give http://HOST/PATH, https://..., file:///PATH or a folder")
    scheme = urllib.parse.urlsplit(text).scheme
    if "://" not in text:  # a folder on this machine (or on storage every node mounts)
        return Path(text).expanduser().absolute().as_uri()
    if scheme not in _MIRROR_SCHEMES:
        raise ValueError(f"{http.redact(text)!r}: a mirror is http://, https://, file:// or a folder, not {scheme}://")
    return text.rstrip("/")


def resolve_mirror(flag: str | None = None, configured: str | None = None) -> str | None:
    """The mirror to use: ``--mirror``, else ``data.mirror``, else ``$DNR_SWEEP_DATA_MIRROR``; None: the
    official URLs. :class:`~dnr_sweep.foundation.errors.PathError` naming where a bad value came from."""
    for value, where in ((flag, "--mirror"), (configured, "data.mirror"), (os.environ.get(MIRROR_ENV), MIRROR_ENV)):
        if value:
            try:
                return mirror_url(value)
            except ValueError as exc:
                raise PathError(f"{where}: {exc}") from None
    return None


def source_url(archive: Archive, mirror: str | None) -> str:
    """Where the archive is downloaded from: ``MIRROR/FILENAME``, or the official URL."""
    return f"{mirror}/{urllib.parse.quote(archive.filename)}" if mirror else archive.url


def download_limits(archive: Archive) -> http.Limits:
    """What a download of ``archive`` may take: :data:`TIMEOUT_S` to connect and per read, the whole archive
    within ``DEADLINE_BASE_S + size / MIN_RATE``, and not a byte more than its size."""
    return http.Limits(connect_s=TIMEOUT_S, idle_s=TIMEOUT_S, total_s=DEADLINE_BASE_S + archive.size / MIN_RATE,
                       max_bytes=archive.size)  # fmt: skip


def _archive(spec: DatasetSpec) -> Archive:
    if spec.archive is None:
        raise ValueError(f"data set {spec.name!r} is not downloaded (it is bundled or generated)")
    return spec.archive


# --------------------------------------------------------------------------------------------------
# Checking an unpacked folder


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _refetch_fix(spec: DatasetSpec, root: Path) -> str:
    folder = root / _archive(spec).folder
    return (f"move {folder} away (or delete it), then run `dnr-sweep data fetch {spec.name} --root {root}`, which "
            f"unpacks {_archive(spec).filename} again")  # fmt: skip


def _bad(spec: DatasetSpec, root: Path, path: Path, problem: str, expected: str) -> InputFileError:
    return InputFileError(path, problem, expected=expected, fix=f"Fix: {_refetch_fix(spec, root)}")


def _checked_paths(spec: DatasetSpec, folder: Path) -> list[Path]:
    """The files whose size and mtime the record keeps (and :func:`check_present` compares)."""
    archive = _archive(spec)
    if archive.files:
        return [folder / name for name, _ in archive.files]
    return [folder / rel for rel in archive.required if (folder / rel).is_file()]


def _check_files(spec: DatasetSpec, folder: Path, root: Path, *, md5: bool) -> None:
    archive = _archive(spec)
    for name, expected in archive.files:
        path = folder / name
        if not path.is_file():
            raise _bad(spec, root, path, "is missing (a partial unpack?)", f"the file {name} of {archive.filename}")
        if md5 and (found := _md5(path)) != expected:
            raise _bad(spec, root, path, f"has MD5 {found} ({path.stat().st_size:,} bytes)",
                       f"MD5 {expected}, the file {name} of {archive.filename}")  # fmt: skip
    for rel in archive.required:
        if not (folder / rel).exists():
            note = ""
            if rel.startswith("val/") and (folder / "val").is_dir():
                note = " (dnr-sweep reads the official val layout: val/images and val/val_annotations.txt)"
            raise _bad(spec, root, folder / rel, f"is missing{note}", f"{rel} of {archive.filename}")


def _check_tinyimagenet_tree(spec: DatasetSpec, folder: Path, root: Path) -> None:
    """The structure :class:`dnr_sweep.data.loaders.TinyImageNetFolder` reads, every class and val image."""
    wnids_file = folder / "wnids.txt"
    wnids = [line.strip() for line in wnids_file.read_text(errors="replace").splitlines() if line.strip()]
    if not wnids:
        raise _bad(spec, root, wnids_file, "lists no class ids", "one WordNet id (e.g. n01443537) per line")
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        if not images.is_dir() or next(images.iterdir(), None) is None:
            raise _bad(spec, root, images, "is missing or empty", f"the training images of class {wnid} (wnids.txt)")
    annotations = folder / "val" / "val_annotations.txt"
    known, count = set(wnids), 0
    for lineno, line in enumerate(annotations.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in known:
            raise _bad(spec, root, annotations, f"line {lineno} is {line[:80]!r}",
                       "'filename<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1' lines with wnids from wnids.txt")  # fmt: skip
        if not (folder / "val" / "images" / fields[0]).is_file():
            raise _bad(spec, root, folder / "val" / "images" / fields[0], f"is missing (line {lineno} of {annotations})",
                       "every image val_annotations.txt names")  # fmt: skip
        count += 1
    if count == 0:
        raise _bad(spec, root, annotations, "labels no image", "one line per val image")


#: full structure checks beyond the archive's file list, by data set name
_TREE_CHECKS: dict[str, Callable[[DatasetSpec, Path, Path], None]] = {"tinyimagenet": _check_tinyimagenet_tree}


def _stamp(folder: Path, paths: list[Path]) -> dict[str, list[int]]:
    return {p.relative_to(folder).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def _record(folder: Path) -> DataRecord | None:
    """The folder's verification record, or None when it has none it can trust (then it is verified again)."""
    record, _ = reader.read_lenient(folder / RECORD_FILE, DataRecord, unusable="verified again", prune=False)
    return record


def _write_record(spec: DatasetSpec, folder: Path) -> None:
    record = {
        "dataset": spec.name,
        "archive_md5": _archive(spec).md5,
        "files": _stamp(folder, _checked_paths(spec, folder)),
    }
    try:
        files.write_text(folder / RECORD_FILE, json.dumps(record, indent=1) + "\n")
    except (OSError, PathError):  # a read-only copy (shared storage), a linked folder: verified again next time
        pass


def _record_matches(spec: DatasetSpec, folder: Path) -> bool:
    record = _record(folder)
    if record is None or record.archive_md5 != _archive(spec).md5:
        return False
    try:
        return {k: list(v) for k, v in record.files.items()} == _stamp(folder, _checked_paths(spec, folder))
    except OSError:
        return False


def verify(spec: DatasetSpec, root: str | Path, *, full: bool = True) -> Path:
    """Check the unpacked folder of ``spec`` under ``root``; its path.

    ``full``: every MD5 and the whole structure; otherwise only when a file changed since the last
    verification (the record's sizes and mtimes). A passing full check writes the record.

    Raises:
        DatasetNotFoundError: the folder is not there.
        InputFileError: a file is missing, changed or corrupt (the message names it and the fix).
    """
    archive, root = _archive(spec), Path(root).expanduser()
    folder = root / archive.folder
    if not folder.exists():
        raise DatasetNotFoundError(_not_found(spec, root, None))
    if not folder.is_dir():
        raise _bad(spec, root, folder, "is a file", f"the folder {archive.filename} unpacks to")
    if not full and _record_matches(spec, folder):
        return folder
    _verify_folder(spec, folder, root)
    return folder


def _verify_folder(spec: DatasetSpec, folder: Path, root: Path) -> None:
    """Every MD5 and the structure of ``folder`` (messages name ``root``'s folder in their fix); the record."""
    _check_files(spec, folder, root, md5=True)
    if spec.name in _TREE_CHECKS:
        _TREE_CHECKS[spec.name](spec, folder, root)
    _write_record(spec, folder)


def check_present(spec: DatasetSpec, root: str | Path) -> None:
    """What a trial checks before it opens the data (milliseconds, never the network): the folder
    and its files exist, with the sizes recorded when it was verified."""
    if spec.archive is None:
        return
    root = Path(root).expanduser()
    folder = root / spec.archive.folder
    if not folder.is_dir():
        raise DatasetNotFoundError(_not_found(spec, root, None, in_trial=True))
    _check_files(spec, folder, root, md5=False)
    record = _record(folder)
    for rel, (size, _mtime) in (record.files if record is not None else {}).items():
        path = folder / rel
        found = path.stat().st_size if path.is_file() else None
        if found != size:
            what = "is missing" if found is None else f"has {found:,} bytes"
            raise _bad(spec, root, path, f"{what} since it was verified", f"{size:,} bytes")


# --------------------------------------------------------------------------------------------------
# The message when the data cannot be had


def _not_found(
    spec: DatasetSpec, root: Path, tried: str | None, *, download: bool = True, in_trial: bool = False
) -> str:
    archive = _archive(spec)
    head = (f"{spec.name} not found under {root}: no {archive.folder}/ folder and no {archive.filename} archive "
            "there")  # fmt: skip
    if (root / archive.filename).is_file():
        head = (f"{spec.name} not found under {root}: no {archive.folder}/ folder ({archive.filename} is there, not "
                f"unpacked: `dnr-sweep data fetch {spec.name} --root {root}` checks and unpacks it)")  # fmt: skip
    if in_trial:
        head += (f" on this node. Trials never download; `dnr-sweep run` prepares the data on every node first "
                 f"(data.download: true), or run `dnr-sweep data fetch {spec.name} --root {root}` on this node")  # fmt: skip
    elif tried is not None:
        head += f"; {tried} (not retried)"
    elif not download:
        head += (f"; data.download is false, so nothing was fetched: set data.download: true, or run "
                 f"`dnr-sweep data fetch {spec.name} --root {root}`")  # fmt: skip
    return (
        f"{head}. Three ways out:\n"
        f"  1. put the archive at {root / archive.filename} ({archive.size:,} bytes, MD5 {archive.md5}, from "
        f"{archive.url}); it is checked and unpacked on the next run\n"
        f"  2. point data.root at a folder that holds {archive.folder}/ (e.g. --set data.root=/shared/datasets)\n"
        f"  3. set a mirror that serves {archive.filename}: --mirror URL (dnr-sweep data fetch), "
        f"--set data.mirror=URL, or {MIRROR_ENV}=URL (http://, https://, file:// or a folder; the MD5 is "
        "still checked)"
    )


# --------------------------------------------------------------------------------------------------
# Fetching


def ensure(
    spec: DatasetSpec,
    root: str | Path,
    *,
    download: bool = True,
    mirror: str | None = None,
    progress: bool = True,
    log: Log = _stderr,
) -> str:
    """Make ``spec``'s data present and intact under ``root``; what was done: ``"bundled"`` (nothing to
    fetch), ``"present"``, ``"unpacked"`` (an archive found under ``root``) or ``"downloaded"``.

    Args:
        download: may the archive be downloaded (``data.download``); without it only an archive the
            user put under ``root`` is unpacked.
        mirror: a base URL from :func:`resolve_mirror` (None: the official URL).
        progress: draw a progress bar (bytes, rate, ETA) on stderr while downloading.

    Raises:
        DatasetNotFoundError: missing and not to be had (offline, unreachable, 404, download off).
        InputFileError: corrupt or partial data (archive or unpacked file named, with the fix).
        PathError: ``root`` cannot hold the data (a file, not writable).
    """
    if spec.archive is None:
        return "bundled"
    archive, root = spec.archive, files.named_folder(root)
    if (root / archive.folder).exists():
        verify(spec, root, full=False)
        return "present"
    if not download and not (root / archive.filename).is_file():
        raise DatasetNotFoundError(_not_found(spec, root, None, download=False))
    files.make_folder(files.output_folder(root, "data.root"), "data.root")  # one this process can write into
    lock = root / f".{archive.folder}.lock"

    def waiting(holder: str) -> None:
        log(f"{spec.name}: another process ({holder}) is fetching it into {root} (lock {lock}); waiting for it")

    with locks.hold_file(lock, waiting=waiting):
        if (root / archive.folder).exists():  # the other process made it
            verify(spec, root, full=False)
            return "present"
        _remove_crashed(root, archive)
        path, how = root / archive.filename, "unpacked"
        if not path.is_file() and not download:
            raise DatasetNotFoundError(_not_found(spec, root, None, download=False))
        for target in (root / archive.folder,) if path.is_file() else (path, root / archive.folder):
            files.check_target(target)  # where the archive is downloaded to and the folder unpacked: no link
        with _work_folder(root, archive) as work:
            if path.is_file():
                _check_archive(spec, root, path)
            else:
                _download(spec, root, source_url(archive, mirror), path, work, progress=progress, log=log)
                how = "downloaded"
            _unpack(spec, root, path, work, log=log)
        return how


def _journal(root: Path, archive: Archive) -> Path:
    """Where a fetch writes down the folder it made (beside the lock; read and written under it)."""
    return root / f".{archive.folder}.fetching.json"


@contextlib.contextmanager
def _work_folder(root: Path, archive: Archive) -> Iterator[Path]:
    """A folder of this fetch's own under ``root`` (the download and the unpack; renames out of it stay on
    one filesystem), made exclusively, written down in the journal, and removed, exactly it, at the end."""
    work = files.make_unique_folder(root, f".{archive.folder}.", _WORK_SUFFIX)
    journal = _journal(root, archive)
    try:
        files.write_text(journal, json.dumps({"made": [work.name], "pid": os.getpid()}) + "\n")
        yield work
    finally:
        with contextlib.suppress(OSError, PathError):
            files.remove(work)
        files.remove(journal)


def _remove_crashed(root: Path, archive: Archive) -> None:
    """The folder a fetch that died (killed, a power cut) made, as its journal names it: that folder only,
    and only a name of the form this module makes, so an edited journal cannot point at the user's files."""
    journal = _journal(root, archive)
    if journal.is_symlink():  # never a fetch's own: its journal is written by the writer, which makes no links
        raise files.link_refused(journal)
    read, _ = reader.read_lenient(journal, FetchJournal, unusable="nothing removed")
    for name in read.made if read is not None else []:
        if ("/" not in name and name.startswith(f".{archive.folder}.")
                and name.endswith(_WORK_SUFFIX)):  # fmt: skip
            folder = root / name
            if folder.is_dir() and not folder.is_symlink():
                with contextlib.suppress(OSError, PathError):
                    files.remove(folder)
    files.remove(journal)


def _check_archive(spec: DatasetSpec, root: Path, path: Path) -> None:
    """An archive the user put under ``root``: its MD5, or an error naming it (never deleted)."""
    archive = _archive(spec)
    found = _md5(path)
    if found != archive.md5:
        size = path.stat().st_size
        problem = f"{size:,} bytes with MD5 {found}" + (
            " (truncated: a partial download?)" if size < archive.size else ""
        )
        raise InputFileError(path, problem, expected=f"{archive.size:,} bytes with MD5 {archive.md5} ({archive.url})",
                             fix=f"Fix: delete it (or move it away) and run `dnr-sweep data fetch {spec.name} --root "
                                 f"{root}`, or put the right file there")  # fmt: skip


def _download(spec: DatasetSpec, root: Path, url: str, dest: Path, work: Path, *, progress: bool,
              log: Log) -> None:  # fmt: skip
    """``url`` to ``dest`` through ``work``, MD5 checked on the way; never retried."""
    archive = _archive(spec)
    shown, part = http.redact(url), work / archive.filename
    digest, received = hashlib.md5(usedforsecurity=False), 0
    from tqdm import tqdm  # lazy: only a download draws a bar, and every command imports this module

    try:
        with _source(spec, root, url) as (length, chunks):
            log(f"{spec.name}: downloading {shown} -> {dest}")
            with files.open_new(part) as out, tqdm(
                total=length or archive.size, unit="B", unit_scale=True, unit_divisor=1024, desc=archive.filename,
                file=sys.stderr, disable=not progress, leave=False,
            ) as bar:  # fmt: skip
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))  # bytes received, not bytes announced
    except http.HttpError as exc:
        raise _download_failed(spec, root, shown, exc, dest) from None
    if digest.hexdigest() != archive.md5:
        short = " (truncated)" if received < archive.size else ""
        raise InputFileError(shown, f"served {received:,} bytes with MD5 {digest.hexdigest()}{short}",
                             expected=f"{archive.filename}: {archive.size:,} bytes with MD5 {archive.md5}",
                             fix="Nothing was kept. Fix: give a mirror whose copy is the official file (compare its "
                                 f"md5sum), or put the official archive at {dest}")  # fmt: skip
    files.move(part, dest)


@contextlib.contextmanager
def _source(spec: DatasetSpec, root: Path, url: str) -> Iterator[tuple[int | None, Iterator[bytes]]]:
    """The archive's announced size and its chunks: over HTTP(S) through the one client, or from a
    ``file://`` mirror (a folder on this machine or on shared storage)."""
    archive = _archive(spec)
    if urllib.parse.urlsplit(url).scheme != "file":
        with http.stream("GET", url, limits=download_limits(archive), follow_redirects=MAX_REDIRECTS) as answer:
            yield answer.length, iter(answer)
        return
    parts = urllib.parse.urlsplit(url)
    path = Path(urllib.parse.unquote(parts.path))
    if parts.netloc not in ("", "localhost"):
        raise DatasetNotFoundError(_not_found(spec, root, f"{url}: a file:// mirror names a folder on this machine "
                                                          "(file:///PATH), not on another host"))  # fmt: skip
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DatasetNotFoundError(_not_found(spec, root, f"reading {path} failed: {exc.strerror or exc}")) from None

    def chunks() -> Iterator[bytes]:
        received = 0
        while chunk := f.read(_CHUNK):
            received += len(chunk)
            if received > archive.size:
                raise _download_failed(spec, root, url, http.HttpError(
                    "too_large", url, f"it holds more than the {archive.size:,} bytes expected", received=received,
                ), root / archive.filename)  # fmt: skip
            yield chunk

    with f:
        yield os.fstat(f.fileno()).st_size, chunks()


def _download_failed(spec: DatasetSpec, root: Path, shown: str, exc: http.HttpError, dest: Path) -> UserError:
    """The one message for a download the client refused: the wrong file (too large), or no file to be had."""
    archive = _archive(spec)
    if exc.kind == "too_large":
        return InputFileError(shown, f"{exc.detail}: not the archive, refused after {exc.received:,} bytes",
                              expected=f"{archive.filename}: {archive.size:,} bytes with MD5 {archive.md5}",
                              fix="Nothing was kept. Fix: give a mirror whose copy is the official file (compare "
                                  f"its md5sum), or put the official archive at {dest}")  # fmt: skip
    if exc.kind == "status":
        tried = f"downloading {shown} failed: HTTP {exc.status} {exc.reason}".rstrip()
    elif exc.kind == "timeout":
        tried = (f"downloading {shown} was cut off: {exc.detail}; a download must keep {MIN_RATE // 1024} KiB/s on "
                 "average")  # fmt: skip
    else:
        tried = f"downloading {shown} failed: {exc.detail}"
    return DatasetNotFoundError(_not_found(spec, root, tried))


def _unpack(spec: DatasetSpec, root: Path, path: Path, work: Path, *, log: Log) -> None:
    """Unpack ``path`` into ``work`` (this fetch's own folder in ``root``), verify, and rename the folder
    into place."""
    archive = _archive(spec)
    log(f"{spec.name}: unpacking {path.name} into {root / archive.folder}")
    tmp = files.make_folder(work / "unpacked")
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:  # zipfile drops '..' and absolute parts of member names
                z.extractall(tmp)
        else:
            with tarfile.open(path, "r:*") as t:
                t.extractall(tmp, filter="data")  # no links out, no absolute paths, no devices
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputFileError(path, f"cannot be unpacked ({exc})", expected=f"the archive {archive.url} serves",
                             fix=f"Fix: delete it and run `dnr-sweep data fetch {spec.name} --root {root}`") from None  # fmt: skip
    unpacked = tmp / archive.folder
    if not unpacked.is_dir():
        raise InputFileError(path, f"holds no {archive.folder}/ folder", expected=f"the archive {archive.url} serves",
                             fix=f"Fix: delete it and run `dnr-sweep data fetch {spec.name} --root {root}`")  # fmt: skip
    _verify_folder(spec, unpacked, root)
    files.move(unpacked, root / archive.folder)


def ensure_named(dataset: str, root: str | Path, **kwargs) -> str:
    """:func:`ensure` by data set name (what a Ray task on another node is handed)."""
    return ensure(dataset_specs.get(dataset), root, **kwargs)


def prepare(data: object, *, mirror: str | None = None, progress: bool = True, log: Log = _stderr) -> str:
    """:func:`ensure` for a config's ``data:`` block (``dataset``, ``root``, ``download``, ``mirror``) on
    this machine, before anything trains (``run``, ``resume``, ``train``); ``mirror``: ``--mirror``."""
    spec = dataset_specs.get(data.dataset)  # type: ignore[attr-defined]
    if spec.archive is None:
        return "bundled"
    root = Path(data.root).expanduser()  # type: ignore[attr-defined]
    how = ensure(spec, root, download=data.download, progress=progress, log=log,  # type: ignore[attr-defined]
                 mirror=resolve_mirror(mirror, data.mirror))  # type: ignore[attr-defined]  # fmt: skip
    if how != "present":
        log(f"{spec.name}: {how}, verified, in {root / spec.archive.folder}")
    return how
