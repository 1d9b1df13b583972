"""Whether a run folder can be resumed: Tune's state files are present, every pickle Tune would load from them
passes the allowlist of :mod:`dnr_sweep.sweep.tune_state`, and each experiment state has the shape Tune 2.60 writes
(:class:`~dnr_sweep.foundation.tune_schemas.ExperimentState`, read complete: a key of the wrong type or one Tune
never writes would break the restore inside Ray) with trials the sweep could have sampled."""

from __future__ import annotations

import fnmatch
import posixpath
from typing import Any

import pyarrow.fs as pafs

from dnr_sweep.config import SweepConfig
from dnr_sweep.config.load import run_config_from_flat
from dnr_sweep.foundation import reader, storage
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import ConfigError, InputFileError
from dnr_sweep.foundation.tune_schemas import ExperimentState, TrialState
from dnr_sweep.sweep import tune_state
from dnr_sweep.sweep.outcome import SweepError

TUNER_FILE = tune_state.TUNER_FILE
#: the name Tune records for the trainable of every dnr-sweep trial (:class:`~dnr_sweep.sweep.trainable.SweepTrainable`)
TRAINABLE_NAME = "SweepTrainable"
#: the names earlier versions of dnr-sweep recorded for the same trainable: their run folders resume too
EARLIER_TRAINABLE_NAMES = ("DNRTrainable",)
_EXPECTED_STATE = "Ray Tune's experiment state (JSON Tune wrote)"
_RESTORE = ("Restore the run folder from a backup, or start the sweep again into a new --name (finished trials' "
            "results stay readable with `dnr-sweep report`)")  # fmt: skip
_OTHER_VERSION = "; if another Ray version wrote it, resume it with that version"
#: the files of a run folder and of each trial folder that a resumed sweep reads or rewrites (dnr-sweep's and
#: Tune's): a folder in the place of one breaks the sweep inside Ray
RUN_FILES = (rc.CONFIG_FILE, rc.SWEEP_FILE, rc.DRIVER_END_FILE, rc.RESULTS_FILE, rc.EPOCHS_FILE)
TRIAL_FILES = (rc.TUNE_RESULT_FILE, rc.TUNE_PARAMS_FILE, "params.pkl", "progress.csv", rc.TUNE_ERROR_FILE,
               rc.TRIAL_EPOCHS_FILE, rc.CONFIG_FILE, rc.METRICS_FILE, rc.MODEL_FILE, rc.FINAL_STATE_FILE,
               rc.EXPORT_FILE, rc.EXPORT_SUMMARY_FILE, rc.EVALUATION_FILE, rc.ATTACK_STRENGTH_FILE)  # fmt: skip

#: what `resume` says about a folder whose state fails the allowlist (the trust model: docs/RELIABILITY_AND_SECURITY.md)
_UNTRUSTED = (
    "A run folder is code until proven otherwise: Tune unpickles these files, so resume loads only state "
    "whose every import and call is on dnr-sweep's allowlist of Tune's own state (dnr_sweep/sweep/tune_state.py). "
    "If this folder is not one a dnr-sweep run wrote, do not resume it; its finished trials stay readable with "
    "`dnr-sweep report`, which unpickles nothing. If you wrote it with another Ray or Optuna version, resume it "
    "with that version, or start the sweep again into a new --name"
)


