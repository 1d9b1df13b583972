"""Dry preparation: a config that validates must also *run*. Checked in seconds, before any expensive work.

The schema checks values and a few combinations; what it cannot see needs data set sizes, model shapes
and masks, and would otherwise fail in every trial after Ray started. :func:`check_sweep` (``validate``,
``run``) and :func:`check_run` (``train``) prepare, without Ray, data or training, the base config,
each search dimension's probe values and their combinations (up to :data:`MAX_COMBINATIONS`): split
sizes against ``data.val_size`` and ``train.batch_size``, the model run on a blank image, the masks
built, the ``evaluate:`` block, device and precision; and once per sweep the ``report:`` settings.

Every problem becomes a line of one :class:`~dnr_sweep.foundation.errors.ConfigError` naming the field,
the probe and the fix; a schedule longer than the run is a :class:`~dnr_sweep.foundation.errors.ConfigWarning`.
Nothing here imports Ray or touches the disk.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dnr_sweep.config import RunConfig, SweepConfig, leaf_paths, run_config_from_flat
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import ConfigError, ConfigWarning, ExportError

#: reflect padding of the random-crop augmentation (data.py's transforms and gpu_data's loader)
CROP_PADDING = 4
#: optional packages an evaluate: attack needs
_ATTACK_PACKAGES = {"autoattack": ("pyautoattack", "pip install 'dnr-sweep[eval]' (or pyautoattack==0.2.0)")}


@dataclass(frozen=True)
class Probe:
    """One configuration the run can meet: ``where`` says which (``base config``, ``search.dnr.density=0.05``)."""

    where: str
    config: RunConfig


#: up to this many combinations of the search dimensions' probe values are all prepared
MAX_COMBINATIONS = 256


def probes(config: SweepConfig) -> list[Probe]:
    """The base config and each search dimension's probe values (others at the base); then every
    combination of the probe values when there are at most :data:`MAX_COMBINATIONS` (a grid runs
    them all), else the two corners (every dimension at its first, then at its last value)."""
    base = config.base_run()
    found = [Probe("base config", base)]
    dims = {path: spec.probe_values() for path, spec in config.search.items()}
    for path, values in dims.items():
        for value in values:
            found.append(Probe(f"search.{path}={value!r}", run_config_from_flat(base, {path: value})))
    if len(dims) < 2:
        return found
    if math.prod(len(values) for values in dims.values()) <= MAX_COMBINATIONS:
        combinations = [dict(zip(dims, values, strict=True)) for values in itertools.product(*dims.values())]
    else:
        combinations = [{path: values[pick] for path, values in dims.items()} for pick in (0, -1)]
    for flat in combinations:
        text = ", ".join(f"search.{k}={v!r}" for k, v in flat.items())
        try:
            found.append(Probe(text, run_config_from_flat(base, flat)))
        except ConfigError as exc:  # each value is valid alone; together they are not
            raise ConfigError([f"{m.split(': ', 1)[-1]} [at {text}]" for m in exc.messages]) from None
    return found


# ------------------------------------------------------------------------------------------------
# One run config


@dataclass
class _Cache:
    """Models and masks already prepared, keyed by what they depend on (probes repeat them)."""

    models: dict[tuple, Any] = field(default_factory=dict)
    outcomes: dict[tuple, list[str]] = field(default_factory=dict)


def _train_images(config: RunConfig) -> int:
    return dataset_specs.get(config.data.dataset).train_size - config.data.val_size


def check_data(config: RunConfig) -> list[str]:
    """Split sizes, channels and image size against the data set's facts."""
    spec = dataset_specs.get(config.data.dataset)
    data = config.data
    problems = []
    if data.val_size >= spec.train_size:
        most = spec.train_size - 1
        problems.append(
            f"data.val_size: {data.val_size} is not smaller than the {spec.name} training set ({spec.train_size} "
            f"images); set it to at most {most} (e.g. {spec.train_size // 10}, a tenth), or to 0 with "
            "train.select_on: test"
        )
    if data.channels is not None and data.channels not in spec.channel_options:
        options = " or ".join(map(str, spec.channel_options))
        problems.append(f"data.channels: {spec.name} images have {spec.in_channels} channel(s) and can be given "
                        f"as {options}, not {data.channels}; leave data.channels unset")  # fmt: skip
    size = data.image_size or spec.image_size
    if spec.augmented and size <= CROP_PADDING:
        problems.append(
            f"data.image_size: {size} pixels is too small for {spec.name}'s random-crop augmentation (reflect "
            f"padding {CROP_PADDING} needs larger images); use {2 * CROP_PADDING} or more, or leave it unset"
        )
    if config.evaluate is not None and config.evaluate.split == "val" and data.val_size == 0:
        problems.append("evaluate.split: 'val' but data.val_size is 0 (no validation split); set a data.val_size "
                        "or evaluate.split: test")  # fmt: skip
    return problems


