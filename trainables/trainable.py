"""``DNRTrainable``: Ray Tune's view of one DNR run, a thin adapter over :mod:`dnr_sweep.engine`.

- ``setup`` turns the trial's sampled values (dotted keys, e.g. ``{"dnr.density": 0.1}``) and the
  sweep's base config into a typed :class:`~dnr_sweep.config.RunConfig` and builds the run;
- ``step`` trains one epoch and returns one Tune result (:func:`dnr_sweep.run_contract.tune_result`:
  this epoch's figures under ``this_epoch/``, the selected epoch's figures at the top level, which
  searchers and schedulers read); on the last epoch the trial runs the finish step
  (:func:`dnr_sweep.finish.finish_run`: ``model.pt``, ``config.yaml``, ``metrics.json`` in the
  trial folder) and its result joins the final Tune result, with ``done``;
- ``save_checkpoint``/``load_checkpoint`` carry the complete training state (model, masks, z,
  optimizer, LR schedule, epoch, RNG states, selected weights), so a restored trial continues exactly;
- ``reset_config`` rebuilds the run in place, so Tune can reuse the actor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune.result import DONE

from dnr_sweep import checkpoint
from dnr_sweep import run_contract as rc
from dnr_sweep.config import RunConfig, run_config_from_flat
from dnr_sweep.engine import DNRRun
from dnr_sweep.finish import finish_run
from trainables import dashboard_metrics


class DNRTrainable(tune.Trainable):
    """One DNR training run; one Tune iteration is one epoch."""

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
        self._load_final_state()

    def _load_final_state(self) -> bool:
        """A trial that already finished (its final state is beside its model.pt) trains nothing again."""
        path = self.trial_dir / rc.FINAL_STATE_FILE
        if not path.is_file():
            return False
        state = checkpoint.load(path)
        self.run.load_state_dict(state["run"])
        self.last_result = state["result"]
        return True

    def epoch_progress(self) -> Callable[[int, int], None] | None:
        """A per-batch callback ``(done, total)`` for the epoch about to run; none by default."""
        return None

    def step(self) -> dict[str, Any]:
        if self.run.finished and self.last_result is not None:
            # restored from a checkpoint older than the trial's end (e.g. after the driver was
            # killed between the trial's end and Tune's next experiment snapshot): report it again
            return {**self.last_result, DONE: True}
        report = self.run.train_epoch(self.epoch_progress())
        final = finish_run(self.run, self.trial_dir) if report.final else None
        result = rc.tune_result(report.epoch, report.metrics, report.selected, final)
        if final is not None:
            self.last_result = result
            checkpoint.save({"run": self.run.state_dict(), "result": result}, self.trial_dir / rc.FINAL_STATE_FILE)
        result[DONE] = report.final
        dashboard_metrics.report_epoch(result, run=self.trial_dir.parent.name, trial_id=self.trial_id)
        return result

    @property
    def trial_dir(self) -> Path:
        """The trial's folder in the run folder (Tune's storage path; shared storage on a cluster)."""
        if self._storage is not None:
            path = Path(self._storage.trial_fs_path)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return Path(self.logdir)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        checkpoint.save(self.run.state_dict(), Path(checkpoint_dir) / rc.TRIAL_STATE_FILE)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        if not self._load_final_state():  # a finished trial never trains again
            self.run.load_state_dict(checkpoint.load(Path(checkpoint_dir) / rc.TRIAL_STATE_FILE))

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._build(new_config)
        return True

    def cleanup(self) -> None:
        self.run = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
