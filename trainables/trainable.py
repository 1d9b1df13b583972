"""``DNRTrainable``: Ray Tune's view of one DNR run, a thin adapter over :mod:`dnr_sweep.engine`.

- ``setup`` turns the trial's sampled values (dotted keys, e.g. ``{"dnr.density": 0.1}``) and the
  sweep's base config into a typed :class:`~dnr_sweep.config.RunConfig` and builds the run;
- ``step`` trains one epoch and returns the engine's flat metrics, with ``done`` on the last epoch;
- ``save_checkpoint``/``load_checkpoint`` carry the complete training state (model, masks, z,
  optimizer, LR schedule, epoch, RNG states, best weights), so a restored trial continues exactly;
- ``reset_config`` rebuilds the run in place, so Tune can reuse the actor.

At the end of a trial the selected model is written to the trial folder as ``model.pt`` (a plain
``state_dict``) with ``metrics.json`` beside it.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

import torch
import yaml
from ray import tune
from ray.tune.result import DONE

from dnr_sweep import checkpoint
from dnr_sweep.config import RunConfig, run_config_from_flat, to_yaml_dict
from dnr_sweep.engine import DNRRun
from dnr_sweep.post_training import after_training

STATE_FILE = "state.pt"
FINAL_KEYS = ("compression", "density", "channels_present", "selected_epoch", "params_physical", "macs",
              "speedup_cpu", "masking_checks_passed")  # fmt: skip
# Written beside model.pt when a trial ends: if the driver dies before Tune's experiment snapshot
# records the end, a resume restores an older checkpoint; this file lets the trial report its
# result again instead of training its last epochs twice.
FINAL_STATE_FILE = "final_state.pt"
# Test-only fault injection: with this set in the driver's environment, each trial SIGKILLs its
# own worker process in the middle of this epoch (1-based) the first time it gets there, so tests
# can prove that Ray restores it exactly from its last checkpoint.
KILL_AT_EPOCH_ENV = "DNR_SWEEP_TEST_KILL_AT_EPOCH"


class DNRTrainable(tune.Trainable):
    """One DNR training run; one Tune iteration is one epoch."""

    def setup(self, config: dict[str, Any], base: dict[str, Any] | None = None,
              kill_at_epoch: int | None = None) -> None:
        if base is None:
            raise ValueError("DNRTrainable needs the sweep's base config: wrap it with tune.with_parameters(base=...)")
        # one "Checkpoint successfully created" line per epoch per trial floods the driver's terminal
        for name in ("ray.tune", "ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._base = RunConfig.model_validate(base)
        self._kill_at_epoch = kill_at_epoch
        self._build(config)

    def _build(self, config: dict[str, Any]) -> None:
        run_config = run_config_from_flat(self._base, config)
        resources = self.trial_resources
        if run_config.train.num_threads is None:
            cpus = resources.required_resources.get("CPU", 1) if resources is not None else 1
            run_config.train.num_threads = max(1, int(math.floor(cpus)))
        self.run_config = run_config
        self.run = DNRRun(run_config)
        self._load_final_state()

    def _load_final_state(self) -> bool:
        final = self.trial_dir / FINAL_STATE_FILE
        if final.is_file():
            self.run.load_state_dict(checkpoint.load(final))
            return True
        return False

    def step(self) -> dict[str, Any]:
        if self.run.finished and self.run.last_metrics is not None:
            # restored from the final checkpoint by an experiment snapshot older than the trial's
            # end (e.g. after the driver was killed): report the result again, train nothing
            return {**self.run.last_metrics, DONE: True}
        progress = None
        if self._kill_at_epoch == self.run.epoch + 1 and not (self.trial_dir / ".killed").exists():
            marker = self.trial_dir / ".killed"

            def progress(done: int, total: int) -> None:  # noqa: F811 - the hook only when asked for
                if done == max(1, total // 2):
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGKILL)

        metrics = self.run.train_epoch(progress)
        if self.run.finished:
            self._write_outputs(metrics)  # model.pt, config.yaml, metrics.json, final_state.pt
        metrics[DONE] = self.run.finished
        return metrics

    def _write_outputs(self, metrics: dict[str, Any]) -> None:
        out = self.trial_dir
        checkpoint.save(self.run.selected_state_dict(), out / "model.pt")
        text = yaml.safe_dump(to_yaml_dict(self.run_config), sort_keys=False)
        checkpoint.atomic_write_bytes(out / "config.yaml", lambda handle: handle.write(text.encode()))
        metrics.update(after_training(self.run, out))  # evaluate: / export: columns, when configured
        self.run.last_metrics = dict(metrics)
        test_accuracies = [k for k in metrics if k.endswith("_acc") and not k.startswith(("val_", "train_"))]
        final = {k: v for k, v in metrics.items() if k in FINAL_KEYS or k in test_accuracies}
        checkpoint.write_json(final, out / "metrics.json")
        checkpoint.save(self.run.state_dict(), out / FINAL_STATE_FILE)

    @property
    def trial_dir(self) -> Path:
        """The trial's folder in the run folder (Tune's storage path; shared storage on a cluster)."""
        if self._storage is not None:
            path = Path(self._storage.trial_fs_path)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return Path(self.logdir)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        checkpoint.save(self.run.state_dict(), Path(checkpoint_dir) / STATE_FILE)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        if not self._load_final_state():  # a finished trial never trains again
            self.run.load_state_dict(checkpoint.load(Path(checkpoint_dir) / STATE_FILE))

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._build(new_config)
        return True

    def cleanup(self) -> None:
        self.run = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
