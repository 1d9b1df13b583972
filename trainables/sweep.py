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
- Checkpoints: ``tune.checkpoint_every`` epochs apart (``auto``: as often as keeps saving at most
  2% of the training time, measured by each trial), the newest ``tune.keep_checkpoints`` kept, and
  one small marker at each trial's end. The selected epoch's weights sit beside them in the trial
  folder (:mod:`trainables.trainable`), so the best model by the selection metric is never lost.

The run folder is ``storage/name``: Ray Tune's experiment folder plus ``config.yaml`` (the input as
given) and ``sweep.json`` (the ``--set`` overrides), which is all ``dnr-sweep resume`` needs.
``storage`` is a local folder (shared storage on a cluster) or any filesystem URI Ray Tune accepts
(``s3://``, ``gs://``, ``file://``, ...); the run folder is a :class:`~dnr_sweep.storage.Location`.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import copy
import hashlib
import ipaddress
import json
import logging
import os
import pickletools
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnr_sweep import files
from dnr_sweep import storage as storage_
from dnr_sweep.config import (
    SearchSpec,
    SweepConfig,
    _check_name,
    load_sweep_config,
    to_yaml_dict,
)
from dnr_sweep.errors import ClusterError, ConfigError, InputFileError, PathError, UserError
from dnr_sweep.run_contract import CONFIG_FILE, LOCK_FILE, SWEEP_FILE

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

    run_dir: storage_.Location
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
    """Tune's param_space: one flat entry per dotted search path.

    Raises:
        ConfigError: Tune refuses a rule (its own checks, run here before Ray starts).
    """
    space = {}
    for path, spec in config.search.items():
        try:
            space[path] = tune_domain(spec)
        except ValueError as exc:
            raise ConfigError(f"search.{path}.{spec.rule[0]}: Ray Tune refuses it: {exc}") from None
    return space


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
        ((metric, mode),) = goals.items()
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

    wrapped = tune.with_parameters(trainable.DNRTrainable, base=to_yaml_dict(config.base_run()))
    # the checkpoint cadence rides on the (generated, shipped-by-value) class Tune runs
    wrapped.checkpoint_every = config.tune.checkpoint_every
    wrapped.keep_checkpoints = config.tune.keep_checkpoints
    return tune.with_resources(wrapped, trial_resources(config))


def build_tuner(config: SweepConfig, run_dir: storage_.Location) -> Any:
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


def _run_config(config: SweepConfig, run_dir: storage_.Location) -> Any:
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
    from ray.tune.logger import JsonLoggerCallback

    from trainables.live import LiveReport

    return [JsonLoggerCallback(), *([LiveReport(config, run_dir)] if config.report.live else [])]


# ------------------------------------------------------------------------------------------------
# Ray


def start_ray(*, address: str | None, dashboard: bool, dashboard_host: str, log=print) -> str | None:
    """An embedded local Ray (a fresh one, never a stale one), or a connection to ``address``."""
    # Tune warns on every checkpoint of short epochs that snapshotting "may become a bottleneck";
    # with per-epoch checkpoints of small models that is expected, so the warning is off
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address:
        use_cluster_token()  # before Ray reads its configuration
    import ray

    if ray.is_initialized():
        return None
    if dashboard and dashboard_host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: the dashboard and Ray's job-submission API will listen on {dashboard_host}; anyone who "
            "reaches that address and holds the cluster's token can run code on it. Firewall it.")  # fmt: skip
    if address:
        check_cluster_address(address)
        try:
            context = ray.init(address=address, logging_level="WARNING")
        except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(
                f"--address {address}: cannot join the Ray cluster ({first[:300]}). Check that `ray start --head` "
                "runs there and that this machine holds the cluster's token: copy the head's ~/.ray/auth_token "
                "here or set RAY_AUTH_TOKEN to the output of `ray get-auth-token` on the head (README: Running "
                "on a Ray cluster)"
            ) from None
    else:
        context = ray.init(address="local", include_dashboard=dashboard, dashboard_host=dashboard_host,
                           logging_level="WARNING")  # fmt: skip
    url = getattr(context, "dashboard_url", None)
    if dashboard and url:
        log(f"Ray dashboard: http://{url} (token authentication: print the token with `ray get-auth-token`)")
    return url


#: how long each step of :func:`check_cluster_address` may wait
ADDRESS_TIMEOUT_S = 5.0


