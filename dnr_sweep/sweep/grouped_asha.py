"""ASHA with rungs of its own per group of trials (``tune.scheduler.asha.group_by``).

Async successive halving stops a trial whose metric at a rung is below the top ``1/reduction_factor``
of the trials recorded there. In a DNR search the target density (and the pruning type) is a
searched dimension, and a sparser model is less accurate by design: one shared rung would compare a
5%-dense trial with a 20%-dense one and stop the high-compression trials first, starving the very
end of the Pareto front the search is for. Grouping gives every (density, pruning) value its own
ASHA, so a trial is only ever compared with trials of its own group.

This is Ray Tune's :class:`~ray.tune.schedulers.AsyncHyperBandScheduler`, one per group, driven
through its public scheduler interface; the group of a trial is read from its sampled config.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from dnr_sweep.foundation import files


class GroupedASHAScheduler(FIFOScheduler):
    """One :class:`AsyncHyperBandScheduler` per value of the ``group_by`` config keys.

    Args:
        group_by: keys of the trial config (dotted search paths, e.g. ``"dnr.density"``) whose
            values form a trial's group.
        **asha: the arguments of every group's ``AsyncHyperBandScheduler`` (metric, mode, max_t,
            grace_period, reduction_factor, time_attr).
    """

    def __init__(self, group_by: Sequence[str], **asha: Any) -> None:
        if not group_by:
            raise ValueError("group_by must name at least one config key; use ASHAScheduler for one group")
        super().__init__()
        self._group_by = tuple(group_by)
        self._asha_args = dict(asha)
        self._groups: dict[tuple[Any, ...], AsyncHyperBandScheduler] = {}
        self._group_of: dict[str, tuple[Any, ...]] = {}

    @property
    def metric(self) -> str | None:
        return self._asha_args.get("metric")

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._asha_args.get("metric") and metric) or (self._asha_args.get("mode") and mode):
            return False
        if metric:
            self._asha_args["metric"] = metric
        if mode:
            self._asha_args["mode"] = mode
        return all(group.set_search_properties(metric, mode, **spec) for group in self._groups.values())

    def group_key(self, config: dict[str, Any]) -> tuple[Any, ...]:
        """The trial's group: its values of the ``group_by`` keys (a missing key groups as ``None``)."""
        return tuple(config.get(key) for key in self._group_by)

    def _scheduler(self, trial: Any) -> AsyncHyperBandScheduler:
        return self._groups[self._group_of[trial.trial_id]]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        key = self.group_key(trial.config)
        if key not in self._groups:
            self._groups[key] = AsyncHyperBandScheduler(**self._asha_args)
        self._group_of[trial.trial_id] = key
        self._groups[key].on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.trial_id not in self._group_of:
            return TrialScheduler.CONTINUE
        return self._scheduler(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._forget(trial, lambda s: s.on_trial_complete(tune_controller, trial, result))

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._forget(trial, lambda s: s.on_trial_remove(tune_controller, trial))

    def _forget(self, trial: Any, call: Callable[[AsyncHyperBandScheduler], None]) -> None:
        if trial.trial_id in self._group_of:
            call(self._scheduler(trial))
            del self._group_of[trial.trial_id]

    def debug_string(self) -> str:
        lines = [f"Using grouped AsyncHyperBand by {', '.join(self._group_by)}: {len(self._groups)} groups"]
        lines += [f"  {key}: {group.debug_string()}" for key, group in self._groups.items()]
        return "\n".join(lines)

    def save(self, checkpoint_path: str) -> None:
        files.write_file(checkpoint_path, lambda file: pickle.dump(self.__dict__, file))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))
