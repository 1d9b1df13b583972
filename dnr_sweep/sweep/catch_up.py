"""A trial catches up after a killed driver: it continues from its newest loadable checkpoint on storage.

Tune snapshots its experiment state every 10 s or so, so after ``resume`` it may restore a trial from an
older checkpoint than the trial wrote, or start a trial created after its last snapshot afresh (in a new
folder, the trial id the same). Before its first epoch a trial (:class:`~dnr_sweep.sweep.trainable.SweepTrainable`)
looks at its own folder's checkpoints and those of earlier folders of its trial id written with the same
config (:func:`config_digest`, saved in each checkpoint as ``config_sha256``), newest first, and continues
from the first that loads, when that one is ahead. One cut short by the kill, or whose selected weights are
gone, is passed over. So a killed driver costs at most the epoch in flight.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow.fs as pafs

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import RunConfig
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import storage
from dnr_sweep.foundation.errors import UserError
from dnr_sweep.training.lifecycle import RunLifecycle

#: what a checkpoint cut short, of another trial, or whose selected weights are gone raises on reading
_UNUSABLE = (OSError, ValueError, KeyError, TypeError, UserError)


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


def catch_up(life: RunLifecycle, trial: storage.Location, trial_name: str,
             digest: str) -> tuple[storage.Location, dict[str, Any]] | None:  # fmt: skip
    """Load into ``life`` (whose run folder is ``trial``) the trial's newest loadable checkpoint on storage, when
    it is ahead of the run; that checkpoint's folder and state, or ``None`` when none is ahead."""
    for folder in newest_checkpoints(trial, trial_name):
        own = folder.parent.path == trial.path
        try:
            state = checkpoint.load_from(folder / rc.TRIAL_STATE_FILE)
            if not isinstance(state, dict) or state.get("finished"):
                continue
            if state.get("config_sha256", digest if own else None) != digest:
                continue  # an earlier folder of a trial id the searcher gave another config
            if state.get("run", state)["epoch"] <= life.run.epoch:
                return None  # the newest loadable checkpoint is not ahead
            weights = life.read_weights(state, None if own else checkpoint.SelectedWeights(folder.parent))
        except _UNUSABLE:
            continue
        life.load(state, weights)
        return folder, state
    return None
