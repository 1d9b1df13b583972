"""Whether a run folder can be resumed: Tune's state files are present and every pickle Tune would load from
them passes the allowlist of :mod:`dnr_sweep.sweep.tune_state`."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from dnr_sweep.foundation import storage
from dnr_sweep.foundation.errors import InputFileError
from dnr_sweep.sweep import tune_state
from dnr_sweep.sweep.outcome import SweepError

TUNER_FILE = tune_state.TUNER_FILE
EXPERIMENT_STATE_GLOB = tune_state.EXPERIMENT_STATE_GLOB

#: what `resume` says about a folder whose state fails the allowlist (the trust model: docs/RELIABILITY_AND_SECURITY.md)
_UNTRUSTED = (
    "A run folder is code until proven otherwise: Tune unpickles these files, so resume loads only state "
    "whose every import and call is on dnr-sweep's allowlist of Tune's own state (dnr_sweep/sweep/tune_state.py). "
    "If this folder is not one a dnr-sweep run wrote, do not resume it; its finished trials stay readable with "
    "`dnr-sweep report`, which unpickles nothing. If you wrote it with another Ray or Optuna version, resume it "
    "with that version, or start the sweep again into a new --name"
)


def check_restorable(run_dir: storage.Where) -> None:
    """Before Ray starts: the run folder (local or on remote storage) holds Tune state that
    ``Tuner.restore`` can read, and every pickle Tune would load from it passes the allowlist of
    :mod:`dnr_sweep.sweep.tune_state` (nothing is unpickled here).
    """
    names = storage.listdir(run_dir)
    states = sorted(name for name in names if fnmatch.fnmatch(name, EXPERIMENT_STATE_GLOB))
    if TUNER_FILE not in names or not states:
        missing = TUNER_FILE if TUNER_FILE not in names else EXPERIMENT_STATE_GLOB
        raise SweepError(
            f"{run_dir}: no Ray Tune experiment to resume (no {missing}): the sweep stopped before Tune saved "
            f"its state, or this is not a sweep's run folder (a `dnr-sweep train` folder continues with "
            f"`dnr-sweep train CONFIG --out DIR --resume`). Start the sweep again into a new --name"
        )
    base = storage.as_location(run_dir)
    for name in tune_state.state_files(run_dir):
        data, problem = _read(base / name)
        problem = problem or tune_state.problem_of_pickle(data)
        if problem:
            expected = "Ray Tune's saved Tuner" if name == TUNER_FILE else "Ray Tune's saved search state"
            raise InputFileError(base / name, problem, expected=f"{expected} (a pickle Tune wrote)", fix=_UNTRUSTED)
    for name in states:  # Tune reads the newest; a hostile older one must not become the newest later
        raw, problem = _read(base / name)
        if problem is None:
            try:
                state = json.loads(raw.decode("utf-8"))  # type: ignore[union-attr]
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                problem = "is not readable JSON (corrupt or truncated)"
            else:
                if not (isinstance(state, dict) and {"runner_data", "trial_data"} <= set(state)):
                    problem = "is JSON without Tune's runner_data and trial_data"
                else:
                    problem = _embedded_problem(state)
        if problem:
            fix = _UNTRUSTED if "pickle" in problem else (
                "Restore the run folder from a backup, or start the sweep again into a new --name (finished "
                "trials' results stay readable with `dnr-sweep report`)")  # fmt: skip
            raise InputFileError(base / name, problem, expected="Ray Tune's experiment state (JSON Tune wrote)",
                                 fix=fix)  # fmt: skip


def _read(location: storage.Location) -> tuple[bytes | None, str | None]:
    try:
        return storage.read_bytes(location), None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"


def _embedded_problem(state: Any) -> str | None:
    """Why one of the pickles Tune embeds in its JSON state may not be loaded, or ``None``."""
    for where, data in tune_state.pickles_in_json_state(state):
        problem = tune_state.problem_of_pickle(data)
        if problem:
            return f"holds an embedded pickle that {problem}; it is at {where}"
    return None
