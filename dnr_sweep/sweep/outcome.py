"""What a sweep ends in: :class:`SweepOutcome` (where the run is, each trial's status, sampled config and
error line) read from Tune's trials, and :class:`SweepError` for a sweep that cannot start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnr_sweep.foundation import storage as storage_
from dnr_sweep.foundation.errors import UserError


class SweepError(UserError, RuntimeError):
    """A sweep cannot start (bad resources, bad run folder); the message says how to fix it."""


@dataclass
class SweepOutcome:
    """What the caller needs after ``Tuner.fit``: where the run is and what went wrong."""

    run_dir: storage_.Location
    errors: dict[str, str] = field(default_factory=dict)  # trial id -> error summary
    statuses: dict[str, str] = field(default_factory=dict)  # trial id -> Tune status
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial id -> sampled dotted values
    interrupted: bool = False


def outcome_from_grid(result_grid: Any, run_dir: storage_.Location) -> SweepOutcome:
    """The outcome of ``Tuner.fit``'s ``ResultGrid``.

    Reads the grid's private ``_experiment_analysis.trials``, and only here: the public
    ``ResultGrid`` (its ``Result`` items, ``num_errors``, ``num_terminated``) has no trial id for a trial
    that failed or waited before its first report (its ``Result.metrics`` is empty) and no per-trial
    status (PENDING, PAUSED, ERROR), and both end up in the results table. The public route to the
    ``Trial`` objects, a ``Callback``'s ``on_experiment_end``, does not reach a restored sweep: Tune
    restores the callbacks pickled with the run and takes no new ones. ``getattr`` with defaults: a Ray
    without the attribute gives an empty outcome, not a crash.
    """
    trials = getattr(getattr(result_grid, "_experiment_analysis", None), "trials", None) or []
    return outcome_from_trials(trials, run_dir)


def outcome_from_trials(trials: Any, run_dir: Any) -> SweepOutcome:
    """Statuses, sampled configs and error lines of Tune's trials (during or after ``fit``)."""
    outcome = SweepOutcome(run_dir=run_dir)
    for trial in trials:
        outcome.statuses[trial.trial_id] = trial.status
        outcome.configs[trial.trial_id] = dict(trial.config)
        if trial.status == "ERROR":
            text = ""
            if trial.error_file and Path(trial.error_file).is_file():
                lines = Path(trial.error_file).read_text(errors="replace").strip().splitlines()
                text = lines[-1] if lines else ""
            outcome.errors[trial.trial_id] = text or "failed (see its error.txt)"
        elif trial.status != "TERMINATED":
            outcome.interrupted = True  # after fit; while it runs, such trials are simply not done yet
    return outcome
