"""The blocks of one training run (``data``, ``model``, ``train``, ``dnr``, ``attack``, ``evaluate``) and
:class:`RunConfig`, which holds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from dnr_sweep.config.fields import (
    MAX_IMAGE_SIZE,
    MAX_THREADS,
    MAX_WIDTH,
    MAX_WORKERS,
    NUMBER,
    AttackSteps,
    BatchSize,
    Density,
    Epochs,
    Eps,
    Fraction,
    Images,
    NonNegEpochs,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    Restarts,
    RunName,
    Seed,
    Strict,
    attack_name,
    in_range,
)
from dnr_sweep.config.methods import ADMMConfig, HydraConfig, LassoConfig
from dnr_sweep.config.reads import MethodReads
from dnr_sweep.data import fetch
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.foundation import run_contract as rc

# --------------------------------------------------------------------------------------------
# One run


def _dataset_name(value: str) -> str:
    """A name of the dataset registry; its error (naming the value, listing the valid names) otherwise."""
    return dataset_specs.get(value).name


def _mirror(value: str) -> str:
    """A mirror as given, once it parses (:func:`dnr_sweep.data.fetch.mirror_url`)."""
    fetch.mirror_url(value)
    return value


class DataConfig(Strict):
    dataset: Annotated[str, AfterValidator(_dataset_name)] = Field(
        "digits", description=f"one of {', '.join(dataset_specs.DATASET_NAMES)} (dnr_sweep/data/specs.py)"
    )
    root: str = Field("~/.cache/dnr-sweep/data", description="where the data set lives (or is downloaded to)")
    download: bool = Field(
        False, description="run/train/submit fetch the data set once, verified, before training (never a trial)"
    )
    mirror: Annotated[str, AfterValidator(_mirror)] | None = Field(
        None,
        description=f"base URL or folder serving the archives (else ${fetch.MIRROR_ENV}, else the official URLs)",
    )
    val_size: NonNegInt = Field(5000, description="images held out of the training set for model selection")
    image_size: Annotated[int, NUMBER, in_range(1, MAX_IMAGE_SIZE)] | None = Field(
        None, description="resize images to this square size (default: the data set's own)"
    )
    channels: Literal[1, 3] | None = Field(None, description="replicate grey digits to 3 channels")
    num_workers: Annotated[int, NUMBER, in_range(0, MAX_WORKERS)] = Field(0, description="DataLoader worker processes")
    gpu_resident: bool | None = Field(
        None, description="keep the training set on the device, crop+flip there; None = on when training on CUDA"
    )

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()


class ModelConfig(Strict):
    arch: Literal["smallcnn", "vgg16", "resnet18"] = "smallcnn"
    width: Annotated[float, NUMBER, in_range(0.0, MAX_WIDTH, lo_open=True)] = Field(
        1.0,
        description=f"multiplier on every hidden channel count (at most {MAX_WIDTH:g}: memory grows with its square)",
    )


class TrainConfig(Strict):
    epochs: Epochs = 200
    batch_size: BatchSize = 128
    eval_batch_size: BatchSize | None = None
    lr: PosFloat = 0.1
    momentum: Annotated[float, NUMBER, in_range(0.0, 1.0, hi_open=True)] = 0.9
    weight_decay: NonNegFloat = 5.0e-4
    lr_milestones: list[Epochs] = Field(default_factory=lambda: [80, 120, 160])
    lr_gamma: Annotated[float, NUMBER, in_range(0.0, 1.0, lo_open=True)] = 0.2
    warmup_epochs: NonNegEpochs = Field(5, description="clean-only sparse epochs before the hybrid loss")
    select_on: Literal["val", "test"] = Field(
        "val", description="split that chooses the epoch; 'test' is the paper's protocol (labelled wherever shown)"
    )
    select_metric: str | None = Field(
        None, description="figure that chooses the epoch: val_pgd_acc (default), val_clean_acc, val_fgsm_acc"
    )
    eval_every: Epochs = Field(1, description="robust accuracy of every Nth epoch (always: last, selected)")
    eval_subset: Images | None = Field(None, description="images used for per-epoch robust evaluation")
    seed: Seed = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast on CUDA; auto = bf16 where supported, fp32 on CPU"
    )
    channels_last: bool | None = Field(None, description="NHWC memory format; None = on for CUDA")
    num_threads: Annotated[int, NUMBER, in_range(1, MAX_THREADS)] | None = Field(
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
        """``select_metric``, defaulting to validation PGD accuracy (the paper's protocol: clean test accuracy)."""
        return self.select_metric or rc.default_select_metric(self.select_on)


class DNRConfig(Strict):
    """DNR's settings (``method: dnr``, the default)."""

    reads: ClassVar[MethodReads] = MethodReads(
        ("train.epochs", "train.lr", "train.lr_milestones", "train.lr_gamma", "train.warmup_epochs",
         "train.weight_decay", "dnr"),
        only_when={"dnr.rho": ("dnr.dynamic_l2", (True,))},
        instead="DNR trains train.epochs under train.lr's MultiStep schedule with dnr.*",
    )  # fmt: skip

    pruning: Literal["irregular", "channel", "channel_group"] = "irregular"
    density: Density = Field(0.05, description="target fraction of prunable weights kept (1.0 = dense)")
    beta: Fraction = Field(0.5, description="hybrid loss weight of the clean part (1.0 = DNR-C, no PGD)")
    rho: NonNegFloat = Field(1.0e-4, description="dynamic L2 penalty factor")
    prune_rate: Fraction = Field(0.5, description="fraction of active weights rewired after epoch 0, decays to 0")
    dynamic_l2: bool = True
    prune_linear: bool = False


class TrainAttackConfig(Strict):
    kind: Literal["pgd", "fgsm"] = "pgd"
    eps: Eps = 8 / 255
    alpha: PosFloat = 0.01
    steps: AttackSteps = 7
    random_start: bool = True
    bn_mode: Literal["eval", "train"] = Field(
        "eval", description="BatchNorm mode while generating training adversaries (eval = running stats)"
    )


class FGSMConfig(Strict):
    eps: Eps = 8 / 255


class PGDConfig(Strict):
    eps: Eps = 8 / 255
    alpha: PosFloat = 0.01
    steps: AttackSteps = 7
    random_start: bool = True
    restarts: Restarts = 1


class EvalAttackConfig(Strict):
    fgsm: FGSMConfig = Field(default_factory=FGSMConfig)
    pgd: PGDConfig = Field(default_factory=PGDConfig)


class AttackConfig(Strict):
    train: TrainAttackConfig = Field(default_factory=TrainAttackConfig)
    eval: EvalAttackConfig = Field(default_factory=EvalAttackConfig)


class EvaluateConfig(Strict):
    """Stronger attacks run on the selected model at the end of a run (columns ``<attack>_acc``)."""

    attacks: list[Annotated[str, AfterValidator(attack_name)]] = Field(
        default_factory=lambda: ["pgd50x10"], description="e.g. [pgd20, pgd50x10, autoattack]"
    )
    split: Literal["test", "val"] = "test"
    limit: Images | None = Field(None, description="evaluate on the first N images only")
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
        if block is not None and self.train.epochs != block.total_epochs:
            self.train.epochs = block.total_epochs  # a baseline's epochs are its phases'
        if self.train.select_on == "val" and self.data.val_size == 0:
            raise ValueError(
                "train.select_on is 'val' but data.val_size is 0: there is no validation split to choose the "
                "epoch; set data.val_size (e.g. 5000 for CIFAR) or, for the paper's protocol only, select_on: test"
            )
        spec = self.attack.train
        if self.method == "hydra" and self.hydra.loss == "trades" and (spec.kind != "pgd" or not spec.random_start):
            raise ValueError(
                f"attack.train: hydra.loss trades runs TRADES' KL adversary (PGD steps from x + 0.001 * N(0, 1), "
                f"reading eps, alpha, steps and bn_mode), which kind {spec.kind} with random_start "
                f"{str(spec.random_start).lower()} does not describe; set attack.train.kind: pgd and "
                "random_start: true, or hydra.loss: pgd"
            )
        # warmup_epochs > epochs runs (clean-only throughout): dnr_sweep.training.dry_run warns, for shortened configs
        return self


def method_reads(method: str) -> MethodReads:
    """What method ``method`` reads of :data:`~dnr_sweep.config.reads.METHOD_FIELDS`: its block's declaration
    (the block is the run config's field named after the method)."""
    if method not in rc.METHODS:
        raise ValueError(f"unknown training method {method!r}; valid: {', '.join(rc.METHODS)}")
    return RunConfig.model_fields[method].annotation.reads