def _split_address(address: str) -> tuple[str, int, bool]:
    """``host:port`` (``ray://`` prefix: Ray Client; ``[v6]:port``) -> ``(host, port, is_client)``."""
    text = address.strip()
    client = text.startswith("ray://")
    if client:
        text = text[len("ray://") :]
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ClusterError(f"--address {address!r}: expected host:port (e.g. 10.0.0.1:6379, the head node's GCS "
                           "port), ray://host:10001 (Ray Client) or auto")  # fmt: skip
    return host, int(port_text), client


def _resolve_auto(address: str) -> tuple[str, str]:
    """What Ray would connect to for ``auto`` (RAY_ADDRESS, then the last `ray start` on this machine)."""
    from ray._private import services

    try:
        resolved = services.get_ray_address_from_environment(address, None)
    except ConnectionError:
        raise ClusterError(
            f"--address {address}: no Ray cluster was started on this machine (RAY_ADDRESS is unset and "
            "`ray start` left no address); start one with `ray start --head`, pass the head node's host:port, "
            "or leave --address out for an embedded local Ray"
        ) from None
    return resolved, "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "the last `ray start` on this machine"


def check_cluster_address(address: str, *, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """Fail in seconds, before ``ray.init``, when no Ray cluster answers at ``address``.

    ``ray.init(address=...)`` waits without end (retrying, printing warnings) for a cluster that is
    not there. This tries a TCP connection to the address, then asks the GCS for the cluster id
    over gRPC (an answer, or a refusal for want of the cluster's token, proves a GCS is there), each
    with a deadline of ``timeout_s``. Ray Client addresses (``ray://``) get the TCP check only.

    Raises:
        ClusterError: naming the address, what was tried and how to check the cluster.
    """
    given, source = address, ""
    if address.strip() == "auto":
        address, origin = _resolve_auto(address)
        source = f" (from {origin}; it may be stale)"
    host, port, client = _split_address(address)
    tried = [f"a TCP connection to {host}:{port}"]

    def refuse(problem: str) -> ClusterError:
        return ClusterError(
            f"--address {given}: no Ray cluster answers at {address}{source}: {problem}. Tried "
            f"{' then '.join(tried)}, {timeout_s:g} s each. Check that the cluster is up with "
            f"`ray status --address {host}:{port}` on one of its nodes, that {host}:{port} is its head node's "
            f"{'Ray Client port (10001 by default)' if client else 'GCS port (6379 by default)'}, and that no "
            "firewall blocks it; or leave --address out to run on an embedded local Ray"
        )

    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except socket.gaierror as exc:
        raise refuse(f"the host name does not resolve ({exc.strerror})") from None
    except TimeoutError:
        raise refuse("the connection timed out") from None
    except OSError as exc:
        raise refuse(f"the connection failed ({exc.strerror or exc})") from None
    if client:
        return
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    tried.append("a GCS request for the cluster id")
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code != grpc.StatusCode.UNAUTHENTICATED:  # a GCS that wants the token: it is there
                name = code.name if code is not None else "no answer"
                raise refuse(f"something listens there but it is not a Ray GCS (gRPC status {name})") from None


def _local_cpus() -> float:
    try:
        from ray._private.utils import (
            get_num_cpus,  # what an embedded Ray will offer (cgroup quotas included)
        )

        return float(get_num_cpus())
    except (ImportError, AttributeError):
        return float(os.cpu_count() or 1)


def check_dashboard_host(host: str) -> None:
    """``--dashboard-host`` must be an IP address (or localhost) for Ray's dashboard to bind to."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ClusterError(f"--dashboard-host {host!r}: not an IP address to listen on; use 127.0.0.1 (default, "
                               "this machine only) or an address of this machine") from None  # fmt: skip


def check_local_resources(config: SweepConfig) -> None:
    """Before an embedded local Ray starts: can this machine host one trial at all?"""
    import ray

    if ray.is_initialized():  # a cluster is already there: ask it
        check_resources_feasible(config)
        return
    need = trial_resources(config)
    have = {"cpu": _local_cpus(), "gpu": 0.0}
    if need["gpu"] > 0:  # torch only when it matters: importing it takes seconds
        import torch

        have["gpu"] = float(torch.cuda.device_count())
    if need["cpu"] > have["cpu"] or need["gpu"] > have["gpu"]:
        raise ClusterError(
            f"tune.resources_per_trial asks for {need['cpu']:g} CPU and {need['gpu']:g} GPU per trial, but this "
            f"machine (the embedded local Ray) has {have['cpu']:g} CPU and {have['gpu']:g} GPU; lower "
            "resources_per_trial (e.g. --set tune.resources_per_trial.gpu=0) or pass --address of a cluster that has them"
        )


def use_cluster_token() -> bool:
    """Turn Ray's token authentication on for this process when a token is at hand.

    A Ray 2.60 cluster started with a token refuses clients that do not send it, and a client sends
    it only with ``RAY_AUTH_MODE=token``; so when the mode is not set and a token is available
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), set it. An explicit
    ``RAY_AUTH_MODE`` is always respected.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return os.environ["RAY_AUTH_MODE"].lower() == "token"
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:  # Ray caches its configuration when first imported: refresh it
            from ray._raylet import Config

            Config.initialize("")
        return True
    return False


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
    raise ClusterError(
        f"tune.resources_per_trial asks for {need['cpu']:g} CPU and {need['gpu']:g} GPU per trial, but the largest "
        f"node of this cluster has {best[0]:g} CPU and {best[1]:g} GPU; lower resources_per_trial "
        "(e.g. with --set tune.resources_per_trial.gpu=0) or add a node that has them"
    )


