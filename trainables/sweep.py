"""From a validated :class:`~dnr_sweep.config.SweepConfig` to a finished Ray Tune experiment.

- ``search:`` rules map to Tune's sampling functions (``grid`` -> ``tune.grid_search``, ``choice``,
  ``uniform``, ``loguniform``, ``randint``, ``quniform``); the config layer already refused raw
  Tune keys (``grid_search``/``eval``: Tune would evaluate an ``{eval: ...}`` dict as code).
- ``tune.search_alg``: none (grid and random variants) or Optuna (TPE, NSGA-II, GP or random
  sampler; single- or multi-objective). Optuna cannot take grid dimensions: the config layer
  rejects them and says to use ``choice``, which Optuna samples as a categorical.
  ``tune.points_to_evaluate`` run first (the paper's defaults in a search; the chosen
  configurations of a confirmation sweep, crossed with its seed grid).
- ``tune.scheduler``: none or ASHA on one metric, optionally with rungs per group of trials
  (``group_by``, e.g. per density). A trial it stops early reports partial metrics;
  Optuna is told it completed, so the results mark such trials ``early_stopped`` and the Pareto
  code leaves them out.
- Checkpoints every epoch, keeping the latest two. Each one also holds the best epoch's weights
  (the engine keeps them), so the best model by the selection metric is never lost.

The run folder is ``storage/name``: Ray Tune's experiment folder plus ``config.yaml`` (the input as
given) and ``sweep.json`` (the ``--set`` overrides), which is all :func:`resume_sweep` needs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnr_sweep.config import (
    SearchSpec,
    SweepConfig,
    _check_name,
    load_sweep_config,
    to_yaml_dict,
)
from dnr_sweep.errors import UserError
from dnr_sweep.run_contract import CONFIG_FILE, SWEEP_FILE

#: the trial table Tune prints: the epoch and the selected epoch's validation figures so far
PROGRESS_COLUMNS = {
    "epoch": "epoch",
    "selected_epoch": "sel",
    "density": "density",
    "val_clean_acc": "val clean%",
    "val_pgd_acc": "val pgd%",
}


class SweepError(UserError, RuntimeError):
    """A sweep cannot start (bad resources, bad run folder); the message says how to fix it."""


@dataclass
class SweepOutcome:
    """What the caller needs after ``Tuner.fit``: where the run is and what went wrong."""

    run_dir: Path
    errors: dict[str, str] = field(default_factory=dict)  # trial id -> error summary
    statuses: dict[str, str] = field(default_factory=dict)  # trial id -> Tune status
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial id -> sampled dotted values
    interrupted: bool = False


# ------------------------------------------------------------------------------------------------
# Search space, search algorithm, scheduler


def tune_domain(spec: SearchSpec) -> Any:
    from ray import tune

    kind, value = spec.rule
    if kind == "grid":
        return tune.grid_search(list(value))
    if kind == "choice":
        return tune.choice(list(value))
    if kind == "uniform":
        return tune.uniform(*value)
    if kind == "loguniform":
        return tune.loguniform(*value)
    if kind == "randint":
        return tune.randint(*value)
    if kind == "quniform":
        return tune.quniform(*value)
    raise ValueError(f"unknown search rule {kind!r}; valid: grid, choice, uniform, loguniform, randint, quniform")


def param_space(config: SweepConfig) -> dict[str, Any]:
    """Tune's param_space: one flat entry per dotted search path."""
    return {path: tune_domain(spec) for path, spec in config.search.items()}


def objectives(config: SweepConfig) -> dict[str, str]:
    """The metrics the search optimises: Optuna's objectives, or the single tune.metric."""
    alg = config.tune.search_alg
    if alg is not None and alg.optuna.objectives:
        return dict(alg.optuna.objectives)
    return {config.tune.metric: config.tune.mode} if config.tune.metric is not None else {}


def build_search_alg(config: SweepConfig) -> Any:
    """Optuna (TPE, NSGA-II, GP or random sampler), or Tune's own variant generator.

    ``tune.points_to_evaluate`` are run first either way: Optuna enqueues them, Tune's generator
    crosses each with the grid dimensions.
    """
    alg = config.tune.search_alg
    points = copy.deepcopy(config.tune.points_to_evaluate) or None
    if alg is None:
        if points is None:
            return None
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(points_to_evaluate=points)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    spec = alg.optuna
    goals = objectives(config)
    nsga2 = {} if spec.population_size is None else {"population_size": spec.population_size}
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=spec.seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=spec.seed, **nsga2),
        "gp": lambda: optuna.samplers.GPSampler(seed=spec.seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=spec.seed),
    }
    sampler = samplers[spec.sampler]()
    if len(goals) == 1:
        (metric, mode), = goals.items()
        return OptunaSearch(metric=metric, mode=mode, sampler=sampler, points_to_evaluate=points)
    return OptunaSearch(metric=list(goals), mode=list(goals.values()), sampler=sampler, points_to_evaluate=points)


