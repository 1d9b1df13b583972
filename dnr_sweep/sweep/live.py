"""The live report: ``results.parquet``, ``epochs.parquet`` and ``report/`` refreshed while a sweep runs.

A Tune callback in the driver. It refreshes after each finished (or failed) trial and otherwise at
most once every ``report.live_every_s`` seconds, and never spends more than about
:data:`MAX_SHARE` of the driver's time on it: a refresh that took ``t`` seconds waits at least
``t / MAX_SHARE`` before the next timed one. Every file is replaced atomically, so a reader (a
browser, ``dnr-sweep status``, a notebook) sees the previous or the new version, never half a file.
``index.html`` says "live, N of M trials finished, updated HH:MM" and reloads itself; at the end of
the sweep the final report replaces it ("final").

A refresh that cannot be drawn (e.g. no trial has finished yet, or a report setting is wrong) is
logged and skipped; the sweep never stops for its live report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from dnr_sweep.config import SweepConfig
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import storage
from dnr_sweep.reports.build import build_report
from dnr_sweep.reports.html import PageStatus
from dnr_sweep.reports.load import write_parquet_atomic
from dnr_sweep.sweep.outcome import outcome_from_trials
from dnr_sweep.sweep.results import assemble_tables

logger = logging.getLogger(__name__)

#: the largest share of the driver's wall time the live report may take
MAX_SHARE = 0.05


class LiveReport(Callback):
    """Refreshes the run folder's tables and report while the sweep runs (see the module docstring)."""

    def __init__(self, config: SweepConfig, run_dir: Any, *, clock=time.monotonic) -> None:
        self.every_s = config.report.live_every_s
        self.total = config.grid_size()
        self.run_dir = run_dir if isinstance(run_dir, storage.Location) else storage.locate(str(run_dir))
        self.clock = clock
        self.next_at = clock() + self.every_s
        self.spent_s = 0.0
        self.refreshes = 0

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.clock() >= self.next_at:
            self.refresh(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.refresh(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.refresh(trials)

    def refresh(self, trials: list) -> None:
        """Write the tables and the live report now; schedule the next timed refresh."""
        start = self.clock()
        self.write(trials)
        spent = self.clock() - start
        self.spent_s += spent
        self.refreshes += 1
        self.next_at = self.clock() + max(self.every_s, spent / MAX_SHARE)

    def write(self, trials: list) -> None:
        """The tables and the live report for the trials as they stand."""
        outcome = outcome_from_trials(trials, self.run_dir)
        outcome.errors = {}  # only read at the end of the sweep
        with storage.staged(self.run_dir) as folder:  # remote storage: small files copied here and back
            self._write_in(folder, outcome, trials)

    def _write_in(self, folder: Path, outcome: Any, trials: list) -> None:
        results, epochs = assemble_tables(outcome, folder)
        write_parquet_atomic(results, folder / rc.RESULTS_FILE)
        if len(epochs):
            write_parquet_atomic(epochs, folder / rc.EPOCHS_FILE)
        finished = sum(trial.status == "TERMINATED" for trial in trials)
        total = max(self.total, len(trials))
        status = PageStatus(
            f"live, {finished} of {total} trials finished, updated {time.strftime('%H:%M')}",
            refresh_s=max(10, int(self.every_s)),
        )
        try:
            build_report(folder, status=status)
        except (ValueError, FileNotFoundError) as exc:
            logger.info("live report not drawn yet: %s", exc)