# ------------------------------------------------------------------------------------------------
# Running and resuming


def default_run_name(config: SweepConfig) -> str:
    """The config's name and the local time: ``digits_quick_20260101-120000``."""
    return f"{config.name}_{time.strftime('%Y%m%d-%H%M%S')}"


def plan_run_dir(config: SweepConfig, *, storage: str | Path, name: str | None) -> storage_.Location:
    """``storage/name`` (name defaults to the config's name and a timestamp); refuses to reuse a run.

    ``storage`` is a local folder or a filesystem URI (``s3://bucket/runs``, ``file:///shared/runs``)."""
    if name is None:
        name = default_run_name(config)
    try:
        _check_name(name)
    except ValueError as exc:
        raise SweepError(f"--name: {exc}") from None
    location = storage_.locate(storage, what="--storage")
    if location.local is not None:  # a local folder (or file://): checked like every output folder
        local = files.output_folder(location.local, "--storage").resolve()
        run_dir = storage_.locate(str(local), what="--storage") / name
        check_run_dir_unused(run_dir.local)
        return run_dir
    run_dir = location / name
    try:
        taken = bool(storage_.listdir(run_dir))
    except OSError as exc:
        raise SweepError(f"--storage {storage}: cannot be read ({exc}); check the path, the URI's options and "
                         "the credentials") from None  # fmt: skip
    if taken:
        raise SweepError(f"{run_dir}: already holds a run; continue it with "
                         f"`{shlex.join(['dnr-sweep', 'resume', str(run_dir)])}` or choose another --name")  # fmt: skip
    return run_dir


def check_run_dir_unused(run_dir: Path) -> None:
    """Refuse a run folder that holds anything but a lock file (call again once its lock is held)."""
    if run_dir.is_file():
        raise PathError(f"{run_dir}: a file is in the way of the run folder; choose another --name")
    if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise SweepError(f"{run_dir}: already holds a run; continue it with "
                         f"`{shlex.join(['dnr-sweep', 'resume', str(run_dir)])}` or choose another --name")  # fmt: skip


def prepare_run_dir(run_dir: storage_.Location, *, config_path: Path, overrides: list[str]) -> storage_.Location:
    """Create the run folder with the input config as given, the ``--set`` overrides and the config's
    SHA-256 (``resume`` checks the config is unchanged)."""
    text = Path(config_path).read_bytes()
    storage_.write_bytes(run_dir / CONFIG_FILE, text)
    state = json.dumps({"overrides": list(overrides), "config_source": str(config_path),
                        "config_sha256": hashlib.sha256(text).hexdigest()})  # fmt: skip
    storage_.write_text(run_dir / SWEEP_FILE, state)
    return run_dir


def load_run_dir_config(run_dir: storage_.Location) -> SweepConfig:
    """The sweep config a run folder was started with (its config.yaml plus the saved overrides)."""
    if run_dir.local is None:  # remote storage: the two small files, read through pyarrow.fs
        with storage_.staged(run_dir, include=lambda name: name in (CONFIG_FILE, SWEEP_FILE)) as local:
            return _load_run_dir_config(local, shown=run_dir)
    return _load_run_dir_config(run_dir.local, shown=run_dir)


