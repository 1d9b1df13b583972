"""``DNRTrainable``: Ray Tune's view of one DNR run, a thin adapter over :mod:`dnr_sweep.training.engine`.

- ``setup`` turns the trial's sampled values (dotted keys, e.g. ``{"dnr.density": 0.1}``) and the
  sweep's base config into a typed :class:`~dnr_sweep.config.RunConfig` and builds the run;
- ``step`` trains one epoch and returns one Tune result (:func:`dnr_sweep.foundation.run_contract.tune_result`:
  this epoch's figures under ``this_epoch/``, the selected epoch's figures at the top level, which
  searchers and schedulers read); on the last epoch the trial runs the finish step
  (:func:`dnr_sweep.training.finish.finish_run`: ``model.pt``, ``config.yaml``, ``metrics.json`` in the
  trial folder) and its result joins the final Tune result, with ``done``;
- checkpoints: ``step`` asks Tune for one (``should_checkpoint``) every ``tune.checkpoint_every``
  epochs, or with ``auto`` whenever the training time since the last one is 50 times the measured
  cost of saving one (serialising and copying to storage), so saving costs at most 2%.
  ``save_checkpoint``/``load_checkpoint`` carry the complete training state, compactly encoded
  (:meth:`DNRRun.state_dict`); the selected epoch's weights live beside the checkpoints in the trial
  folder (:class:`~dnr_sweep.artifacts.checkpoint.SelectedWeights`), written only when a checkpoint needs a
  selection not yet on disk, so a restored trial continues exactly;
- every epoch, before Tune sees its result, the trial rewrites its own record of its epochs,
  ``epochs.json`` (also carried in its checkpoints): Tune stages ``result.json`` on the driver and
  copies it to storage from time to time, so a driver that dies loses its newest lines, and the run's
  tables take those epochs from the record (:mod:`dnr_sweep.reports.load`);
- a finished trial leaves ``final_state.pt`` (its result only) and drops its ``selected/`` folder
  (``model.pt`` holds those weights); its end-of-trial checkpoint is a small marker: a finished
  trial never trains again, it only reports its result again if Tune restores it;
- the trial folder may be on any storage Ray Tune accepts (``--storage`` path or URI): files go
  through ``pyarrow.fs``; the finish step writes into a local folder that is then copied there;
- ``reset_config`` rebuilds the run in place, so Tune can reuse the actor.
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
from dnr_sweep.sweep import dashboard_metrics
from dnr_sweep.training.engine import DNRRun
from dnr_sweep.training.finish import finish_run

#: with ``checkpoint_every: auto``, saving may cost at most this fraction of the training time
AUTO_CHECKPOINT_BUDGET = 0.02


class DNRTrainable(tune.Trainable):
    """One DNR training run; one Tune iteration is one epoch.

    ``checkpoint_every`` and ``keep_checkpoints`` (``tune.checkpoint_every``/``keep_checkpoints``)
    are class attributes, set on the class Tune runs (:func:`dnr_sweep.sweep.tuner.make_trainable`).
    """

    checkpoint_every: int | str = "auto"
    keep_checkpoints: int = 2

    def setup(self, config: dict[str, Any], base: dict[str, Any] | None = None) -> None:
        if base is None:
            raise ValueError("DNRTrainable needs the sweep's base config: wrap it with tune.with_parameters(base=...)")
        # one "Checkpoint successfully created" line per epoch per trial floods the driver's terminal
        for name in ("ray.tune", "ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._base = RunConfig.model_validate(base)
        self._build(config)

    def _build(self, config: dict[str, Any]) -> None:
        run_config = run_config_from_flat(self._base, config)
        resources = self.trial_resources
        if run_config.train.num_threads is None:
            cpus = resources.required_resources.get("CPU", 1) if resources is not None else 1
            run_config.train.num_threads = max(1, int(math.floor(cpus)))
        self.run_config = run_config
        self.run = DNRRun(run_config)
        self.last_result: dict[str, Any] | None = None
        # the selected weights live beside the checkpoints only under Tune (a trial folder that
        # survives restores); a Trainable used by hand keeps them inside its checkpoints
        self._selected = checkpoint.SelectedWeights(self.trial_location) if self._storage is not None else None
        self._refs: list[int | None] = []  # selected epochs named by the newest checkpoints
        self._on_disk: set[int] = set()  # selected epochs written beside the checkpoints
        self._save_seconds: float | None = None  # the last checkpoint's cost, measured
        self._trained_since_save = 0.0  # training seconds since the last checkpoint
        self._epochs: list[dict[str, Any]] = []  # the trial's own epoch record (rc.TRIAL_EPOCHS_FILE)
        self._load_final_state()

    # ------------------------------------------------------------------------------------------
    # The trial folder

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

    def _finish(self) -> dict[str, Any]:
        """The finish step into the trial folder (through a local folder when it is remote)."""
        location = self.trial_location
        if location.local is not None:
            return finish_run(self.run, self.trial_dir)
        with files.private_folder("dnr-sweep-finish-") as tmp:
            result = finish_run(self.run, Path(tmp))
            storage.upload(Path(tmp), location)
        return result

    def _load_final_state(self) -> bool:
        """A trial that already finished (its final state is beside its model.pt) trains nothing again."""
        path = self.trial_location / rc.FINAL_STATE_FILE
        if not storage.is_file(path):
            return False
        self.last_result = checkpoint.load_from(path)["result"]
        return True

    # ------------------------------------------------------------------------------------------
    # Training

    def epoch_progress(self) -> Callable[[int, int], None] | None:
        """A per-batch callback ``(done, total)`` for the epoch about to run; none by default."""
        return None

    def step(self) -> dict[str, Any]:
        if self.last_result is not None:
            # restored from a checkpoint older than the trial's end (e.g. after the driver was
            # killed between the trial's end and Tune's next experiment snapshot): report it again
            return {**self.last_result, DONE: True}
        report = self.run.train_epoch(self.epoch_progress())
        self._record_epoch(report.epoch, report.metrics)
        final = self._finish() if report.final else None
        result = rc.tune_result(report.epoch, report.metrics, report.selected, final)
        if final is not None:
            self.last_result = result
            checkpoint.save_to({"result": result, "epochs": report.epoch}, self.trial_location / rc.FINAL_STATE_FILE)
            if self._selected is not None:
                self._selected.clear()  # model.pt holds the selected weights now
        else:
            self._trained_since_save += float(report.metrics["epoch_time_s"])
            result[SHOULD_CHECKPOINT] = self._checkpoint_due(report.epoch)
        result[DONE] = report.final
        dashboard_metrics.report_epoch(result, run=self.trial_dir.parent.name, trial_id=self.trial_id)
        return result

    def _record_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Rewrite the trial's epoch record, every epoch so far, before Tune sees the result: Tune's
        ``result.json`` is staged on the driver and copied to storage from time to time, so a driver
        that dies loses its newest lines, and a trial restored from a checkpoint never writes them again."""
        self._epochs = [e for e in self._epochs if e[rc.EPOCH_KEY] < epoch] + [{rc.EPOCH_KEY: epoch, **metrics}]
        storage.write_text(self.trial_location / rc.TRIAL_EPOCHS_FILE, json.dumps(self._epochs))

    def _checkpoint_due(self, epoch: int) -> bool:
        if self.checkpoint_every != "auto":
            return epoch % int(self.checkpoint_every) == 0
        if self._save_seconds is None:
            return True  # the first one measures what saving costs
        return self._trained_since_save * AUTO_CHECKPOINT_BUDGET >= self._save_seconds

    # ------------------------------------------------------------------------------------------
    # Checkpoints

    def save(self, checkpoint_dir: str | None = None) -> Any:
        """Tune's save (serialise, then copy to storage), timed for ``checkpoint_every: auto``."""
        start = time.perf_counter()
        # not super(): a subclass shipped by value to the workers (tests) holds its own copy of this class
        result = tune.Trainable.save(self, checkpoint_dir)
        self._save_seconds = time.perf_counter() - start
        self._trained_since_save = 0.0
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        path = Path(checkpoint_dir) / rc.TRIAL_STATE_FILE
        if self.last_result is not None:
            checkpoint.save({"finished": True}, path)  # final_state.pt has all a finished trial needs
            return
        if self._selected is None:
            checkpoint.save({"run": self.run.state_dict(), "epochs": self._epochs}, path)
            return
        epoch = self.run.selection.epoch
        if epoch is not None and epoch not in self._on_disk:
            self._selected.write(epoch, self.run.selected_state_dict())
            self._on_disk.add(epoch)
        # Tune keeps the newest `keep` checkpoints and drops the oldest only after this one is
        # persisted: the selections of the newest keep + 1 saves may still be needed
        self._refs = [*self._refs, epoch][-(int(self.keep_checkpoints) + 1) :]
        checkpoint.save({"run": self.run.state_dict(selected_weights=False), "selected_refs": list(self._refs),
                         "epochs": self._epochs}, path)  # fmt: skip
        needed = {e for e in self._refs if e is not None}
        self._selected.retain(needed)
        self._on_disk &= needed

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        if self._load_final_state():  # a finished trial never trains again
            return
        state = checkpoint.load(Path(checkpoint_dir) / rc.TRIAL_STATE_FILE)
        if state.get("finished"):
            raise FileNotFoundError(
                f"{self.trial_location / rc.FINAL_STATE_FILE}: this trial finished, but its final state is missing; "
                "its model.pt and metrics.json are its result"
            )
        run_state = state.get("run", state)  # a checkpoint of the older layout is the run's state itself
        epoch = run_state["selection"]["epoch"]
        selected = None
        if run_state.get("selected_state") is None and epoch is not None:
            if self._selected is None:
                raise ValueError("this checkpoint keeps its selected weights beside it in a trial folder; restore "
                                 "it through Tune")  # fmt: skip
            selected = self._selected.read(epoch)
        self.run.load_state_dict(run_state, selected_state=selected)
        self._refs = list(state.get("selected_refs", []))
        self._on_disk = {e for e in self._refs if e is not None}
        self._epochs = list(state.get("epochs", []))  # an older checkpoint holds no epoch record

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._build(new_config)
        return True

    def cleanup(self) -> None:
        self.run = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