def schedule_warnings(config: RunConfig) -> list[str]:
    """A schedule longer than the run: milestones at or past the last epoch never fire (PyTorch's
    MultiStepLR accepts them), a warmup as long as the run leaves it clean-only. Warnings, not refusals:
    shortening a paper config (``--set train.epochs=4``) is the usual first smoke test."""
    train, found = config.train, []
    late = [m for m in train.lr_milestones if m >= train.epochs]
    if config.method != "dnr":  # the baselines anneal each phase's own rate (config/methods.py)
        return found
    if late:
        scaled = _scaled_milestones(train.epochs)
        found.append(f"train.lr_milestones: {late} are not below train.epochs ({train.epochs}), so the learning "
                     f"rate never decays there; running anyway. For the schedule scaled to {train.epochs} epochs: "
                     f"--set 'train.lr_milestones={scaled}'")  # fmt: skip
    if train.warmup_epochs >= train.epochs:
        found.append(f"train.warmup_epochs ({train.warmup_epochs}) is not below train.epochs ({train.epochs}), so every "
                     "epoch is clean-only warmup and the hybrid (PGD) loss never runs; running anyway. To try the "
                     f"whole method: --set train.warmup_epochs={max(0, train.epochs // 4)}")  # fmt: skip
    return found


def _scaled_milestones(epochs: int) -> list[int]:
    """The paper's 200-epoch milestones (80, 120, 160) scaled to ``epochs``."""
    return sorted({max(1, round(epochs * f)) for f in (0.4, 0.6, 0.8)} - {epochs}) or []


def check_evaluate(config: RunConfig) -> list[str]:
    """Optional packages the ``evaluate:`` attacks need, in this environment."""
    problems = []
    for attack in config.evaluate.attacks if config.evaluate is not None else []:
        package = _ATTACK_PACKAGES.get(attack)
        if package is not None and importlib.util.find_spec(package[0]) is None:
            problems.append(f"evaluate.attacks: {attack!r} needs the {package[0]} package, which is not installed "
                            f"here; {package[1]}, or drop it from evaluate.attacks")  # fmt: skip
    return problems


def check_device(config: RunConfig, *, trial_gpus: float | None) -> list[str]:
    """Device and precision against where the run trains.

    Args:
        trial_gpus: a sweep trial's ``tune.resources_per_trial.gpu`` (Ray hides every GPU from a
            trial that asks for none); ``None`` for ``dnr-sweep train`` here (this machine's CUDA).
    """
    device, precision = config.train.device, config.train.precision
    if trial_gpus is None:
        import torch  # lazy: torch takes seconds to import; `run` checks the config and the address first

        cuda = torch.cuda.is_available()
        where = "this machine has no CUDA device"
    else:
        cuda = trial_gpus > 0
        where = "tune.resources_per_trial.gpu is 0, so a trial sees no GPU"
    fix_gpu = "use train.device: auto or cpu" + (
        "" if trial_gpus is None else ", or ask for tune.resources_per_trial.gpu"
    )
    problems = []
    if device == "cuda" and not cuda:
        problems.append(f"train.device: 'cuda' but {where}; {fix_gpu}")
    if precision == "bf16" and (device == "cpu" or not cuda):
        reason = "train.device is 'cpu'" if device == "cpu" else where
        problems.append(f"train.precision: bf16 runs on CUDA only, but {reason}; use precision: auto or fp32")
    return problems