def _load_run_dir_config(run_dir: Path, *, shown: Any) -> SweepConfig:
    """``run_dir``: the run folder or a local copy of its two files; ``shown``: how messages name it."""
    if not run_dir.is_dir():
        what = "a file" if run_dir.exists() else "no such folder"
        raise PathError(f"{shown}: {what}; pass the run folder `dnr-sweep run` printed")
    if not (run_dir / CONFIG_FILE).is_file():
        raise SweepError(f"{shown}: not a dnr-sweep run folder (no {CONFIG_FILE}); pass the folder "
                         "`dnr-sweep run` printed")  # fmt: skip
    overrides: list[str] = []
    sweep_file = run_dir / SWEEP_FILE
    if sweep_file.is_file():
        expected = 'the JSON object `dnr-sweep run` wrote: {"overrides": ["key=value", ...], ...}'
        fix = ("Restore it, or write {\"overrides\": []} there if the run used no --set (or the --set values it "
               "used, as a list)")  # fmt: skip
        try:
            saved = json.loads(sweep_file.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise InputFileError(sweep_file, "is not readable JSON (corrupt or truncated)", expected=expected,
                                 fix=fix) from None  # fmt: skip
        overrides = saved.get("overrides") if isinstance(saved, dict) else None  # type: ignore[assignment]
        if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
            raise InputFileError(sweep_file, "has no list of strings under 'overrides'", expected=expected, fix=fix)
        digest = saved.get("config_sha256")
        if isinstance(digest, str) and hashlib.sha256((run_dir / CONFIG_FILE).read_bytes()).hexdigest() != digest:
            raise InputFileError(run_dir / CONFIG_FILE, "changed since the sweep started (its SHA-256 differs from "
                                 f"the one {SWEEP_FILE} recorded)", expected="the config the sweep started with",
                                 fix="Restore it (the trials were sampled from it); to change the sweep, start a "
                                     "new one with `dnr-sweep run`")  # fmt: skip
    return load_sweep_config(run_dir / CONFIG_FILE, overrides)


TUNER_FILE = "tuner.pkl"  # Ray Tune's (Tuner.restore reads it)
EXPERIMENT_STATE_GLOB = "experiment_state-*.json"  # Ray Tune's; the newest one is restored

#: modules a pickle of Tune's state never refers to, but an attack would (the check is a screen:
#: Tune's state is cloudpickle, and `resume` trusts the folder, as the README says)
_HOSTILE_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pty", "code",
    "codeop", "ctypes", "webbrowser", "marshal", "pickle", "_pickle", "multiprocessing", "asyncio", "signal",
})  # fmt: skip
_HOSTILE_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "open", "breakpoint", "input"})


_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                         "STRING"})  # fmt: skip


def _pickle_problem(data: bytes) -> str | None:
    """Why ``data`` is not a plausible Tune pickle (empty, truncated, garbage, or importing from a
    module an attack would use), or ``None``. Reads the opcodes only; nothing is unpickled.

    ``STACK_GLOBAL`` takes its module and name from the two values pushed before it; they are
    tracked through the memo (``MEMOIZE``/``BINPUT``, ``BINGET``), as cloudpickle reuses them.
    """
    if not data:
        return "is empty"
    if data[:1] != b"\x80":  # PROTO: every pickle protocol >= 2 (Tune writes 5) starts with it
        return "is not a pickle (no protocol header)"
    memo: dict[int, object] = {}
    pushed: list[object] = []  # the values the opcodes pushed, strings where known, else None
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            module = qualname = None
            if name in _STRING_OPS:
                pushed.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = pushed[-1] if pushed else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                pushed.append(memo.get(int(arg)))
            elif name == "STACK_GLOBAL":
                if len(pushed) >= 2 and isinstance(pushed[-2], str) and isinstance(pushed[-1], str):
                    module, qualname = pushed[-2], pushed[-1]
                pushed.append(None)
            elif name in ("GLOBAL", "INST"):
                module, _, qualname = str(arg).partition(" ")
                pushed.append(None)
            else:
                pushed.append(None)
            if module is not None:
                module = _compat_pickle.IMPORT_MAPPING.get(module, module)  # protocol 2 spells Python 2 names
                root = module.split(".")[0]
                if root in _HOSTILE_MODULES or (root == "builtins" and qualname in _HOSTILE_BUILTINS):
                    return f"imports {module}.{qualname}, which Tune's state never does (a hostile file?)"
    except (ValueError, IndexError, RecursionError) as exc:
        return f"is not a complete pickle ({type(exc).__name__}: {exc})"
    return None


