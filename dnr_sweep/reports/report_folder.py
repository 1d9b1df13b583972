"""The folder a report is written into, and what the report may write over there.

A report leaves a manifest, :data:`~dnr_sweep.foundation.run_contract.REPORT_MANIFEST_FILE`: its kind (the
``report`` of one run or a ``comparison`` of several), the runs, and every file it writes. That manifest is
the only proof that a file in a folder is an earlier report's, so before anything is drawn :func:`claim`
decides:

- a new or empty folder is taken as it is;
- a run's own ``RUN_DIR/report`` is that run's report: drawn again without ``--force`` (``dnr-sweep report
  RUN_DIR``, the live report) unless its manifest says it holds something else; one written before
  manifests existed counts as the run's report;
- any other folder is drawn again without ``--force`` only when its manifest names the same report (kind
  and runs); ``--force`` replaces any earlier report;
- a file the report writes replaces only a file the manifest lists: a file of the same name that no
  manifest lists is never written over, with or without ``--force``; a folder that holds files and no
  manifest is not a report folder. Nothing is ever written through a link (:mod:`dnr_sweep.foundation.files`).

The manifest is written, naming what will be written, before the first file: a report cut short still
owns what it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from dnr_sweep.foundation import files, reader
from dnr_sweep.foundation.errors import PathError
from dnr_sweep.foundation.run_contract import REPORT_DIR, REPORT_MANIFEST_FILE
from dnr_sweep.foundation.schemas import ReportManifest

KINDS = ("report", "comparison")


class ReportFolderError(PathError, ValueError):
    """The report's folder cannot be written as asked; the message says why and what to do."""


def table_files(stem: str) -> tuple[str, str]:
    """The files a table is written as: CSV and LaTeX."""
    return f"{stem}.csv", f"{stem}.tex"


def is_own_report_folder(out: Path, run_dir: Path) -> bool:
    """Whether ``out`` is ``run_dir``'s own report folder (``RUN_DIR/report``)."""
    return Path(out) == Path(run_dir) / REPORT_DIR


def _read_manifest(path: Path) -> dict | None:
    """The manifest at ``path``, or ``None`` when it is not one dnr-sweep wrote (not JSON, wrong fields)."""
    manifest, _ = reader.read_lenient(path, ReportManifest, unusable="not a report's manifest", prune=False)
    return manifest.model_dump() if manifest is not None else None


def _describe(manifest: dict) -> str:
    runs = ", ".join(manifest["runs"]) or "no run"
    return f"the report of {runs}" if manifest["kind"] == "report" else f"a comparison of {runs}"


def claim(out: Path, *, kind: str, runs: Sequence[Path], names: Iterable[str], force: bool, own: bool) -> Path:
    """Take ``out`` for a report of ``kind`` over ``runs`` that writes the files ``names`` (see the module
    docstring for the rules); create it and write its manifest. ``own``: ``out`` is the run's own ``report/``.

    Raises:
        ReportFolderError: the folder holds something else (without ``force``), files no report wrote, a
            file of a report's name that no manifest lists, or a link where the report writes.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}; valid: {', '.join(KINDS)}")
    out, names = Path(out), sorted(set(names))
    try:
        for name in (REPORT_MANIFEST_FILE, *names):  # a link at the folder, on its way or at a name: refused now
            files.check_target(out / name)
    except PathError as exc:
        raise ReportFolderError(str(exc)) from None
    present = {p.name for p in out.iterdir()} if out.is_dir() else set()
    manifest = _read_manifest(out / REPORT_MANIFEST_FILE) if REPORT_MANIFEST_FILE in present else None
    present.discard(REPORT_MANIFEST_FILE)
    run_names = sorted(str(run) for run in runs)
    if manifest is not None:
        same = manifest["kind"] == kind and (own or sorted(manifest["runs"]) == run_names)
        if not same and not force:
            raise ReportFolderError(f"{out}: holds {_describe(manifest)}; pass --force to replace it (only the files "
                                    "its manifest lists are written over), or choose another --out")  # fmt: skip
        earlier = set(manifest["files"])
    elif own or not present:
        earlier = present  # empty, or a run's report/ from before manifests: all of it is the run's report
    else:
        shown = ", ".join(sorted(present)[:5]) + (", ..." if len(present) > 5 else "")
        raise ReportFolderError(f"{out}: holds files no dnr-sweep report wrote ({shown}; no {REPORT_MANIFEST_FILE}); "
                                "choose a new or empty --out folder")  # fmt: skip
    clash = [name for name in names if name in present and name not in earlier]
    if clash:
        raise ReportFolderError(f"{out / clash[0]}: not written by an earlier report ({REPORT_MANIFEST_FILE} does not "
                                "list it); dnr-sweep does not write over it, even with --force. Move it away or choose "
                                "another --out")  # fmt: skip
    listed = sorted((earlier & present) | set(names))
    text = json.dumps({"kind": kind, "runs": run_names, "files": listed}, indent=1) + "\n"
    files.make_folder(out, "--out")
    files.write_text(out / REPORT_MANIFEST_FILE, text)
    return out