def check_restorable(run_dir: storage.Where, config: SweepConfig | None = None) -> str:
    """Before Ray starts: the run folder (local or on remote storage) holds Tune state that
    ``Tuner.restore`` can read, every pickle Tune would load from it passes the allowlist of
    :mod:`dnr_sweep.sweep.tune_state` (nothing is unpickled here), and every experiment state has Tune's shape,
    with trials of dnr-sweep's trainable whose sampled values are the ``config`` sweep's (when given).
    Returns the name Tune recorded for the trainable (``Tuner.restore`` requires the same name).
    """
    names = storage.listdir(run_dir)
    states = sorted(name for name in names if fnmatch.fnmatch(name, rc.TUNE_STATE_GLOB))
    if TUNER_FILE not in names or not states:
        missing = TUNER_FILE if TUNER_FILE not in names else rc.TUNE_STATE_GLOB
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
    # Tune reads the newest; a hostile older one must not become the newest later
    checked = [_check_state(base / name, config) for name in states]
    folders = [base / trial.relative_logdir for trial, _ in checked[-1].trial_data if trial.relative_logdir]
    for folder, names in ((base, RUN_FILES), *((folder, TRIAL_FILES) for folder in folders)):
        for name in sorted(_subfolders(folder) & set(names)):
            raise InputFileError(folder / name, "is a folder, not a file", expected="the file the sweep keeps there",
                                 fix="Move that folder out of the run folder (resume writes or reads this file), "
                                     "then resume again")  # fmt: skip
    return checked[-1].trial_data[0][0].trainable_name


def _subfolders(folder: storage.Location) -> set[str]:
    """The names of the folders directly inside ``folder`` (one listing, also on remote storage)."""
    infos = folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True, recursive=False))
    return {posixpath.basename(info.path) for info in infos if info.type == pafs.FileType.Directory}


def _check_state(location: storage.Location, config: SweepConfig | None) -> ExperimentState:
    """One experiment state: readable JSON, its pickles on the allowlist, then its shape and its trials."""
    raw, problem = _read(location)
    if problem is None:
        try:
            document = reader.document(raw or b"")
        except reader.Unreadable as exc:
            problem = str(exc)
        else:
            problem = _embedded_problem(document)
    if problem:
        fix = _UNTRUSTED if "pickle" in problem else _RESTORE
        raise InputFileError(location, problem, expected=_EXPECTED_STATE, fix=fix)
    state = reader.parse_strict(raw or b"", ExperimentState, source=location, expected=_EXPECTED_STATE,
                                fix=_RESTORE + _OTHER_VERSION, complete=True)  # fmt: skip
    if not state.trial_data:
        raise InputFileError(location, "lists no trial: the sweep stopped before Tune created one",
                             expected=_EXPECTED_STATE, fix="Start the sweep again into a new --name")  # fmt: skip
    seen: set[str] = set()
    first = state.trial_data[0][0].trainable_name
    for index, (trial, _) in enumerate(state.trial_data):
        problem = f"repeats trial {trial.trial_id}" if trial.trial_id in seen else _trial_problem(trial, config)
        if problem is None and trial.trainable_name != first:  # Tune restores every trial with one trainable
            problem = f"trains {trial.trainable_name!r}, where trial_data[0] trains {first!r}"
        seen.add(trial.trial_id)
        if problem:
            raise InputFileError(location, f"field trial_data[{index}][0] (trial {trial.trial_id}) {problem}",
                                 expected=_EXPECTED_STATE, fix=_RESTORE)  # fmt: skip
    return state


def _trial_problem(trial: TrialState, config: SweepConfig | None) -> str | None:
    """Why the trial is not one of this sweep's (the trainable Tune would run, its sampled values), or None."""
    if trial.trainable_name not in (TRAINABLE_NAME, *EARLIER_TRAINABLE_NAMES):
        return f"trains {trial.trainable_name!r}, not dnr-sweep's {TRAINABLE_NAME}"
    if config is None:
        return None
    sampled, searched = set(trial.config), set(config.search)
    if sampled != searched:
        return (f"holds the sampled values {sorted(sampled)}, where the sweep searches {sorted(searched)}; a trial "
                "restored with them would train another configuration")  # fmt: skip
    try:
        run_config_from_flat(config.base_run(), trial.config)
    except ConfigError as exc:
        return f"holds sampled values the sweep's config refuses ({exc.messages[0]})"
    return None


def _read(location: storage.Location) -> tuple[bytes | None, str | None]:
    try:
        if storage.is_dir(location):
            return None, "is a folder, not a file"
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