def build_scheduler(config: SweepConfig) -> Any:
    """ASHA on one validation metric; with ``group_by``, one ASHA per group (trainables/grouped_asha.py)."""
    if config.tune.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    asha = config.tune.scheduler.asha
    settings = {
        "metric": asha.metric or config.tune.metric,
        "mode": asha.mode or config.tune.mode,
        "time_attr": "training_iteration",
        "max_t": asha.max_t or config.train.epochs,
        "grace_period": asha.grace_period,
        "reduction_factor": asha.reduction_factor,
    }
    if asha.group_by:
        from trainables.grouped_asha import GroupedASHAScheduler

        return GroupedASHAScheduler(asha.group_by, **settings)
    return ASHAScheduler(**settings)


def trial_resources(config: SweepConfig) -> dict[str, float]:
    """Resources one trial asks for; fractional GPUs pack several trials on one GPU."""
    resources = config.tune.resources_per_trial
    return {"cpu": resources.cpu, "gpu": resources.gpu}


def make_trainable(config: SweepConfig) -> Any:
    """DNRTrainable with the sweep's base config and the trial resources attached."""
    from ray import tune

    from trainables import trainable

    params = {"base": to_yaml_dict(config.base_run())}
    return tune.with_resources(tune.with_parameters(trainable.DNRTrainable, **params), trial_resources(config))


def build_tuner(config: SweepConfig, run_dir: Path) -> Any:
    from ray import tune

    trainable = make_trainable(config)
    multi = len(objectives(config)) > 1
    tune_config = tune.TuneConfig(
        metric=None if multi else config.tune.metric,
        mode=None if multi else config.tune.mode,
        search_alg=build_search_alg(config),
        scheduler=build_scheduler(config),
        num_samples=config.tune.num_samples,
        max_concurrent_trials=config.tune.max_concurrent_trials,
        # a finished trial's worker takes the next trial (reset_config rebuilds the run): saves the
        # 4-5 s of starting a fresh worker per trial (benchmarks/bench_sweep_overhead.py)
        reuse_actors=True,
    )
    return tune.Tuner(trainable, param_space=param_space(config), tune_config=tune_config,
                      run_config=_run_config(config, run_dir))  # fmt: skip


def _run_config(config: SweepConfig, run_dir: Path) -> Any:
    from ray import tune

    reporter = tune.CLIReporter(
        metric_columns=PROGRESS_COLUMNS,
        parameter_columns=list(config.search),
        max_report_frequency=30,
        print_intermediate_tables=True,
        sort_by_metric=False,
    )
    return tune.RunConfig(
        name=run_dir.name,
        storage_path=str(run_dir.parent),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_frequency=1, checkpoint_at_end=True),
        failure_config=tune.FailureConfig(max_failures=config.tune.max_failures),
        progress_reporter=reporter,
        verbose=1,
    )


# ------------------------------------------------------------------------------------------------
# Ray


def start_ray(*, address: str | None, dashboard: bool, dashboard_host: str, log=print) -> str | None:
    """An embedded local Ray (a fresh one, never a stale one), or a connection to ``address``."""
    # Tune warns on every checkpoint of short epochs that snapshotting "may become a bottleneck";
    # with per-epoch checkpoints of small models that is expected, so the warning is off
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if ray.is_initialized():
        return None
    if dashboard and dashboard_host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: the dashboard and Ray's job-submission API will listen on {dashboard_host}; anyone who "
            "reaches that address and holds the cluster's token can run code on it. Firewall it.")  # fmt: skip
    if address:
        context = ray.init(address=address, logging_level="WARNING")
    else:
        context = ray.init(address="local", include_dashboard=dashboard, dashboard_host=dashboard_host,
                           logging_level="WARNING")  # fmt: skip
    url = getattr(context, "dashboard_url", None)
    if dashboard and url:
        log(f"Ray dashboard: http://{url} (token authentication: print the token with `ray get-auth-token`)")
    return url


