"""The one reader of Ray Tune's per-trial files: ``result.json`` (one JSON object per reported epoch) and
``params.json`` (the trial's sampled config), used by the report loader, ``dnr-sweep status`` and the
per-cell choice alike, so each meets a damaged or half-written file the same way.

A reader can meet a file while Tune writes it (the last line half-written) or after a crash cut it
short: such a line is skipped with a note naming the file and line; an unreadable file is no lines and
a note. The caller decides what a note becomes (a warning in a report, a line of ``status``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dnr_sweep.foundation import run_contract as rc


def trial_folders(run_dir: str | Path) -> list[Path]:
    """Sub-folders of the run that hold a Tune ``result.json``, sorted by name."""
    return sorted(p.parent for p in Path(run_dir).glob(f"*/{rc.TUNE_RESULT_FILE}"))


def read_result_lines(path: Path, *, max_lines: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """``result.json`` -> its complete JSON-object lines (at most ``max_lines``), and a note per line or
    file that could not be read. A missing file is ``([], [])``."""
    if not path.is_file():
        return [], []
    try:
        raw = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        return [], [f"{path}: cannot be read ({exc.strerror}); its trial is left out"]
    lines: list[dict[str, Any]] = []
    notes: list[str] = []
    for number, text in enumerate(raw, start=1):
        if max_lines is not None and len(lines) >= max_lines:
            break
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deeply to be a result
            last = all(not rest.strip() for rest in raw[number:])
            what = "a half-written last line: the writer is mid-line or a crash cut it short" if last else (
                f"unreadable line {number}"
            )  # fmt: skip
            notes.append(f"{path}:{number} is not a complete JSON line ({what}); skipped")
            continue
        if isinstance(value, dict):
            lines.append(value)
        else:
            notes.append(f"{path}:{number} is not a complete JSON line (not a JSON object); skipped")
    return lines, notes


def read_epoch_record(folder: Path) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """A sweep trial's own epoch record (:data:`run_contract.TRIAL_EPOCHS_FILE`) -> ``{epoch: this epoch's
    metrics}``, and a note when the file is there but cannot be read. A missing file is ``({}, [])``
    (folders written before the record existed, and trials Tune ran without a trial folder)."""
    path = folder / rc.TRIAL_EPOCHS_FILE
    if not path.is_file():
        return {}, []
    try:
        value = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except (OSError, json.JSONDecodeError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not readable JSON"
        return {}, [f"{path}: cannot be read ({why}); its epochs come from {rc.TUNE_RESULT_FILE} alone"]
    record: dict[int, dict[str, Any]] = {}
    entries = value if isinstance(value, list) else [None]
    for entry in entries:
        epoch = entry.get(rc.EPOCH_KEY) if isinstance(entry, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            return {}, [f"{path}: not a list of {{{rc.EPOCH_KEY!r}: n, ...}} objects; its epochs come from "
                        f"{rc.TUNE_RESULT_FILE} alone"]  # fmt: skip
        record[epoch] = {k: v for k, v in entry.items() if k != rc.EPOCH_KEY}
    return record, []


def first_trial_id(folder: Path) -> str | None:
    """The ``trial_id`` of a trial folder's first result line, or None when it has none."""
    lines, _ = read_result_lines(folder / rc.TUNE_RESULT_FILE, max_lines=1)
    return str(lines[0]["trial_id"]) if lines and "trial_id" in lines[0] else None


def read_params(folder: Path) -> dict[str, Any]:
    """A trial folder's ``params.json`` (its sampled config), or ``{}`` when missing or unreadable."""
    try:
        value = json.loads((folder / rc.TUNE_PARAMS_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