def check_restorable(run_dir: Path) -> None:
    """Before Ray starts: the run folder holds Tune state ``Tuner.restore`` can read.

    Checks that ``tuner.pkl`` is a complete pickle that names no module an attack would use (its
    opcodes are read, nothing is unpickled) and that the newest ``experiment_state-*.json`` is JSON
    with Tune's keys. ``Tuner.restore`` itself unpickles both: resume only folders you created.
    """
    tuner = run_dir / TUNER_FILE
    states = sorted(run_dir.glob(EXPERIMENT_STATE_GLOB))
    if not tuner.is_file() or not states:
        missing = TUNER_FILE if not tuner.is_file() else EXPERIMENT_STATE_GLOB
        raise SweepError(
            f"{run_dir}: no Ray Tune experiment to resume (no {missing}): the sweep stopped before Tune saved "
            f"its state, or this is not a sweep's run folder (a `dnr-sweep train` folder continues with "
            f"`dnr-sweep train CONFIG --out DIR --resume`). Start the sweep again into a new --name"
        )
    fix = ("Restore the run folder from a backup, or start the sweep again into a new --name (finished trials' "
           "results stay readable with `dnr-sweep report`)")  # fmt: skip
    try:
        problem = _pickle_problem(tuner.read_bytes())
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    if problem:
        raise InputFileError(tuner, problem, expected="Ray Tune's saved Tuner (a pickle Tune wrote)", fix=fix)
    newest = states[-1]
    try:
        state = json.loads(newest.read_bytes().decode("utf-8"))
        ok = isinstance(state, dict) and {"runner_data", "trial_data"} <= set(state)
        problem = _embedded_pickle_problem(state) if ok else "is JSON without Tune's runner_data and trial_data"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        problem = "is not readable JSON (corrupt or truncated)"
    if problem:
        raise InputFileError(newest, problem, expected="Ray Tune's experiment state (JSON Tune wrote)", fix=fix)


_CLOUDPICKLE_IN_JSON = "CLOUDPICKLE_FALLBACK"  # Tune's marker of a pickle embedded (as hex) in its JSON state


def _embedded_pickle_problem(state: Any) -> str | None:
    """Screen the pickles Tune embeds in its JSON state (also inside JSON-encoded strings) like tuner.pkl."""
    stack = [state]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("_type") == _CLOUDPICKLE_IN_JSON:
                try:
                    problem = _pickle_problem(bytes.fromhex(str(node.get("value"))))
                except ValueError:
                    problem = "is not hex"
                if problem:
                    return f"holds an embedded pickle that {problem}"
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node[:1] in ("{", "["):  # Tune stores each trial as a JSON string
            with contextlib.suppress(json.JSONDecodeError):
                stack.append(json.loads(node))
    return None


def _outcome(result_grid: Any, run_dir: storage_.Location) -> SweepOutcome:
    trials = getattr(getattr(result_grid, "_experiment_analysis", None), "trials", None) or []
    return outcome_from_trials(trials, run_dir)


def outcome_from_trials(trials: Any, run_dir: Any) -> SweepOutcome:
    """Statuses, sampled configs and error lines of Tune's trials (during or after ``fit``)."""
    outcome = SweepOutcome(run_dir=run_dir)
    for trial in trials:
        outcome.statuses[trial.trial_id] = trial.status
        outcome.configs[trial.trial_id] = dict(trial.config)
        if trial.status == "ERROR":
            text = ""
            if trial.error_file and Path(trial.error_file).is_file():
                lines = Path(trial.error_file).read_text(errors="replace").strip().splitlines()
                text = lines[-1] if lines else ""
            outcome.errors[trial.trial_id] = text or "failed (see its error.txt)"
        elif trial.status != "TERMINATED":
            outcome.interrupted = True  # after fit; while it runs, such trials are simply not done yet
    return outcome


def fit(config: SweepConfig, run_dir: storage_.Location, *, restore: bool) -> SweepOutcome:
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic trial table, readable in a terminal
    if restore:
        tuner = tune.Tuner.restore(run_dir.uri, trainable=make_trainable(config), resume_unfinished=True,
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