def check_resources_feasible(config: SweepConfig) -> None:
    """Fail now, not by pending forever, when no node of the cluster can ever host one trial."""
    import ray

    need = trial_resources(config)
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    for node in nodes:
        have = node.get("Resources", {})
        if have.get("CPU", 0) >= need["cpu"] and have.get("GPU", 0) >= need["gpu"]:
            return
    best = max(((n["Resources"].get("CPU", 0), n["Resources"].get("GPU", 0)) for n in nodes), default=(0, 0))
    raise SweepError(
        f"tune.resources_per_trial asks for {need['cpu']:g} CPU and {need['gpu']:g} GPU per trial, but the largest "
        f"node of this cluster has {best[0]:g} CPU and {best[1]:g} GPU; lower resources_per_trial "
        "(e.g. with --set tune.resources_per_trial.gpu=0) or add a node that has them"
    )


# ------------------------------------------------------------------------------------------------
# Running and resuming


def plan_run_dir(config: SweepConfig, *, storage: str | Path, name: str | None) -> Path:
    """``storage/name`` (name defaults to the config's name and a timestamp); refuses to reuse a run."""
    if name is None:
        name = f"{config.name}_{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        _check_name(name)
    except ValueError as exc:
        raise SweepError(f"--name: {exc}") from None
    run_dir = Path(storage).expanduser().resolve() / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SweepError(f"{run_dir}: already holds a run; continue it with `dnr-sweep resume {run_dir}` "
                         "or choose another --name")  # fmt: skip
    return run_dir


def prepare_run_dir(run_dir: Path, *, config_path: Path, overrides: list[str]) -> Path:
    """Create the run folder with the input config as given and the ``--set`` overrides."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config_path, run_dir / CONFIG_FILE)
    (run_dir / SWEEP_FILE).write_text(json.dumps({"overrides": list(overrides), "config_source": str(config_path)}))
    return run_dir


def load_run_dir_config(run_dir: Path) -> SweepConfig:
    """The sweep config a run folder was started with (its config.yaml plus the saved overrides)."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise SweepError(f"{run_dir}: not a dnr-sweep run folder (no {CONFIG_FILE}); pass the folder "
                         "`dnr-sweep run` printed")  # fmt: skip
    overrides = json.loads((run_dir / SWEEP_FILE).read_text())["overrides"] if (run_dir / SWEEP_FILE).is_file() else []
    return load_sweep_config(run_dir / CONFIG_FILE, overrides)


def _outcome(result_grid: Any, run_dir: Path) -> SweepOutcome:
    outcome = SweepOutcome(run_dir=run_dir)
    trials = getattr(getattr(result_grid, "_experiment_analysis", None), "trials", None) or []
    for trial in trials:
        outcome.statuses[trial.trial_id] = trial.status
        outcome.configs[trial.trial_id] = dict(trial.config)
        if trial.status == "ERROR":
            text = ""
            if trial.error_file and Path(trial.error_file).is_file():
                text = Path(trial.error_file).read_text().strip().splitlines()[-1]
            outcome.errors[trial.trial_id] = text or "failed (see its error.txt)"
        elif trial.status not in ("TERMINATED",):
            outcome.interrupted = True
    return outcome


def fit(config: SweepConfig, run_dir: Path, *, restore: bool) -> SweepOutcome:
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic trial table, readable in a terminal
    if restore:
        tuner = tune.Tuner.restore(str(run_dir), trainable=make_trainable(config), resume_unfinished=True,
                                   resume_errored=True)  # fmt: skip
    else:
        tuner = build_tuner(config, run_dir)
    watcher = _InterruptWatcher()
    tune_logger = logging.getLogger("ray.tune.tune")
    tune_logger.addHandler(watcher)
    try:
        result_grid = tuner.fit()
    finally:
        tune_logger.removeHandler(watcher)
    outcome = _outcome(result_grid, run_dir)
    outcome.interrupted = outcome.interrupted or watcher.interrupted
    return outcome


class _InterruptWatcher(logging.Handler):
    """Notices Tune's "Experiment has been interrupted" (its SIGINT handler's only trace).

    On Ctrl-C Tune stops gracefully and saves its state, then marks the stopped trials TERMINATED
    and returns normally, so neither the statuses nor an exception tell an interrupted sweep from a
    finished one; this log record does (Ray 2.60, ``ray/tune/tune.py``).
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.interrupted = False

    def emit(self, record: logging.LogRecord) -> None:
        if "has been interrupted" in record.getMessage():
            self.interrupted = True
