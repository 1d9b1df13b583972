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
from dnr_sweep.foundation.bounds import MAX_EPOCHS


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


def _record_value_ok(key: str, value: Any) -> bool:
    """A figure of the epoch record as the trial writes it: a contract epoch metric or layer density, a number
    (``phase``: one of the contract's phase names)."""
    if key == "phase":
        return value in rc.PHASES
    known = key in rc.EPOCH_METRICS or rc.is_layer_metric(key)
    return known and isinstance(value, int | float) and not isinstance(value, bool)


def read_epoch_record(folder: Path) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """A sweep trial's own epoch record (:data:`run_contract.TRIAL_EPOCHS_FILE`) -> ``{epoch: this epoch's
    metrics}``, and a note when the file is there but is not a record the trial wrote (unreadable, another
    shape, an unknown figure or a value of the wrong kind, an epoch outside [1, MAX_EPOCHS]): then none of it
    is used. A missing file is ``({}, [])`` (folders written before the record existed)."""
    path = folder / rc.TRIAL_EPOCHS_FILE
    if not path.is_file():
        return {}, []
    fallback = f"its epochs come from {rc.TUNE_RESULT_FILE} alone"
    try:
        value = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except (OSError, json.JSONDecodeError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not readable JSON"
        return {}, [f"{path}: cannot be read ({why}); {fallback}"]
    record: dict[int, dict[str, Any]] = {}
    for entry in value if isinstance(value, list) else [None]:
        epoch = entry.get(rc.EPOCH_KEY) if isinstance(entry, dict) else None
        valid = isinstance(epoch, int) and not isinstance(epoch, bool) and 1 <= epoch <= MAX_EPOCHS
        figures = {k: v for k, v in entry.items() if k != rc.EPOCH_KEY} if valid else {}
        if not valid or not all(_record_value_ok(k, v) for k, v in figures.items()):
            return {}, [f"{path}: not the record a trial writes (a list of {{{rc.EPOCH_KEY!r}: 1..{MAX_EPOCHS}, "
                        f"epoch metric: number}} objects); {fallback}"]  # fmt: skip
        record[epoch] = figures
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