def _model_key(config: RunConfig) -> tuple:
    spec = dataset_specs.get(config.data.dataset)
    return (config.model.arch, config.model.width, config.data.channels or spec.in_channels, spec.num_classes,
            config.data.image_size or spec.image_size)  # fmt: skip


def check_model(config: RunConfig, cache: _Cache) -> list[str]:
    """Build the model and (channel pruning) its masks on the CPU; run blank images through it."""
    # lazy: torch takes seconds to import; `run` checks the config and the address first
    import torch

    from dnr_sweep.models.architectures import get_model
    from dnr_sweep.sparsity import Masking

    arch, width, channels, classes, size = key = _model_key(config)
    if key not in cache.models:
        cache.models[key] = get_model(arch, num_classes=classes, in_channels=channels, width=width)
    model = cache.models[key]
    n_train = _train_images(config)
    single_last = n_train % config.train.batch_size == 1
    problems: list[str] = []

    shape_key = ("shapes", key, single_last)
    if shape_key not in cache.outcomes:  # [why the images do not fit] or [] ; then whether one image trains
        cache.outcomes[shape_key] = _shape_problems(model, channels, size, single_last)
    for problem in cache.outcomes[shape_key]:
        if problem == _SINGLE_IMAGE:
            problems.append(
                f"train.batch_size: {config.train.batch_size} leaves a last batch of a single image in every epoch "
                f"({n_train} training images), which BatchNorm cannot train on; change train.batch_size or "
                "data.val_size by one"
            )
        else:
            problems.append(f"model.arch: {arch} cannot take {channels}x{size}x{size} images ({problem}); use a "
                            "larger data.image_size (e.g. 32) or a model made for small images (smallcnn)")  # fmt: skip

    dnr = config.dnr
    if dnr.pruning == "channel":
        mask_key = ("masks", key, dnr.density, dnr.prune_linear)
        if mask_key not in cache.outcomes:
            found = cache.outcomes[mask_key] = []
            try:
                # built, never stepped: no optimizer (constructing one imports torch._dynamo, seconds)
                Masking(model, None, density=dnr.density, pruning=dnr.pruning,  # type: ignore[arg-type]
                        prune_rate=dnr.prune_rate, total_epochs=config.train.epochs, prune_linear=dnr.prune_linear,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
            except ValueError as exc:
                found.append(f"dnr.density: {exc}")
        problems += cache.outcomes[mask_key]
    from dnr_sweep import methods  # lazy: the methods import torch (see check_model)

    problems += methods.get(config.method).check(config, model)  # e.g. ADMM's per-layer ratios vs the layers
    if config.export and methods.build(config).pruning_type in ("channel", "channel_group"):
        export_key = ("export", key)
        if export_key not in cache.outcomes:  # what the export after training will run, estimated now
            from dnr_sweep.export import check_input_size  # lazy: torch, as in check_model

            try:
                check_input_size(model, (channels, size, size), what="at the run's image size",
                                 smaller="use a smaller data.image_size, or set export: false")  # fmt: skip
                cache.outcomes[export_key] = []
            except ExportError as exc:
                cache.outcomes[export_key] = [f"export: {exc}"]
        problems += cache.outcomes[export_key]
    return problems


_SINGLE_IMAGE = "a single image cannot train"


def _shape_problems(model: Any, channels: int, size: int, single_last: bool) -> list[str]:
    """Run a blank image through ``model`` (and, when an epoch ends on one image, in training mode)."""
    import torch  # lazy: as in check_model

    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, size, size))
    except (RuntimeError, ValueError) as exc:  # torch's shape errors: the images are too small
        return [_first_line(exc)]
    if single_last:
        try:
            with torch.no_grad():
                model.train()(torch.zeros(1, channels, size, size))
        except (RuntimeError, ValueError):  # BatchNorm: "Expected more than 1 value per channel"
            return [_SINGLE_IMAGE]
    return []


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__


def check_config(config: RunConfig, *, trial_gpus: float | None, cache: _Cache | None = None) -> list[str]:
    """Every problem of one run config (messages start with the field)."""
    cache = cache or _Cache()
    problems = check_data(config) + check_evaluate(config) + check_device(config, trial_gpus=trial_gpus)
    if not any(p.startswith(("data.val_size", "data.channels", "data.image_size")) for p in problems):
        problems += check_model(config, cache)  # the model needs valid data facts
    return problems


