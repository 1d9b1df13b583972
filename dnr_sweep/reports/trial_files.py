"""Ray Tune's per-trial files, read through :mod:`dnr_sweep.foundation.reader` with their schemas: ``result.json``
(one JSON object per reported epoch), ``params.json`` (the trial's sampled config) and the trial's own epoch record
(``epochs.json``), for the report loader, ``dnr-sweep status`` and the per-cell choice alike, so each meets a
damaged or half-written file the same way.

A reader can meet a file while Tune writes it (the last line half-written) or after a crash cut it short: such a
line is skipped with a note naming the file and line; a figure of the wrong type or out of its range is left out
of its line with a note naming it; an unreadable file is no lines and a note. The caller decides what a note
becomes (a warning in a report, a line of ``status``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnr_sweep.foundation import reader
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.schemas import EpochRecord
from dnr_sweep.foundation.tune_schemas import ResultLine, TrialParams


def trial_folders(run_dir: str | Path) -> list[Path]:
    """Sub-folders of the run that hold a Tune ``result.json``, sorted by name."""
    return sorted(p.parent for p in Path(run_dir).glob(f"*/{rc.TUNE_RESULT_FILE}"))


def read_result_lines(path: Path, *, max_lines: int | None = None,
                      tail: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """``result.json`` -> its JSON-object lines as dicts (at most the first ``max_lines``, or the last ``tail``),
    each figure checked (:class:`~dnr_sweep.foundation.tune_schemas.ResultLine`), and a note per line, figure
    or file that could not be used. A missing file is ``([], [])``."""
    lines, notes = reader.read_lines(path, ResultLine, max_lines=max_lines, tail=tail)
    return [line.as_dict() for line in lines], notes


def read_epoch_record(folder: Path) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """A sweep trial's own epoch record (:data:`run_contract.TRIAL_EPOCHS_FILE`) -> ``{epoch: this epoch's
    metrics}``, and a note when the file is there but is not a record the trial wrote (unreadable, another
    shape, an unknown figure, a value of the wrong kind or out of range, an epoch outside [1, MAX_EPOCHS]): then
    none of it is used. A missing file is ``({}, [])`` (folders written before the record existed)."""
    path = folder / rc.TRIAL_EPOCHS_FILE
    fallback = f"its epochs come from {rc.TUNE_RESULT_FILE} alone"
    record, notes = reader.read_lenient(path, EpochRecord, unusable=fallback, prune=False)
    if record is None:
        return {}, notes
    return {entry.epoch: {k: v for k, v in entry.as_dict().items() if k != rc.EPOCH_KEY} for entry in record.root}, []


def first_trial_id(folder: Path) -> str | None:
    """The ``trial_id`` of a trial folder's first result line, or None when it has none."""
    lines, _ = read_result_lines(folder / rc.TUNE_RESULT_FILE, max_lines=1)
    return str(lines[0]["trial_id"]) if lines and "trial_id" in lines[0] else None


def read_params(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """A trial folder's ``params.json`` (its sampled config), ``{}`` when missing or unreadable, and the notes."""
    params, notes = reader.read_lenient(folder / rc.TUNE_PARAMS_FILE, TrialParams, unusable="its values are left out")
    return (dict(params.root) if params is not None else {}), notes
