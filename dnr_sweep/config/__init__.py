"""The YAML schema of a DNR run and of a sweep, validated once at the boundary.

Everything below this package receives typed objects (``RunConfig``, ``SweepConfig``), never raw
dicts. A YAML file is read with a safe loader (:mod:`dnr_sweep.foundation.yaml_safe`); every problem is
reported as ``<file>: <field.path>: <what is wrong and how to fix it>`` through :class:`ConfigError`, so the
command line can print it without a traceback and exit with code 2 before any expensive work.

The shape (see the README)::

    name, data, model, train, dnr, attack        -> RunConfig (one training run)      run.py
    + search, tune, report                       -> SweepConfig (a Ray Tune sweep)     sweep.py

One module per concept: ``fields`` (value types and bounds), ``run``, ``sweep``, ``overrides`` (dotted
paths, ``--set``), ``messages`` (error formatting), ``checks`` (cross-field checks), ``load`` (reading).
This module re-exports their public names: ``from dnr_sweep.config import RunConfig``.
"""

from dnr_sweep.config.checks import (
    in_domain,
    validate_search,
    validate_tune,
)
from dnr_sweep.config.fields import (
    MAX_IMAGE_SIZE,
    MAX_NAME,
    MAX_THREADS,
    MAX_TRIALS,
    MAX_WIDTH,
    MAX_WORKERS,
    NAME_RE,
    NUMBER,
    Density,
    Eps,
    Fraction,
    Int,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    RunName,
    Strict,
    attack_name,
    check_name,
    in_range,
    parse_eps,
)
from dnr_sweep.config.load import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_VALUES,
    load_run_config,
    load_sweep_config,
    read_yaml,
    run_config_from_flat,
    to_yaml_dict,
    validate_sweep,
)
from dnr_sweep.config.messages import (
    format_error,
    validation_messages,
)
from dnr_sweep.config.overrides import (
    apply_overrides,
    leaf_paths,
    set_path,
)
from dnr_sweep.config.run import (
    AttackConfig,
    DataConfig,
    DNRConfig,
    EvalAttackConfig,
    EvaluateConfig,
    FGSMConfig,
    ModelConfig,
    PGDConfig,
    RunConfig,
    TrainAttackConfig,
    TrainConfig,
)
from dnr_sweep.config.sweep import (
    AshaConfig,
    Direction,
    Metric,
    OptunaConfig,
    ReportConfig,
    Resources,
    SchedulerConfig,
    SearchAlgConfig,
    SearchSpec,
    SweepConfig,
    TuneConfig,
)

__all__ = [
    "AshaConfig",
    "AttackConfig",
    "DNRConfig",
    "DataConfig",
    "Density",
    "Direction",
    "Eps",
    "EvalAttackConfig",
    "EvaluateConfig",
    "FGSMConfig",
    "Fraction",
    "Int",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_VALUES",
    "MAX_IMAGE_SIZE",
    "MAX_NAME",
    "MAX_THREADS",
    "MAX_TRIALS",
    "MAX_WIDTH",
    "MAX_WORKERS",
    "Metric",
    "ModelConfig",
    "NAME_RE",
    "NUMBER",
    "NonNegFloat",
    "NonNegInt",
    "OptunaConfig",
    "PGDConfig",
    "PosFloat",
    "PosInt",
    "ReportConfig",
    "Resources",
    "RunConfig",
    "RunName",
    "SchedulerConfig",
    "SearchAlgConfig",
    "SearchSpec",
    "Strict",
    "SweepConfig",
    "TrainAttackConfig",
    "TrainConfig",
    "TuneConfig",
    "apply_overrides",
    "attack_name",
    "check_name",
    "format_error",
    "in_domain",
    "in_range",
    "leaf_paths",
    "load_run_config",
    "load_sweep_config",
    "parse_eps",
    "read_yaml",
    "run_config_from_flat",
    "set_path",
    "to_yaml_dict",
    "validate_search",
    "validate_sweep",
    "validate_tune",
    "validation_messages",
]
