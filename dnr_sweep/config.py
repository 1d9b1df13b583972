"""The YAML schema of a DNR run and of a sweep, validated once at the boundary.

Everything below this module receives typed objects (``RunConfig``, ``SweepConfig``), never raw
dicts. A YAML file is read with a safe loader (:mod:`dnr_sweep.yaml_safe`); every problem is reported as
``<file>: <field.path>: <what is wrong and how to fix it>`` through :class:`ConfigError`, so the
command line can print it without a traceback and exit with code 2 before any expensive work.

The shape (see ``../shared/DESIGN.md``)::

    name, data, model, train, dnr, attack        -> RunConfig (one training run)
    + search, tune, report                       -> SweepConfig (a Ray Tune sweep)

``search`` maps dotted paths into the run config (``dnr.density``) to one sampling spec each:
``grid``, ``choice``, ``uniform``, ``loguniform``, ``randint`` or ``quniform``. Each path is
checked against the schema and each value (or range end) against the field's type and range.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from dnr_sweep import dataset_specs, yaml_safe
from dnr_sweep import run_contract as rc
from dnr_sweep.attack_names import parse_attack
from dnr_sweep.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Constrained value types with messages that say the valid range and the value given


def _range(lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False):
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    text = f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"

    def check(value: float) -> float:
        bad = (
            (isinstance(value, float) and not math.isfinite(value))
            or (lo is not None and (value <= lo if lo_open else value < lo))
            or (hi is not None and (value >= hi if hi_open else value > hi))
        )
        if bad:
            raise ValueError(f"must be in {text}, got {value}")
        return value

    return AfterValidator(check)


_FRACTION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*/\s*([0-9]*\.?[0-9]+)\s*$")


def parse_eps(value: Any) -> Any:
    """Accept ``8/255``-style strings as well as numbers for attack budgets."""
    if isinstance(value, str):
        match = _FRACTION_RE.match(value)
        if match:
            denominator = float(match.group(2))
            if denominator == 0:
                raise ValueError(f"division by zero in {value!r}")
            return float(match.group(1)) / denominator
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number or a fraction like '8/255', got {value!r}") from None
    return value


def _not_bool(value: Any) -> Any:
    """``true``/``false`` where a number is expected is a mistake (pydantic would read it as 1/0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


_NUMBER = BeforeValidator(_not_bool)

# Upper bounds that keep a config from exhausting the machine before it trains (a width of 100
# builds a model of ~10^11 weights; 10^6 workers or trials fork or allocate without end)
MAX_WIDTH = 4.0
MAX_IMAGE_SIZE = 512
MAX_WORKERS = 64
MAX_THREADS = 1024
MAX_TRIALS = 100_000

Density = Annotated[float, _NUMBER, _range(0.0, 1.0, lo_open=True)]
Fraction = Annotated[float, _NUMBER, _range(0.0, 1.0)]
NonNegFloat = Annotated[float, _NUMBER, _range(0.0, None)]
PosFloat = Annotated[float, _NUMBER, _range(0.0, None, lo_open=True)]
PosInt = Annotated[int, _NUMBER, _range(1, None)]
NonNegInt = Annotated[int, _NUMBER, _range(0, None)]
Int = Annotated[int, _NUMBER]
Eps = Annotated[float, _NUMBER, BeforeValidator(parse_eps), _range(0.0, 1.0)]


class Strict(BaseModel):
    """Base for every config block: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------------------------
# One run


def _dataset_name(value: str) -> str:
    """A name of the dataset registry; its error (naming the value, listing the valid names) otherwise."""
    return dataset_specs.get(value).name


class DataConfig(Strict):
    dataset: Annotated[str, AfterValidator(_dataset_name)] = Field(
        "digits", description=f"one of {', '.join(dataset_specs.DATASET_NAMES)} (dnr_sweep/dataset_specs.py)"
    )
    root: str = Field("~/.cache/dnr-sweep/data", description="where the data set lives (or is downloaded to)")
    download: bool = Field(False, description="download CIFAR through torchvision if missing")
    val_size: NonNegInt = Field(5000, description="images held out of the training set for model selection")
    image_size: Annotated[int, _NUMBER, _range(1, MAX_IMAGE_SIZE)] | None = Field(
        None, description="resize images to this square size (default: the data set's own)"
    )
    channels: Literal[1, 3] | None = Field(None, description="replicate grey digits to 3 channels")
    num_workers: Annotated[int, _NUMBER, _range(0, MAX_WORKERS)] = Field(0, description="DataLoader worker processes")
    gpu_resident: bool | None = Field(
        None, description="keep the training set on the device, crop+flip there; None = on when training on CUDA"
    )

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()


class ModelConfig(Strict):
    arch: Literal["smallcnn", "vgg16", "resnet18"] = "smallcnn"
    width: Annotated[float, _NUMBER, _range(0.0, MAX_WIDTH, lo_open=True)] = Field(
        1.0,
        description=f"multiplier on every hidden channel count (at most {MAX_WIDTH:g}: memory grows with its square)",
    )


class TrainConfig(Strict):
    epochs: PosInt = 200
    batch_size: PosInt = 128
    eval_batch_size: PosInt | None = None
    lr: PosFloat = 0.1
    momentum: Annotated[float, _NUMBER, _range(0.0, 1.0, hi_open=True)] = 0.9
    weight_decay: NonNegFloat = 5.0e-4
    lr_milestones: list[PosInt] = Field(default_factory=lambda: [80, 120, 160])
    lr_gamma: Annotated[float, _NUMBER, _range(0.0, 1.0, lo_open=True)] = 0.2
    warmup_epochs: NonNegInt = Field(5, description="clean-only sparse epochs before the hybrid loss")
    select_on: Literal["val", "test"] = Field(
        "val", description="split that chooses the epoch; 'test' is the paper's protocol (labelled wherever shown)"
    )
    select_metric: str | None = Field(
        None, description="figure that chooses the epoch: val_clean_acc (default), val_fgsm_acc, val_pgd_acc"
    )
    eval_every: PosInt = Field(1, description="robust accuracy of every Nth epoch (always: last, selected)")
    eval_subset: PosInt | None = Field(None, description="images used for per-epoch robust evaluation")
    seed: Int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast on CUDA; auto = bf16 where supported, fp32 on CPU"
    )
    channels_last: bool | None = Field(None, description="NHWC memory format; None = on for CUDA")
    num_threads: Annotated[int, _NUMBER, _range(1, MAX_THREADS)] | None = Field(
        None, description="torch CPU threads (a trial sets its CPU share)"
    )
    compile: bool = Field(False, description="run forward passes through torch.compile (masks, state unchanged)")

    @field_validator("lr_milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"must be strictly increasing, got {value}")
        return value

    @model_validator(mode="after")
    def _selection(self) -> TrainConfig:
        valid = rc.selection_metrics(self.select_on)
        if self.select_metric is not None and self.select_metric not in valid:
            hint = ""
            if self.select_on == "val" and self.select_metric in rc.TEST_SELECTION_METRICS + rc.TEST_METRICS:
                hint = " (selecting on the test split needs select_on: test, the paper's protocol)"
            raise ValueError(
                f"select_metric {self.select_metric!r} is not a figure of the {self.select_on} split; "
                f"valid: {', '.join(valid)}{hint}"
            )
        return self

    @property
    def resolved_select_metric(self) -> str:
        """``select_metric``, defaulting to the selection split's clean accuracy."""
        return self.select_metric or rc.selection_metrics(self.select_on)[0]


class DNRConfig(Strict):
    pruning: Literal["irregular", "channel", "channel_group"] = "irregular"
    density: Density = Field(0.05, description="target fraction of prunable weights kept (1.0 = dense)")
    beta: Fraction = Field(0.5, description="hybrid loss weight of the clean part (1.0 = DNR-C, no PGD)")
    rho: NonNegFloat = Field(1.0e-4, description="dynamic L2 penalty factor")
    prune_rate: Fraction = Field(0.5, description="fraction of active weights rewired after epoch 0, decays to 0")
    dynamic_l2: bool = True
    prune_linear: bool = False


# Baseline methods beside DNR (``method: admm | lasso | hydra``; dnr_sweep/methods/). Each has its
# own phases, each phase its own epochs and initial learning rate, annealed by a cosine to 0 within
# the phase (HYDRA's public code's schedule; Ye et al. and Rakin et al. give none the DNR paper
# repeats); ``train.epochs`` is derived as the sum of the phases, ``train.lr``/``lr_milestones``/
# ``warmup_epochs`` are DNR's and unused. ``beta`` is the clean weight of ``beta * CE(clean) +
# (1 - beta) * CE(adv)`` (0 = Madry adversarial training, as the three papers train), and the
# method's regulariser is added outside it. Momentum and weight decay: ``train.momentum`` and
# ``train.weight_decay``; the optimizer's momentum restarts at every phase (each paper's phases are
# separate runs). Only epochs of the final phase are selected (``train.select_metric`` on validation).


def _layer_ratios(value: Any) -> str | dict[str, float]:
    """``naive``, ``uniform`` or ``{layer: density}``, each density in (0, 1]; one message otherwise."""
    if isinstance(value, str) and value in ("naive", "uniform"):
        return value
    if isinstance(value, Mapping) and value:
        ratios = {}
        for layer, density in value.items():
            if isinstance(density, bool) or not isinstance(density, int | float) or not 0 < density <= 1:
                raise ValueError(f"layer {layer!r}: a density must be a number in (0, 1], got {density!r}")
            ratios[str(layer)] = float(density)
        return ratios
    raise ValueError(f"must be naive, uniform or a mapping {{layer: density}}, got {value!r}")


LayerRatios = Annotated[str | dict[str, float], PlainValidator(_layer_ratios)]


class ADMMConfig(Strict):
    """ADMM robust pruning (Ye et al., ICCV 2019; the DNR paper's [17], Section 4.3)."""

    density: Density = Field(0.05, description="overall target density (layer_ratios naive/uniform)")
    layer_ratios: LayerRatios = Field(
        "naive",
        description="per-layer densities: naive (first prunable layer dense, the rest one density meeting "
        "the target: the paper's 'ADMM naive'), uniform (every layer at density), or {layer: density}",
    )
    rho: PosFloat = Field(1.0e-3, description="ADMM penalty rho_admm (paper Section 4.3: 1e-3)")
    beta: Fraction = Field(0.0, description="clean weight of the loss (0: adversarial training only)")
    pretrain_epochs: NonNegInt = Field(100, description="dense adversarial pre-training")
    admm_epochs: PosInt = Field(30, description="ADMM pruning epochs (paper: 30); Z and U updated after each")
    retrain_epochs: PosInt = Field(50, description="masked adversarial retraining after the hard prune")
    pretrain_lr: PosFloat = 0.1
    admm_lr: PosFloat = 0.01
    retrain_lr: PosFloat = 0.01

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.admm_epochs + self.retrain_epochs


class LassoConfig(Strict):
    """L1 Lasso robust sparse regularisation (Rakin et al. 2019; the DNR paper's [21])."""

    lam: PosFloat = Field(1.0e-5, description="L1 coefficient lambda of lambda * sum |W| (prunable weights)")
    threshold: PosFloat = Field(1.0e-3, description="after the L1 phase, weights with |w| below this become 0")
    beta: Fraction = Field(0.0, description="clean weight of the loss (0: adversarial training only)")
    lasso_epochs: PosInt = Field(100, description="adversarial training with the L1 term, from scratch")
    retrain_epochs: PosInt = Field(50, description="masked adversarial retraining after thresholding")
    lasso_lr: PosFloat = 0.1
    retrain_lr: PosFloat = 0.01

    @property
    def total_epochs(self) -> int:
        return self.lasso_epochs + self.retrain_epochs


class HydraConfig(Strict):
    """HYDRA (Sehwag et al., NeurIPS 2020; the DNR paper's [20])."""

    density: Density = Field(0.05, description="fraction k of each prunable layer's weights kept (top-k scores)")
    beta: Fraction = Field(0.0, description="clean weight of the loss (0: adversarial training only)")
    pretrain_epochs: NonNegInt = Field(100, description="dense adversarial pre-training")
    prune_epochs: PosInt = Field(20, description="score optimisation, weights frozen (HYDRA: 20)")
    finetune_epochs: PosInt = Field(100, description="adversarial fine-tuning of the kept weights")
    pretrain_lr: PosFloat = 0.1
    prune_lr: PosFloat = Field(0.1, description="learning rate of the importance scores")
    finetune_lr: PosFloat = 0.01

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.prune_epochs + self.finetune_epochs


class TrainAttackConfig(Strict):
    kind: Literal["pgd", "fgsm"] = "pgd"
    eps: Eps = 8 / 255
    alpha: PosFloat = 0.01
    steps: PosInt = 7
    random_start: bool = True
    bn_mode: Literal["eval", "train"] = Field(
        "eval", description="BatchNorm mode while generating training adversaries (eval = running stats)"
    )


class FGSMConfig(Strict):
    eps: Eps = 8 / 255


class PGDConfig(Strict):
    eps: Eps = 8 / 255
    alpha: PosFloat = 0.01
    steps: PosInt = 7
    random_start: bool = True
    restarts: PosInt = 1


class EvalAttackConfig(Strict):
    fgsm: FGSMConfig = Field(default_factory=FGSMConfig)
    pgd: PGDConfig = Field(default_factory=PGDConfig)


class AttackConfig(Strict):
    train: TrainAttackConfig = Field(default_factory=TrainAttackConfig)
    eval: EvalAttackConfig = Field(default_factory=EvalAttackConfig)


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


MAX_NAME = 100  # a folder name; file systems stop at 255 bytes, Tune adds to it


def _check_name(value: str) -> str:
    if len(value) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters (a folder name), got {len(value)}")
    if not NAME_RE.match(value) or ".." in value:
        raise ValueError(f"must be a plain folder name (letters, digits, '_', '-', '.'; no '/' or '..'), got {value!r}")
    return value


RunName = Annotated[str, AfterValidator(_check_name)]


def _attack_name(value: str) -> str:
    """The canonical spelling of an attack name (``' PGD20'`` -> ``'pgd20'``); the grammar's error otherwise."""
    return parse_attack(value).name


class EvaluateConfig(Strict):
    """Stronger attacks run on the selected model at the end of a run (columns ``<attack>_acc``)."""

    attacks: list[Annotated[str, AfterValidator(_attack_name)]] = Field(
        default_factory=lambda: ["pgd50x10"], description="e.g. [pgd20, pgd50x10, autoattack]"
    )
    split: Literal["test", "val"] = "test"
    limit: PosInt | None = Field(None, description="evaluate on the first N images only")
    curves: bool = Field(False, description="accuracy vs PGD steps and eps (Fig. 4): attack_strength.json")
    curve_eps: list[Eps] | None = Field(None, description="eps values of the curve (default 1/255 ... 16/255)")
    checks: bool = Field(False, description="gradient-masking checks: evaluation.json, masking_checks_passed")


class RunConfig(Strict):
    """Everything one DNR training run needs."""

    name: RunName = "dnr"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    dnr: DNRConfig = Field(default_factory=DNRConfig)
    method: Literal[rc.METHODS] = Field(  # type: ignore[valid-type]
        "dnr", description=f"training method: {', '.join(rc.METHODS)} (dnr_sweep/methods/; dnr = the paper's)"
    )
    admm: ADMMConfig = Field(default_factory=ADMMConfig)
    lasso: LassoConfig = Field(default_factory=LassoConfig)
    hydra: HydraConfig = Field(default_factory=HydraConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    evaluate: EvaluateConfig | None = Field(None, description="extra attacks on the selected model at the end")
    export: bool = Field(
        False, description="channel modes: physically shrink the selected model, export it, time its speedup"
    )

    @property
    def method_block(self) -> ADMMConfig | LassoConfig | HydraConfig | None:
        """The active baseline's block (``admm``, ``lasso``, ``hydra``); ``None`` for DNR."""
        return None if self.method == "dnr" else getattr(self, self.method)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        block = self.method_block
        if block is not None:  # a baseline's epochs are its phases'; DNR's warm-up does not apply
            if self.train.epochs != block.total_epochs:
                self.train.epochs = block.total_epochs
            return self._selection_split()
        return self._selection_split()._warmup()

    def _selection_split(self) -> RunConfig:
        if self.train.select_on == "val" and self.data.val_size == 0:
            raise ValueError(
                "train.select_on is 'val' but data.val_size is 0: there is no validation split to choose the "
                "epoch; set data.val_size (e.g. 5000 for CIFAR) or, for the paper's protocol only, select_on: test"
            )
        return self

    def _warmup(self) -> RunConfig:
        if self.train.warmup_epochs > self.train.epochs:
            raise ValueError(
                f"train.warmup_epochs ({self.train.warmup_epochs}) exceeds train.epochs ({self.train.epochs}); "
                "lower warmup_epochs or raise epochs"
            )
        return self


# --------------------------------------------------------------------------------------------
# Metrics a searcher, scheduler or tune.metric may use (names from the run contract)

Direction = Literal["max", "min"]


def _choosable_metric(value: str) -> str:
    """Only validation and sparsity figures choose; a test figure is refused with its val twin."""
    if value in rc.CHOOSABLE_METRICS:
        return value
    twin = rc.validation_twin(value)
    if twin is not None:
        raise ValueError(
            f"{value!r} is a test-split figure, and only validation chooses; use {twin!r} "
            "(the test figures are measured once on the selected weights and only reported)"
        )
    raise ValueError(f"no trial reports {value!r} to choose by; valid metrics: {', '.join(rc.CHOOSABLE_METRICS)}")


Metric = Annotated[str, AfterValidator(_choosable_metric)]


# --------------------------------------------------------------------------------------------
# A sweep


class SearchSpec(Strict):
    """One sampling rule for one dotted path. Exactly one of the fields is set."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    quniform: tuple[float, float, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_rule(cls, data: Any) -> Any:
        valid = ", ".join(cls.model_fields)
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a mapping with one of {valid}, e.g. {{grid: [0.1, 0.5]}}; got {data!r}")
        for raw in ("grid_search", "eval", "sample_from"):
            if raw in data:
                raise ValueError(
                    f"raw Ray Tune key {raw!r} is not accepted (Tune would evaluate it as code); use one of {valid}"
                )
        if len(data) != 1:
            raise ValueError(f"expected exactly one of {valid}, got {sorted(data) or 'nothing'}")
        return data

    @model_validator(mode="after")
    def _shape(self) -> SearchSpec:
        kind, value = self.rule
        if kind in ("grid", "choice") and not value:
            raise ValueError(f"{kind}: must list at least one value")
        if kind in ("uniform", "loguniform", "quniform") and not all(math.isfinite(v) for v in value):
            raise ValueError(f"{kind}: bounds must be finite numbers, got {list(value)}")
        if kind in ("uniform", "loguniform", "randint", "quniform") and not value[0] < value[1]:
            raise ValueError(f"{kind}: lower bound must be below upper bound, got {list(value)}")
        if kind == "loguniform" and value[0] <= 0:
            raise ValueError(f"loguniform: bounds must be > 0, got {list(value)}")
        if kind == "quniform":
            low, high, q = value
            if q <= 0:
                raise ValueError(f"quniform: step q must be > 0, got {q}")
            for name, bound in (("lower", low), ("upper", high)):  # Ray Tune's own rule, refused before Ray starts
                if not math.isclose(bound / q, round(bound / q)):
                    raise ValueError(f"quniform: the {name} bound {bound:g} is not a multiple of the step q={q:g}; "
                                     "choose bounds that are")  # fmt: skip
        return self

    @property
    def rule(self) -> tuple[str, Any]:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                return name, value
        raise AssertionError("unreachable: validated to have one rule")

    def probe_values(self) -> list[Any]:
        """Values that must each be valid for the target field: all of a list; the ends of a range
        and, for the float rules, a value inside it that is not a whole number (what the sampler
        draws, so a float rule on an integer field is caught)."""
        kind, value = self.rule
        if kind in ("grid", "choice"):
            return list(value)
        if kind == "randint":  # Tune's randint excludes the upper bound
            return [value[0], value[1] - 1]
        low, high = value[0], value[1]
        if kind == "uniform":
            inside = low + (high - low) * 0.4142
        elif kind == "loguniform":
            inside = low * (high / low) ** 0.4142
        else:  # quniform: multiples of q; a fractional q draws fractional values
            q = value[2]
            inside = round((low + q) / q) * q if low + q < high else high
        return [low, high, inside]


class AshaConfig(Strict):
    grace_period: PosInt = 1
    reduction_factor: Annotated[float, _NUMBER, _range(1.0, None, lo_open=True)] = 3.0
    max_t: PosInt | None = Field(None, description="defaults to train.epochs")
    metric: Metric | None = Field(None, description="defaults to tune.metric")
    mode: Direction | None = None
    group_by: list[str] | None = Field(
        None,
        description="search paths whose values get rungs of their own, e.g. [dnr.density, dnr.pruning]: a trial "
        "is only compared with trials of the same density and pruning type (a sparser model is less accurate "
        "by design, so one shared rung would stop the high-compression trials first)",
    )


class SchedulerConfig(Strict):
    asha: AshaConfig


class OptunaConfig(Strict):
    sampler: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    objectives: dict[Metric, Direction] | None = Field(
        None, description="multi-objective search, e.g. {val_pgd_acc: max, compression: max}"
    )
    seed: Int | None = None
    population_size: Annotated[int, _NUMBER, _range(2, None)] | None = Field(
        None,
        description="NSGA-II only: trials per generation (Optuna's default 50; a generation smaller than "
        "the trial budget, or NSGA-II is random search)",
    )

    @model_validator(mode="after")
    def _population_for_nsga2(self) -> OptunaConfig:
        if self.population_size is not None and self.sampler != "nsga2":
            raise ValueError(
                f"population_size is an NSGA-II setting, but sampler is {self.sampler!r}; "
                "drop population_size or use sampler: nsga2"
            )
        return self


class SearchAlgConfig(Strict):
    optuna: OptunaConfig


class Resources(Strict):
    cpu: PosFloat = 1.0
    gpu: NonNegFloat = 0.0


class TuneConfig(Strict):
    num_samples: PosInt = 1
    metric: Metric | None = Field(
        "val_clean_acc", description="the single metric of the searcher/scheduler and the 'best trial'"
    )
    mode: Direction = "max"
    scheduler: SchedulerConfig | None = None
    search_alg: SearchAlgConfig | None = None
    max_concurrent_trials: PosInt | None = None
    resources_per_trial: Resources = Field(default_factory=Resources)
    max_failures: Annotated[int, _NUMBER, _range(-1, None)] = 2
    checkpoint_every: PosInt | Literal["auto"] = Field(
        "auto",
        description="epochs between a trial's checkpoints; 'auto': as often as keeps the measured save "
        "time (serialise + copy to storage) at most 2% of the training time between checkpoints",
    )
    keep_checkpoints: PosInt = Field(2, description="checkpoints kept per trial (the newest)")
    points_to_evaluate: list[dict[str, Any]] | None = Field(
        None,
        description="configurations run first, as given (dotted search path -> value), e.g. the paper's "
        "defaults; each takes one of num_samples and is crossed with the grid dimensions it does not set",
    )

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _epochs_or_auto(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f"must be 'auto' or a whole number of epochs >= 1, got {value!r}")


class ReportConfig(Strict):
    x: str = "compression"
    y: list[str] = Field(default_factory=lambda: ["clean_acc", "fgsm_acc", "pgd_acc"])
    group_by: str = "dnr.pruning"
    objectives: dict[str, Direction] | None = None
    formats: list[Literal["pdf", "png", "svg"]] = Field(default_factory=lambda: ["pdf", "png"])
    live_every_s: NonNegFloat = Field(
        60.0, description="refresh the live report at most this often (and after each finished trial)"
    )
    live: bool = Field(True, description="refresh results and report while the sweep runs")


class SweepConfig(RunConfig):
    """A run config (the base every trial starts from) plus what to vary and how to run it."""

    search: dict[str, SearchSpec] = Field(default_factory=dict)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    def base_run(self) -> RunConfig:
        return RunConfig.model_validate(self.model_dump(include=set(RunConfig.model_fields)))

    def grid_size(self) -> int:
        """Trials Tune will create: the product of grid sizes times num_samples."""
        size = 1
        for spec in self.search.values():
            kind, value = spec.rule
            if kind == "grid":
                size *= len(value)
        return size * self.tune.num_samples


# --------------------------------------------------------------------------------------------
# Dotted paths


def leaf_paths(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted path to a leaf field of ``model`` (``dnr.density``, ``attack.train.eps``, ...)."""
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += leaf_paths(annotation, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``path = 'a.b.c'``, creating missing mappings."""
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError([f"--set {path}: '{part}' is a value, not a section"])
        node = child
    node[parts[-1]] = value


def _set_search(data: dict[str, Any], item: str, dimension: str, value: Any) -> None:
    """``search.<dotted.path>[.<rule>]=value``: the search keys are themselves dotted paths."""
    rules = tuple(SearchSpec.model_fields)
    path, _, rule = dimension.rpartition(".")
    search = data.get("search")
    if search is None:
        search = data["search"] = {}
    if not isinstance(search, dict):
        raise ConfigError([f"--set {item!r}: 'search' is a value, not a section"])
    if rule in rules and path:
        search[path] = {rule: value}
    else:
        search[dimension] = value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings; values are parsed as YAML (``0.1``, ``true``, ``[1, 2]``).

    A search dimension is set as ``search.dnr.density.grid=[0.1, 0.5]`` (or
    ``search.dnr.density={grid: [0.1, 0.5]}``).
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part.strip() for part in key.split(".")):
            raise ConfigError([f"--set {item!r}: expected key.path=value, e.g. --set dnr.density=0.1"])
        try:
            value = yaml_safe.load(raw)
        except yaml.YAMLError:
            value = raw
        except RecursionError:
            raise ConfigError([f"--set {key}=...: nested too deeply to be a config value"]) from None
        if key.startswith("search.") and len(key) > len("search."):
            _set_search(data, item, key[len("search.") :], value)
        else:
            set_path(data, key, value)
    return data


# --------------------------------------------------------------------------------------------
# Loading and error formatting


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config class whose fields live at ``loc`` (for suggesting keys)."""
    model: Any = root
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", ()) or (annotation,):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _format_error(root: type[BaseModel], error: dict[str, Any], prefix: str = "") -> str:
    loc = tuple(part for part in error["loc"] if not str(part).startswith(("function-", "literal[", "[key]")))
    # pydantic appends the union member name for Optional fields; drop those
    loc = tuple(
        part for part in loc if part not in ("SchedulerConfig", "SearchAlgConfig", "EvaluateConfig", "str", "int")
    )
    path = prefix + ".".join(str(part) for part in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        valid = list(parent.model_fields) if parent else []
        key = str(loc[-1])
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{path}: unknown key '{key}'; {hint}valid keys: {', '.join(valid)}"
    message = error["msg"]
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.replace(noise, "")
    if kind == "missing":
        message = "required field is missing; add it"
    elif kind in ("literal_error", "enum"):
        message = f"{message}, got {error.get('input')!r}"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        message = f"{message}, got {error.get('input')!r}"
    return f"{path}: {message}" if path else message


def validation_messages(root: type[BaseModel], exc: ValidationError, source: str, prefix: str = "") -> list[str]:
    errors = exc.errors()
    # an unknown key inside a block also makes pydantic say the block's required keys are
    # missing; the unknown key is the real problem, so the "missing" noise is dropped
    unknown_parents = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
    errors = [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"][:-1]) in unknown_parents)]
    return [f"{source}: {_format_error(root, err, prefix)}" for err in errors]


MAX_CONFIG_BYTES = 1_000_000  # a config is a few kB; anything near this is not one
MAX_CONFIG_VALUES = 100_000  # values after YAML aliases are expanded ("billion laughs" stays bounded)


def _count_values(data: Any, budget: int) -> int:
    """Values in ``data`` as pydantic would walk them (shared aliases counted each time), up to ``budget``."""
    count, stack = 0, [data]
    while stack and count <= budget:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return count


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader (:mod:`dnr_sweep.yaml_safe`); errors name the file (and line)."""
    path = Path(path)
    if not path.is_file():
        hint = "it is a directory" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
        raise ConfigError([f"{path}: cannot read config ({hint}); check the path"])
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{path}: {path.stat().st_size} bytes is not a config (at most {MAX_CONFIG_BYTES}); "
                               "check the path"])  # fmt: skip
        text = path.read_bytes().decode("utf-8")
        data = yaml_safe.load(text)
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read config ({exc.strerror}); check the path and its permissions"]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not a text file (byte {exc.start} is not UTF-8); pass a YAML config"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: {where}malformed YAML: {problem}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: nested too deeply to be a config; check the file"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}: top level must be a mapping of sections (data, model, ...), got {type(data).__name__}"]
        )
    if _count_values(data, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError([f"{path}: more than {MAX_CONFIG_VALUES} values once YAML aliases are expanded; "
                           "a config is a few dozen values, check the file"])  # fmt: skip
    return data


def _validate_search(config: SweepConfig, source: str) -> list[str]:
    """Check each search path against the schema and each value against the field's type and range."""
    errors = []
    valid_paths = leaf_paths(RunConfig)
    base = config.base_run().model_dump()
    for path, spec in config.search.items():
        if path not in valid_paths:
            close = difflib.get_close_matches(path, valid_paths, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            errors.append(
                f"{source}: search.{path}: not a field of the run config; {hint}"
                f"search keys are dotted paths such as dnr.density, dnr.pruning, dnr.beta"
            )
            continue
        if path == "name":
            errors.append(f"{source}: search.name: the run name cannot be searched")
            continue
        as_field = []  # a grid's or choice's values as the field's type ("0.5" -> 0.5), so trials and tables agree
        for value in spec.probe_values():
            trial = copy.deepcopy(base)
            set_path(trial, path, value)
            try:
                as_field.append(_get_path(RunConfig.model_validate(trial).model_dump(), path))
            except ValidationError as exc:
                kind = spec.rule[0]
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
                    if loc == path or not loc:
                        msg = _format_error(RunConfig, err)
                        msg = msg.split(": ", 1)[1] if ": " in msg and loc else msg
                        if err["type"] == "int_from_float":
                            msg += f" ({kind} draws fractional values; use randint or grid for this integer field)"
                        errors.append(f"{source}: search.{path}.{kind}: {msg}")
                        break
                else:
                    errors.append(
                        f"{source}: search.{path}: {value!r} makes the config invalid: {exc.errors()[0]['msg']}"
                    )
                break
        else:
            kind, values = spec.rule
            if kind in ("grid", "choice"):
                values[:] = as_field
    return errors


def _validate_method(raw: Mapping[str, Any], config: SweepConfig, source: str) -> list[str]:
    """A baseline's ``train.epochs`` is the sum of its phases: a different value written in the YAML
    (or by --set) is refused, not silently replaced. A search path of a method the config never runs
    (``method`` neither set to it nor searched) would change nothing, so it is refused too (a block of
    another method is allowed: every resolved config.yaml holds all of them)."""
    errors: list[str] = []
    if "method" in config.search:  # trials of several methods: each reads its own block
        return errors
    block = config.method_block
    train = raw.get("train")
    written = train.get("epochs") if isinstance(train, Mapping) else None
    if block is not None and written is not None and written != block.total_epochs:
        errors.append(
            f"{source}: train.epochs: method {config.method} trains for the sum of its phases' epochs "
            f"({block.total_epochs}); drop train.epochs and set the {config.method}.*_epochs instead"
        )
    for name in rc.METHODS[1:]:
        used = [path for path in config.search if path.split(".", 1)[0] == name]
        if name != config.method and used:
            errors.append(
                f"{source}: search.{used[0]}: a setting of method {name!r}, but this config runs method "
                f"{config.method!r}, so every trial would be the same; set method: {name}, search method, or drop it"
            )
    return errors


def _get_path(data: Mapping[str, Any], path: str) -> Any:
    for key in path.split("."):
        data = data[key]
    return data


def _validate_tune(config: SweepConfig, source: str) -> list[str]:
    errors = []
    tune = config.tune
    if config.grid_size() > MAX_TRIALS:
        errors.append(
            f"{source}: tune.num_samples: {config.grid_size()} trials (num_samples x grid sizes) is more than "
            f"{MAX_TRIALS}; lower tune.num_samples or shorten the grids"
        )
    if tune.search_alg is not None:
        grids = [path for path, spec in config.search.items() if spec.rule[0] == "grid"]
        if grids:
            errors.append(
                f"{source}: search.{grids[0]}: Optuna cannot take grid dimensions; "
                "use 'choice' (Optuna samples it as a categorical) or drop tune.search_alg"
            )
        if not config.search:
            errors.append(f"{source}: tune.search_alg: Optuna needs at least one search dimension")
    asha = tune.scheduler.asha if tune.scheduler is not None else None
    if asha is not None and asha.grace_period > (asha.max_t or config.train.epochs):
        errors.append(
            f"{source}: tune.scheduler.asha.grace_period: {asha.grace_period} is above max_t "
            f"({asha.max_t or config.train.epochs}{'' if asha.max_t else ', train.epochs'}): no trial could be "
            "stopped early; lower grace_period or raise max_t"
        )
    single_objective = tune.search_alg is not None and not tune.search_alg.optuna.objectives
    if tune.metric is None and (single_objective or (asha is not None and asha.metric is None)):
        errors.append(
            f"{source}: tune.metric: the searcher or scheduler needs a metric; e.g. tune.metric: val_clean_acc"
        )
    if asha is not None:
        for path in asha.group_by or []:
            if path not in config.search:
                errors.append(
                    f"{source}: tune.scheduler.asha.group_by: {path!r} is not a search path, so all trials share "
                    f"its value; group by searched paths ({', '.join(config.search) or 'none here'})"
                )
    errors += _validate_points(config, source)
    if config.train.select_on == "test":
        used = {"tune.metric": tune.metric, "tune.scheduler.asha.metric": asha.metric if asha else None}
        if tune.search_alg is not None:
            used.update({f"tune.search_alg.optuna.objectives.{k}": k for k in tune.search_alg.optuna.objectives or {}})
        for where, metric in used.items():
            if metric is not None and rc.is_validation_metric(metric):
                errors.append(
                    f"{source}: {where}: {metric!r} needs validation figures, but train.select_on is 'test' (the "
                    "paper's protocol) and the run measures none; use select_on: val with a data.val_size, "
                    "or set tune.metric: null for a plain grid"
                )
    return errors


def in_domain(spec: SearchSpec, value: Any) -> bool:
    """Whether ``value`` is one the rule can produce (a listed value, or inside the range)."""
    kind, rule = spec.rule
    if kind in ("grid", "choice"):
        return value in rule
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "randint":
        return isinstance(value, int) and rule[0] <= value < rule[1]
    return rule[0] <= value <= rule[1]


def _validate_points(config: SweepConfig, source: str) -> list[str]:
    """``tune.points_to_evaluate``: searched, non-grid paths only, values inside their rule, valid configs."""
    points = config.tune.points_to_evaluate or []
    errors = []
    where = f"{source}: tune.points_to_evaluate"
    if len(points) > config.tune.num_samples:
        errors.append(f"{where}: {len(points)} points but tune.num_samples is {config.tune.num_samples}; each point "
                      f"takes one sample, so set num_samples to at least {len(points)}")  # fmt: skip
    base = config.base_run().model_dump()
    for index, point in enumerate(points):
        trial = copy.deepcopy(base)
        for path, value in point.items():
            if path in config.search:
                set_path(trial, path, value)
        try:
            validated = RunConfig.model_validate(trial).model_dump()
        except ValidationError as exc:
            errors += [f"{where}[{index}]: {_format_error(RunConfig, err)}" for err in exc.errors()]
            validated = None
        for path, value in point.items():
            spec = config.search.get(path)
            if spec is None:
                errors.append(f"{where}[{index}].{path}: not a search path; a point sets searched paths only "
                              f"({', '.join(config.search) or 'none here'}), so its value shows in the results")  # fmt: skip
                continue
            if validated is not None:  # as the field's type ("0.5" -> 0.5), like the grids
                point[path] = value = _get_path(validated, path)
            if spec.rule[0] == "grid":
                errors.append(f"{where}[{index}].{path}: a grid dimension; every point is run at each of its "
                              "values, so leave it out of the point")  # fmt: skip
            elif not in_domain(spec, value):
                kind, rule = spec.rule
                errors.append(f"{where}[{index}].{path}: {value!r} is outside its search rule "
                              f"{kind}: {list(rule)}; widen the rule or change the point")  # fmt: skip
    return errors


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """A single-run config from YAML; ``search``/``tune``/``report`` blocks are allowed and ignored."""
    sweep = load_sweep_config(path, overrides)
    return sweep.base_run()


def load_sweep_config(path: str | Path, overrides: Iterable[str] = ()) -> SweepConfig:
    """Read, override and validate a sweep YAML. Raises :class:`ConfigError` with every problem."""
    source = str(path)
    raw = apply_overrides(read_yaml(path), overrides)
    return validate_sweep(raw, source)


def validate_sweep(raw: dict[str, Any], source: str = "<config>") -> SweepConfig:
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_messages(SweepConfig, exc, source)) from None
    errors = _validate_search(config, source) + _validate_tune(config, source) + _validate_method(raw, config, source)
    if errors:
        raise ConfigError(errors)
    return config


def run_config_from_flat(base: RunConfig, flat: Mapping[str, Any]) -> RunConfig:
    """A trial's run config: ``base`` with dotted ``flat`` values (Tune's sampled config) set."""
    data = base.model_dump()
    for path, value in flat.items():
        set_path(data, path, value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_messages(RunConfig, exc, "trial config")) from None


def to_yaml_dict(config: BaseModel) -> dict[str, Any]:
    """The resolved config as plain data (DESIGN.md's keys), for printing and saving.

    A baseline's block left at its defaults, by a config that does not run it, is left out, and so is
    ``method: dnr``: a DNR config reads as before methods existed (and its older checkpoints still
    resume); nothing that differs from a default is ever dropped (a sweep's base config carries the
    blocks its ``method`` trials read)."""
    data = config.model_dump(mode="json")
    if isinstance(config, RunConfig):
        for name in rc.METHODS[1:]:
            if name != config.method and data.get(name) == type(getattr(config, name))().model_dump(mode="json"):
                data.pop(name, None)
        if config.method == "dnr":
            data.pop("method", None)
    return data
