"""The config blocks of the baseline training methods beside DNR (``method: admm | lasso | hydra``;
:mod:`dnr_sweep.methods`).

Baseline methods beside DNR (``method: admm | lasso | hydra``; dnr_sweep/methods/). Each has its
own phases, each phase its own epochs and initial learning rate, annealed by a cosine to 0 within
the phase (HYDRA's public code's schedule; Ye et al. and Rakin et al. give none the DNR paper
repeats); ``train.epochs`` is derived as the sum of the phases, ``train.lr``/``lr_milestones``/
``warmup_epochs`` are DNR's and unused. Each block's ``reads`` declares the method-dependent fields its
method reads (:mod:`dnr_sweep.config.reads`); searching or ``--set`` on one it does not read is refused. ``beta`` is the clean weight of ``beta * CE(clean) +
(1 - beta) * CE(adv)`` (0 = Madry adversarial training, as ADMM and Lasso train), and the method's
regulariser is added outside it; HYDRA trains with TRADES by default, as its authors' code does
(``hydra.loss``). Momentum: ``train.momentum``; weight decay: ``train.weight_decay`` (HYDRA:
``hydra.weight_decay``); the optimizer's momentum restarts at every phase (each paper's phases are
separate runs). Only epochs of the final phase are selected (``train.select_metric`` on validation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, ValidationInfo, field_validator, model_validator

from dnr_sweep.config.fields import (
    NUMBER,
    Density,
    Epochs,
    Fraction,
    NonNegEpochs,
    NonNegFloat,
    PosFloat,
    Strict,
    in_range,
)
from dnr_sweep.config.reads import MethodReads


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
GrowthFactor = Annotated[float, NUMBER, in_range(1.0, None)]
#: Lasso's fixed threshold when neither lasso.threshold nor lasso.density is given
DEFAULT_THRESHOLD = 1.0e-3


class ADMMConfig(Strict):
    """ADMM robust pruning (Ye et al., ICCV 2019; the DNR paper's [17], Section 4.3)."""

    reads: ClassVar[MethodReads] = MethodReads(
        ("train.weight_decay", "dnr.prune_linear", "admm"),
        only_when={"admm.density": ("admm.layer_ratios", ("naive", "uniform"))},
        instead="ADMM trains its phases, admm.*_epochs, each from its admm.*_lr annealed by a cosine, and "
        "prunes by admm.*; its train.epochs is their sum",
    )

    density: Density = Field(0.05, description="overall target density (layer_ratios naive/uniform)")
    layer_ratios: LayerRatios = Field(
        "naive",
        description="per-layer densities: naive (first prunable layer dense, the rest one density meeting "
        "the target: the paper's 'ADMM naive'), uniform (every layer at density), or {layer: density}",
    )
    rho: PosFloat = Field(
        1.0e-3, description="initial ADMM penalty rho_admm (paper Section 4.3 and the authors' configs: 1e-3)"
    )
    update_every: Epochs = Field(
        20,
        description="Z and U are updated after every this many ADMM epochs (the authors' admm_epoch: 20 in their "
        "CIFAR-10 config, 4 MNIST, 10 ImageNet); never after the phase's last epoch",
    )
    rho_growth: GrowthFactor = Field(
        1.3,
        description="rho is multiplied by this at every Z/U update (the authors' multi_rho, on in their configs: "
        "1.3, uncapped); 1.0 keeps rho fixed",
    )
    beta: Fraction = Field(0.0, description="clean weight of the loss (0: adversarial training only)")
    pretrain_epochs: NonNegEpochs = Field(100, description="dense adversarial pre-training")
    admm_epochs: Epochs = Field(30, description="ADMM pruning epochs (paper: 30); Z and U every update_every")
    retrain_epochs: Epochs = Field(50, description="masked adversarial retraining after the hard prune")
    pretrain_lr: PosFloat = 0.1
    admm_lr: PosFloat = 0.01
    retrain_lr: PosFloat = 0.01

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.admm_epochs + self.retrain_epochs


class LassoConfig(Strict):
    """L1 Lasso robust sparse regularisation (Rakin et al. 2019; the DNR paper's [21])."""

    reads: ClassVar[MethodReads] = MethodReads(
        ("train.weight_decay", "dnr.prune_linear", "lasso"),
        only_when={"lasso.threshold": ("lasso.density", (None,))},
        instead="Lasso trains its phases, lasso.*_epochs, each from its lasso.*_lr annealed by a cosine, and "
        "prunes by lasso.*; its train.epochs is their sum",
    )

    lam: PosFloat = Field(1.0e-5, description="L1 coefficient lambda of lambda * sum |W| (prunable weights)")
    threshold: PosFloat | None = Field(
        None,
        description=f"after the L1 phase, weights with |w| below this become 0 (not given: {DEFAULT_THRESHOLD:g}, "
        "unless density is given); the compression is an outcome",
    )
    density: Density | None = Field(
        None,
        description="instead of threshold: the one global threshold after the L1 phase is chosen so that this "
        "fraction of the prunable weights is kept, to the weight (a compression to compare at)",
    )
    beta: Fraction = Field(0.0, description="clean weight of the loss (0: adversarial training only)")
    lasso_epochs: Epochs = Field(100, description="adversarial training with the L1 term, from scratch")
    retrain_epochs: Epochs = Field(50, description="masked adversarial retraining after thresholding")
    lasso_lr: PosFloat = 0.1
    retrain_lr: PosFloat = 0.01

    @model_validator(mode="after")
    def _one_threshold(self) -> LassoConfig:
        if self.density is not None and self.threshold is not None:
            raise ValueError(
                "lasso.density and lasso.threshold are both given: density chooses the threshold that keeps that "
                "fraction of the weights; give one of them (remove lasso.threshold to prune to a density)"
            )
        return self

    @property
    def fixed_threshold(self) -> float | None:
        """The threshold of the fixed-threshold mode; ``None`` when ``density`` chooses it."""
        if self.density is not None:
            return None
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLD

    @property
    def total_epochs(self) -> int:
        return self.lasso_epochs + self.retrain_epochs


class HydraConfig(Strict):
    """HYDRA (Sehwag et al., NeurIPS 2020; the DNR paper's [20]), with the defaults of the authors' code
    (inspire-group/hydra: ``args.py``, ``configs/configs.yml``, the README's and
    ``get_compact_net_adv_train.sh``'s command lines with ``--trainer adv``).

    Kept: TRADES with beta 6 (``trainer/adv.py``, ``--beta``), weight decay 1e-4 (``--wd``), SGD with
    momentum 0.9 (``train.momentum``, default 0.9), a cosine schedule per phase from lr 0.1 (pretrain,
    prune) and 0.01 (finetune), 20 score epochs, 100 pre-training and 100 fine-tuning epochs
    (``--epochs``), scaled score init (``--scaled-score-init``), BatchNorm affine trained with the scores
    (``--freeze-bn`` off), weight decay on the scores too (one optimizer holds all parameters), momentum
    fresh at each phase (each phase is its own run). Not kept: the training attack's eps/alpha/steps
    (``attack.train``, shared by every method; the authors': 0.031, 0.0078, 10), the cosine's epoch
    offset (the authors' epoch ``e`` uses ``e - 1``: their first epoch repeats the second's lr and a
    one-epoch phase trains at lr 0; here epoch ``i`` of a phase uses ``i``), Linear layers pruned
    (theirs: every conv and linear layer; here ``dnr.prune_linear``), selection (theirs: best test
    accuracy; here the final phase's best on validation). Epochs are scaled per config.
    """

    reads: ClassVar[MethodReads] = MethodReads(
        ("dnr.prune_linear", "hydra"),
        only_when={"hydra.beta": ("hydra.loss", ("pgd",)), "hydra.trades_beta": ("hydra.loss", ("trades",))},
        instead="HYDRA trains its phases, hydra.*_epochs, each from its hydra.*_lr annealed by a cosine, with "
        "hydra.weight_decay, and prunes by hydra.*; its train.epochs is their sum",
    )

    density: Density = Field(0.05, description="fraction k of each prunable layer's weights kept (top-k scores)")
    loss: Literal["trades", "pgd"] = Field(
        "trades",
        description="trades: CE(clean) + trades_beta * KL(clean || adv) against TRADES' KL adversary (the "
        "authors' --trainer adv); pgd: beta * CE(clean) + (1 - beta) * CE(adv) against attack.train's attack",
    )
    trades_beta: PosFloat = Field(6.0, description="weight of TRADES' KL term (the authors' --beta: 6)")
    beta: Fraction = Field(0.0, description="loss: pgd only: clean weight of the loss (0: adversarial training only)")
    weight_decay: NonNegFloat = Field(
        1.0e-4,
        description="weight decay of every HYDRA phase, scores included (the authors' --wd; "
        "train.weight_decay is unused)",
    )
    freeze_bn: bool = Field(
        False,
        description="freeze BatchNorm's affine weight and bias in the score phase too (the authors' "
        "--freeze-bn, off: they train with the scores)",
    )
    pretrain_epochs: NonNegEpochs = Field(100, description="dense adversarial pre-training (the authors': 100)")
    prune_epochs: Epochs = Field(20, description="score optimisation, weights frozen (the authors': 20)")
    finetune_epochs: Epochs = Field(100, description="adversarial fine-tuning of the kept weights (the authors': 100)")
    pretrain_lr: PosFloat = Field(0.1, description="initial learning rate of pre-training (the authors': 0.1)")
    prune_lr: PosFloat = Field(0.1, description="initial learning rate of the scores and BatchNorm (the authors': 0.1)")
    finetune_lr: PosFloat = Field(0.01, description="initial learning rate of fine-tuning (the authors': 0.01)")

    @field_validator("beta")
    @classmethod
    def _beta_is_pgds(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("loss") == "trades" and value != 0.0:
            raise ValueError(
                f"weighs the clean part of loss: pgd only, got {value:g} with loss: trades, whose KL term's "
                "weight is trades_beta (the authors': 6); set trades_beta, or loss: pgd to use beta"
            )
        return value

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.prune_epochs + self.finetune_epochs
