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
- a killed driver costs at most the epoch in flight: Tune snapshots its experiment state every 10 s or so,
  so after ``resume`` it may restore a trial from an older checkpoint than the trial wrote, or start a trial
  created after its last snapshot afresh (in a new folder); before its first epoch a trial continues from
  its newest loadable checkpoint on storage instead (its own folder's, or its earlier folder's with the
  same trial id and config), when that one is ahead (:meth:`DNRTrainable._catch_up`);
- a finished trial leaves ``final_state.pt`` (its result only) and drops its ``selected/`` folder
  (``model.pt`` holds those weights); its end-of-trial checkpoint is a small marker: a finished
  trial never trains again, it only reports its result again if Tune restores it;
- the trial folder may be on any storage Ray Tune accepts (``--storage`` path or URI): files go
  through ``pyarrow.fs``; the finish step writes into a local folder that is then copied there;
- ``reset_config`` rebuilds the run in place, so Tune can reuse the actor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch
from ray import tune
from ray.tune.result import DONE, SHOULD_CHECKPOINT

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import RunConfig, run_config_from_flat
from dnr_sweep.foundation import files, storage
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import UserError
from dnr_sweep.sweep import dashboard_metrics
from dnr_sweep.training.engine import DNRRun
from dnr_sweep.training.finish import finish_run

#: with ``checkpoint_every: auto``, saving may cost at most this fraction of the training time
AUTO_CHECKPOINT_BUDGET = 0.02


def config_digest(config: RunConfig) -> str:
    """SHA-256 of a run config as JSON: which checkpoints belong to the same trial configuration."""
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def newest_checkpoints(trial: storage.Location, trial_name: str) -> list[storage.Location]:
    """Checkpoint folders of trial ``trial_name`` newest first (by their state file's time): those in its
    folder ``trial``, and those in the run folder's other folders of the same trial name (a trial Tune
    created again after a resume, its id the same, its folder new)."""
    run = trial.parent
    folders = [trial] + [run / name for name in storage.listdir(run)
                         if name.startswith(f"{trial_name}_") and name != trial.name]  # fmt: skip
    candidates = [folder / name for folder in folders for name in storage.listdir(folder)
                  if name.startswith("checkpoint_")]  # fmt: skip
    infos = trial.fs.get_file_info([(c / rc.TRIAL_STATE_FILE).path for c in candidates]) if candidates else []
    found = [
        (info.mtime_ns or 0, c) for info, c in zip(infos, candidates, strict=True) if info.type == pafs.FileType.File
    ]
    return [c for _, c in sorted(found, key=lambda item: item[0], reverse=True)]


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
        self._config_digest = config_digest(run_config)
        self._may_be_behind = True  # until _catch_up has looked for newer checkpoints on storage
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
        if self._may_be_behind:
            self._catch_up()
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
                         "epochs": self._epochs, "config_sha256": self._config_digest,
                         "time_total_s": float(self._time_total)}, path)  # fmt: skip
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
        self._load_state(state, self._selected_weights(state, self._selected))

    @staticmethod
    def _selected_weights(state: dict[str, Any], source: checkpoint.SelectedWeights | None) -> dict | None:
        """The selected weights ``state`` refers to, read from ``source``; ``None`` when it holds them itself."""
        run_state = state.get("run", state)  # a checkpoint of the older layout is the run's state itself
        epoch = run_state["selection"]["epoch"]
        if run_state.get("selected_state") is not None or epoch is None:
            return None
        if source is None:
            raise ValueError("this checkpoint keeps its selected weights beside it in a trial folder; restore "
                             "it through Tune")  # fmt: skip
        return source.read(epoch)

    def _load_state(self, state: dict[str, Any], selected: dict | None) -> None:
        """The run and the trial's bookkeeping from a checkpoint's ``state``."""
        self.run.load_state_dict(state.get("run", state), selected_state=selected)
        self._refs = list(state.get("selected_refs", []))
        self._on_disk = {e for e in self._refs if e is not None}
        self._epochs = list(state.get("epochs", []))  # an older checkpoint holds no epoch record

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
        """Continue from the trial's newest loadable checkpoint on storage when it is ahead of the run.

        Tune's experiment state lags its trials by up to one snapshot period, so a driver killed in between
        leaves ``resume`` restoring an older checkpoint than the trial wrote, or starting a trial created after
        the snapshot afresh, in a new folder. The candidates are this folder's checkpoints and those of earlier
        folders of the same trial id written with the same config, newest first; one cut short by the kill
        (or whose selected weights are gone) is passed over. Whether it continued from one."""
        self._may_be_behind = False
        if self.last_result is not None or self._selected is None:
            return False  # finished, or not under Tune
        for folder in newest_checkpoints(self.trial_location, self.trial_name):
            own = folder.parent.path == self.trial_location.path
            source = self._selected if own else checkpoint.SelectedWeights(folder.parent)
            try:
                state = checkpoint.load_from(folder / rc.TRIAL_STATE_FILE)
                if not isinstance(state, dict) or state.get("finished"):
                    continue
                if state.get("config_sha256", self._config_digest if own else None) != self._config_digest:
                    continue  # an earlier folder of a trial id the searcher gave another config
                if state.get("run", state)["epoch"] <= self.run.epoch:
                    return False  # the newest loadable checkpoint is not ahead
                selected = self._selected_weights(state, source)
                refs = set(state.get("selected_refs", [])) & set(source.epochs()) if not own else set()
                kept = {e: source.read(e) for e in sorted(refs)}
            except (OSError, ValueError, KeyError, TypeError, UserError):
                continue
            self._load_state(state, selected)
            for epoch, weights in kept.items():  # an earlier folder's: later restores find them in this one
                self._selected.write(epoch, weights)
            self._iteration = self.run.epoch  # one Tune iteration per epoch
            self._time_total = float(state.get("time_total_s", self._time_total))
            logging.getLogger(__name__).warning(
                "trial %s continues from epoch %d (%s), newer than the checkpoint Tune's state named",
                self.trial_id, self.run.epoch, folder)  # fmt: skip
            return True
        return False

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._build(new_config)
        return True

    def cleanup(self) -> None:
        self.run = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
