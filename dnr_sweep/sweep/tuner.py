"""The Ray Tune ``Tuner`` of a sweep and running it: resources per trial, the trainable, storage, checkpoints,
callbacks (the live report), and :func:`fit` (a new run or a restored one).

Checkpoints: ``tune.checkpoint_every`` epochs apart (``auto``: as often as keeps saving at most 2% of the training
time, measured by each trial), the newest ``tune.keep_checkpoints`` kept, and one small marker at each trial's
end. The selected epoch's weights sit beside them in the trial folder (:mod:`dnr_sweep.training.lifecycle`), so the
best model by the selection metric is never lost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dnr_sweep.config import SweepConfig, to_yaml_dict
from dnr_sweep.foundation import storage as storage_
from dnr_sweep.sweep.cluster import trial_resources
from dnr_sweep.sweep.outcome import SweepOutcome, outcome_from_grid
from dnr_sweep.sweep.ray_logs import filtered_ray_logs
from dnr_sweep.sweep.search import build_scheduler, build_search_alg, objectives, param_space

#: the trial table Tune prints: the epoch and the selected epoch's validation figures so far
PROGRESS_COLUMNS = {
    "epoch": "epoch",
    "selected_epoch": "sel",
    "density": "density",
    "val_clean_acc": "val clean%",
    "val_pgd_acc": "val pgd%",
}


def make_trainable(config: SweepConfig, name: str | None = None) -> Any:
    """SweepTrainable with the sweep's base config and the trial resources attached; under ``name`` when a
    run folder recorded the trainable under a name earlier versions gave it (``Tuner.restore`` checks it)."""
    # lazy: Ray takes seconds to import; `run` checks the config and the address first
    from ray import tune

    from dnr_sweep.sweep import trainable

    cls = trainable.SweepTrainable
    if name is not None and name != cls.__name__:
        cls = type(name, (cls,), {"__doc__": cls.__doc__})
    wrapped = tune.with_parameters(cls, base=to_yaml_dict(config.base_run()))
    # the checkpoint cadence rides on the (generated, shipped-by-value) class Tune runs
    wrapped.checkpoint_every = config.tune.checkpoint_every
    wrapped.keep_checkpoints = config.tune.keep_checkpoints
    return tune.with_resources(wrapped, trial_resources(config))


def build_tuner(config: SweepConfig, run_dir: storage_.Location) -> Any:
    from ray import tune  # lazy: as in make_trainable

    trainable = make_trainable(config)
    scheduler = build_scheduler(config)
    # Tune takes the metric and mode once: a scheduler built with its own (ASHA always is) refuses a second
    # pair from TuneConfig ("You passed a `metric` or `mode` argument to `Tuner(...)`"), and several
    # objectives have no single pair to give
    tuner_metric = len(objectives(config)) == 1 and scheduler is None
    tune_config = tune.TuneConfig(
        metric=config.tune.metric if tuner_metric else None,
        mode=config.tune.mode if tuner_metric else None,
        search_alg=build_search_alg(config),
        scheduler=scheduler,
        num_samples=config.tune.num_samples,
        max_concurrent_trials=config.tune.max_concurrent_trials,
        # a finished trial's worker takes the next trial (reset_config rebuilds the run): saves the
        # 4-5 s of starting a fresh worker per trial (benchmarks/bench_sweep_overhead.py)
        reuse_actors=True,
    )
    return tune.Tuner(trainable, param_space=param_space(config), tune_config=tune_config,
                      run_config=_run_config(config, run_dir))  # fmt: skip


def _run_config(config: SweepConfig, run_dir: storage_.Location) -> Any:
    from ray import tune  # lazy: as in make_trainable

    reporter = tune.CLIReporter(
        metric_columns=PROGRESS_COLUMNS,
        parameter_columns=list(config.search),
        max_report_frequency=30,
        print_intermediate_tables=True,
        sort_by_metric=False,
    )
    return tune.RunConfig(
        name=run_dir.name,
        storage_path=run_dir.parent.uri,
        # the trainable asks for checkpoints itself (`should_checkpoint`, tune.checkpoint_every)
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=config.tune.keep_checkpoints, checkpoint_frequency=0, checkpoint_at_end=True
        ),  # fmt: skip
        failure_config=tune.FailureConfig(max_failures=config.tune.max_failures),
        progress_reporter=reporter,
        callbacks=_callbacks(config, run_dir),
        verbose=1,
    )


def _callbacks(config: SweepConfig, run_dir: Path) -> list[Any]:
    """Tune's JSON logger first (so a trial's result.json holds a result before anyone reads it),
    then the live report (``report.live``)."""
    # lazy: as in make_trainable (the live report imports Ray's Callback)
    from ray.tune.logger import JsonLoggerCallback

    from dnr_sweep.sweep.live import LiveReport

    return [JsonLoggerCallback(), *([LiveReport(config, run_dir)] if config.report.live else [])]


def fit(config: SweepConfig, run_dir: storage_.Location, *, restore: bool,
        trainable_name: str | None = None) -> SweepOutcome:  # fmt: skip
    from ray import tune  # lazy: as in make_trainable

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic trial table, readable in a terminal
    if restore:
        tuner = tune.Tuner.restore(run_dir.uri, trainable=make_trainable(config, trainable_name), resume_unfinished=True,
                                   resume_errored=True)  # fmt: skip
    else:
        tuner = build_tuner(config, run_dir)
    with filtered_ray_logs() as ray_logs:  # Ray's Tuner.restore(...) hint and its missing-metrics noise
        result_grid = tuner.fit()
        outcome = outcome_from_grid(result_grid, run_dir)
    outcome.interrupted = outcome.interrupted or ray_logs.interrupted
    return outcome
