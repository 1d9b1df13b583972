"""``SweepTrainable``: Ray Tune's view of one training run (DNR or a baseline), a thin adapter over the run's lifecycle.

The epochs, their record, the checkpoints' state and the selected weights beside them, and the finish
step are :class:`~dnr_sweep.training.lifecycle.RunLifecycle`'s, the same as ``dnr-sweep train``'s. One Tune
iteration is one epoch; what is Tune's own stays here:

- the result (:func:`dnr_sweep.foundation.run_contract.tune_result`): this epoch's figures under
  ``this_epoch/``, the selected epoch's at the top level; the last epoch's joins the run's final result;
- when to checkpoint (``should_checkpoint``): every ``tune.checkpoint_every`` epochs, or with ``auto`` once
  the training since the last checkpoint is 50 times what saving one cost (so saving costs at most 2%);
- the epoch record is rewritten every epoch as ``epochs.json``: Tune's driver-staged ``result.json``
  loses its newest lines when the driver dies (:mod:`dnr_sweep.reports.load` reads the record);
- a finished trial leaves ``final_state.pt`` (its result) and drops ``selected/`` (``model.pt`` holds those
  weights); its later checkpoints are a small marker, and restored, it only reports its result again;
- the trial folder may be on any storage Tune accepts: the finish step writes into a local folder copied
  there; before its first epoch a trial catches up with its newest checkpoint (:mod:`dnr_sweep.sweep.catch_up`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune.result import DONE, SHOULD_CHECKPOINT

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import RunConfig, run_config_from_flat
from dnr_sweep.foundation import files, storage
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import UserError
from dnr_sweep.sweep import dashboard_metrics
from dnr_sweep.sweep.catch_up import catch_up, config_digest
from dnr_sweep.training.engine import EpochReport, TrainingRun
from dnr_sweep.training.lifecycle import RunLifecycle

#: with ``checkpoint_every: auto``, saving may cost at most this fraction of the training time
AUTO_CHECKPOINT_BUDGET = 0.02


class SweepTrainable(tune.Trainable):
    """One DNR training run; one Tune iteration is one epoch.

    ``checkpoint_every`` and ``keep_checkpoints`` (``tune.checkpoint_every``/``keep_checkpoints``)
    are class attributes, set on the class Tune runs (:func:`dnr_sweep.sweep.tuner.make_trainable`).
    """

    checkpoint_every: int | str = "auto"
    keep_checkpoints: int = 2

    def setup(self, config: dict[str, Any], base: dict[str, Any] | None = None) -> None:
        if base is None:
            raise ValueError(
                "SweepTrainable needs the sweep's base config: wrap it with tune.with_parameters(base=...)"
            )
        # one "Checkpoint successfully created" line per epoch per trial floods the driver's terminal
        for name in ("ray.tune", "ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._base = RunConfig.model_validate(base)
        self.reset_config(config)

    def step(self) -> dict[str, Any]:
        if self._may_be_behind:
            self._catch_up()
        if self.last_result is not None:  # restored from a checkpoint older than the trial's end: report it again
            return {**self.last_result, DONE: True}
        report = self.life.train_epoch(self.epoch_progress())
        # before Tune sees the result: a driver that dies loses the newest lines of its result.json
        storage.write_text(self.trial_location / rc.TRIAL_EPOCHS_FILE, json.dumps(self.life.epochs))
        if report.final:
            result = self._finish(report)
        else:
            result = rc.tune_result(report.epoch, report.metrics, report.selected, None)
            result[SHOULD_CHECKPOINT] = self._checkpoint_due(report)
        result[DONE] = report.final
        dashboard_metrics.report_epoch(result, run=self.trial_dir.parent.name, trial_id=self.trial_id)
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        path = Path(checkpoint_dir) / rc.TRIAL_STATE_FILE
        if self.last_result is not None:
            checkpoint.save({"finished": True}, path)  # final_state.pt has all a finished trial needs
        elif self.life.selected is None:  # a Trainable used by hand, outside Tune
            self.life.save(path)
        else:
            self.life.save(path, config_sha256=self._config_digest, time_total_s=float(self._time_total))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        if self._load_final_state():  # a finished trial never trains again
            return
        state = checkpoint.load(Path(checkpoint_dir) / rc.TRIAL_STATE_FILE)
        if state.get("finished"):
            raise FileNotFoundError(
                f"{self.trial_location / rc.FINAL_STATE_FILE}: this trial finished, but its final state is missing; "
                "its model.pt and metrics.json are its result"
            )
        self.life.load(state)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Build the run for the trial's sampled values (dotted keys, e.g. ``{"dnr.density": 0.1}``) in place,
        so Tune can reuse the actor."""
        run_config = run_config_from_flat(self._base, new_config)
        if run_config.train.num_threads is None:
            resources = self.trial_resources
            cpus = resources.required_resources.get("CPU", 1) if resources is not None else 1
            run_config.train.num_threads = max(1, int(math.floor(cpus)))
        # the selected weights live beside the checkpoints only under Tune (a trial folder that survives
        # restores); a Trainable used by hand keeps them inside its checkpoints. Tune drops its oldest
        # checkpoint only after the newest is persisted: keep + 1 of them may still be loaded
        folder = self.trial_location if self._storage is not None else None
        self.life = RunLifecycle(run_config, folder, kept=int(self.keep_checkpoints) + 1)
        self.last_result: dict[str, Any] | None = None
        self._save_seconds: float | None = None  # the last checkpoint's cost, measured
        self._trained_since_save = 0.0  # training seconds since the last checkpoint
        self._config_digest = config_digest(run_config)
        self._may_be_behind = True  # until _catch_up has looked for newer checkpoints on storage
        self._load_final_state()
        return True

    def cleanup(self) -> None:
        self.life = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------------------
    # The trial folder

    @property
    def run(self) -> TrainingRun:
        """The run the trial trains."""
        return self.life.run

    @property
    def trial_location(self) -> storage.Location:
        """The trial's folder in the run folder, on Tune's storage (shared storage on a cluster)."""
        if self._storage is not None:
            return storage.Location(self._storage.storage_filesystem, self._storage.trial_fs_path)
        return storage.locate(self.logdir)

    @property
    def trial_dir(self) -> Path:
        """A local folder for the trial's files: the trial folder itself on POSIX storage, else this
        worker's local folder for the trial (files the finish step writes are copied to storage)."""
        local = self.trial_location.local
        path = local if local is not None else Path(self.logdir)
        files.make_folder(path)
        return path

    def epoch_progress(self) -> Callable[[int, int], None] | None:
        """A per-batch callback ``(done, total)`` for the epoch about to run; none by default."""
        return None

    def _finish(self, report: EpochReport) -> dict[str, Any]:
        """The finish step into the trial folder (through a local folder when it is remote); the final result,
        kept as the trial's final state."""
        location = self.trial_location
        if location.local is not None:
            final = self.life.finish(self.trial_dir)
        else:
            with files.private_folder("dnr-sweep-finish-") as tmp:
                final = self.life.finish(Path(tmp))
                storage.upload(Path(tmp), location)
        self.last_result = rc.tune_result(report.epoch, report.metrics, report.selected, final)
        checkpoint.save_to({"result": self.last_result, "epochs": report.epoch}, location / rc.FINAL_STATE_FILE)
        if self.life.selected is not None:
            self.life.selected.clear()  # model.pt holds the selected weights now
        return dict(self.last_result)

    def _load_final_state(self) -> bool:
        """A trial that already finished (its final state is beside its model.pt) trains nothing again."""
        path = self.trial_location / rc.FINAL_STATE_FILE
        if not storage.is_file(path):
            return False
        self.last_result = checkpoint.load_from(path)["result"]
        return True

    # ------------------------------------------------------------------------------------------
    # Tune's checkpoint timing and restore

    def _checkpoint_due(self, report: EpochReport) -> bool:
        self._trained_since_save += float(report.metrics["epoch_time_s"])
        if self.checkpoint_every != "auto":
            return report.epoch % int(self.checkpoint_every) == 0
        if self._save_seconds is None:
            return True  # the first one measures what saving costs
        return self._trained_since_save * AUTO_CHECKPOINT_BUDGET >= self._save_seconds

    def save(self, checkpoint_dir: str | None = None) -> Any:
        """Tune's save (serialise, then copy to storage), timed for ``checkpoint_every: auto``."""
        start = time.perf_counter()
        # not super(): a subclass shipped by value to the workers (tests) holds its own copy of this class
        result = tune.Trainable.save(self, checkpoint_dir)
        self._save_seconds = time.perf_counter() - start
        self._trained_since_save = 0.0
        return result

    def restore(self, checkpoint_path: Any) -> None:
        """Tune's restore from the checkpoint its experiment state names, then :meth:`_catch_up`. That checkpoint
        may be unloadable where a newer one is not: its selected weights go once the newer checkpoints no
        longer need them."""
        try:
            tune.Trainable.restore(self, checkpoint_path)  # not super(): see save()
        except (OSError, ValueError, UserError):
            if not self._catch_up():
                raise
            return
        self._catch_up()

    def _catch_up(self) -> bool:
        """Continue from the trial's newest loadable checkpoint on storage when it is ahead of the run
        (:func:`dnr_sweep.sweep.catch_up.catch_up`); whether it did."""
        self._may_be_behind = False
        if self.last_result is not None or self.life.selected is None:
            return False  # finished, or not under Tune
        found = catch_up(self.life, self.trial_location, self.trial_name, self._config_digest)
        if found is None:
            return False
        folder, state = found
        self._iteration = self.run.epoch  # one Tune iteration per epoch
        self._time_total = float(state.get("time_total_s", self._time_total))
        logging.getLogger(__name__).warning(
            "trial %s continues from epoch %d (%s), newer than the checkpoint Tune's state named",
            self.trial_id, self.run.epoch, folder)  # fmt: skip
        return True