# ------------------------------------------------------------------------------------------------
# The report block


def reported_columns(config: SweepConfig) -> set[str]:
    """Columns of the run's ``results.parquet`` (besides ``layer_density/<layer>``), from its config."""
    base = config.base_run()
    columns = {"trial_id", "status", "early_stopped", "epochs_completed", *rc.RUN_KEYS, *rc.TEST_METRICS,
               *rc.SPARSITY_METRICS, *rc.selection_metrics(base.train.select_on), *rc.COST_METRICS,
               *rc.METHOD_RUN_METRICS}  # fmt: skip
    if base.evaluate is not None:
        columns |= {rc.attack_metric(a, base.evaluate.split) for a in base.evaluate.attacks}
        if base.evaluate.checks:
            columns.add(rc.MASKING_CHECKS_PASSED)
    pruning = {base.dnr.pruning} | set(
        config.search["dnr.pruning"].probe_values() if "dnr.pruning" in config.search else ()
    )
    if base.export and "channel" in pruning:
        columns |= {rc.PARAMS_PHYSICAL, rc.MACS, rc.SPEEDUP_CPU}
    return columns | {"model.arch", "data.dataset"} | set(config.search)


def check_report(config: SweepConfig) -> list[str]:
    """``report:`` x, y, objectives and group_by against the columns the run will write."""
    report, problems = config.report, []
    columns = reported_columns(config)
    accuracies = sorted(c for c in columns if c.endswith("_acc"))

    def unknown(name: str) -> bool:
        return name not in columns and not rc.is_layer_metric(name)

    if unknown(report.x):
        problems.append(f"report.x: no trial reports {report.x!r}; use a column such as compression, density "
                        "or a swept parameter")  # fmt: skip
    for name in report.y:
        if name not in accuracies:
            problems.append(f"report.y: no trial reports {name!r}; this run reports {', '.join(accuracies)}")
    for name in report.objectives or {}:
        if unknown(name):
            problems.append(f"report.objectives: no trial reports {name!r}; valid: compression, density, "
                            f"{', '.join(accuracies)}")  # fmt: skip
    if report.group_by is not None and unknown(report.group_by) and report.group_by not in leaf_paths():
        problems.append(f"report.group_by: {report.group_by!r} is not a config field or column; "
                        "e.g. dnr.pruning, or a swept parameter")  # fmt: skip
    return problems


# ------------------------------------------------------------------------------------------------
# Entry points


def _warn(source: str, configs: Iterable[RunConfig]) -> None:
    """Each distinct :func:`milestone_warning` once."""
    for text in dict.fromkeys(text for config in configs for text in schedule_warnings(config)):
        warnings.warn(f"{source}: {text}", ConfigWarning, stacklevel=3)


def _raise(source: str, found: Iterable[tuple[str, str]]) -> None:
    lines, seen = [], set()
    for where, problem in found:
        if problem in seen:
            continue
        seen.add(problem)
        lines.append(f"{source}: {problem}" + ("" if where in ("base config", "report") else f" [at {where}]"))
    if lines:
        raise ConfigError(lines)


def check_sweep(config: SweepConfig, source: str) -> None:
    """Dry-prepare every probe of a sweep (see the module docstring); :class:`ConfigError` if any fails."""
    cache = _Cache()
    gpus = config.tune.resources_per_trial.gpu
    found = [("report", p) for p in check_report(config)]
    found_probes = probes(config)
    for probe in found_probes:
        found += [(probe.where, p) for p in check_config(probe.config, trial_gpus=gpus, cache=cache)]
    _raise(source, found)
    _warn(source, (probe.config for probe in found_probes))


def check_run(config: RunConfig, source: str) -> None:
    """Dry-prepare one ``dnr-sweep train`` run on this machine; :class:`ConfigError` if it cannot run."""
    _raise(source, [("base config", p) for p in check_config(config, trial_gpus=None)])
    _warn(source, [config])
