"""One training run, epoch by epoch: the paper's Algorithm 1 for DNR, the same loop for every method.

``TrainingRun(config)`` builds the data, the model, SGD with momentum, the LR schedule, the masks
(:class:`~dnr_sweep.sparsity.Masking`) and the dynamic L2 term. Each :meth:`TrainingRun.train_epoch`

1. trains one epoch: clean-only during ``train.warmup_epochs``, then the hybrid loss
   ``J = beta * (J_clean + rho/2 ||theta*m - z||^2) + (1 - beta) * J_adv`` (Eq. 6);
2. evaluates on the selection split (validation unless the paper's protocol is asked for);
3. selects by the one rule every method shares (:class:`Selection`) and keeps the selected weights;
4. rewires the masks and snapshots ``z``, except after the last epoch (a regrown weight starts at zero);
5. returns an :class:`EpochReport` named by :mod:`dnr_sweep.foundation.run_contract`.

:meth:`TrainingRun.final_metrics` evaluates the selected weights once on the test split: reported, never
used to choose. The whole state round-trips through :meth:`state_dict` / :meth:`load_state_dict`, so a
resumed run continues bit-identically on CPU. Nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from dnr_sweep import methods
from dnr_sweep.artifacts import state_codec
from dnr_sweep.attacks import gradient as attacks
from dnr_sweep.attacks import registry as attack_registry
from dnr_sweep.attacks.registry import AttackSettings
from dnr_sweep.config import RunConfig
from dnr_sweep.data import device_loader as gpu_data
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.data.loaders import DataSplits, build_datasets, make_loaders
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.methods.base import EpochPlan
from dnr_sweep.methods.cost import step_cost
from dnr_sweep.models.architectures import get_model
from dnr_sweep.sparsity import DynamicL2, Masking, accounting

#: layout version of :meth:`TrainingRun.state_dict` (2: compact encoding, z by reference, selected weights optional)
STATE_FORMAT = 2
#: stands for ``z`` in a state when ``z`` equals the masked weights bit for bit (rebuilt on load)
Z_FROM_WEIGHTS = "masked_weights"


def method_figures(figures: dict[str, float], names: tuple[str, ...], hook: str, *, fill: bool) -> dict[str, float]:
    """A method's own figures in the contract's order ``names``; ``fill``: every name, NaN where the method
    reported none (a run's result: every results row has the same columns); else only those reported (an
    epoch: the epochs table leaves the rest empty). A name outside the contract is refused."""
    unknown = sorted(set(figures) - set(names))
    if unknown:
        raise ValueError(f"the method's {hook}() reported {unknown}, which the run contract does not know "
                         f"({', '.join(names)}); register them in dnr_sweep/foundation/run_contract.py")  # fmt: skip
    return {name: float(figures.get(name, math.nan)) for name in names if fill or name in figures}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run cannot continue."""


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device: 'cuda' was asked for but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(choice)


def _use_bf16(config: RunConfig, device: torch.device) -> bool:
    if device.type != "cuda":
        if config.train.precision == "bf16":
            raise ValueError("train.precision: bf16 autocast is only offered on CUDA; use 'auto' or 'fp32'")
        return False
    if config.train.precision == "auto":
        return torch.cuda.is_bf16_supported()
    return config.train.precision == "bf16"


def _rank(value: float) -> float:
    return -math.inf if value != value else float(value)  # NaN never wins


@dataclass
class Selection:
    """The epoch chosen so far, by the one selection rule every method shares.

    Only the method's selectable epochs compete (its final phase: the network at its final sparsity,
    trained with its final loss). The best ``train.select_metric`` wins; a tie goes to the better
    tie-break figure (:func:`~dnr_sweep.foundation.run_contract.tie_break_metric`) and a full tie to
    the later epoch: never to an epoch because it came first. NaN never wins.
    """

    epoch: int | None = None
    value: float = -math.inf
    tie: float = -math.inf
    figures: dict[str, Any] = field(default_factory=dict)  # the chosen epoch's selected metrics

    def may_win(self, value: float) -> bool:
        """Whether an epoch with this ``select_metric`` could win (then its tie figure is needed)."""
        return self.epoch is None or _rank(value) >= self.value

    def wins(self, value: float, tie: float) -> bool:
        return self.epoch is None or (_rank(value), _rank(tie)) >= (self.value, self.tie)

    def take(self, epoch: int, value: float, tie: float, figures: dict[str, Any]) -> None:
        self.epoch, self.value, self.tie, self.figures = epoch, _rank(value), _rank(tie), dict(figures)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "value": self.value, "tie": self.tie, "figures": dict(self.figures)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["epoch"] is not None:
            self.take(state["epoch"], state["value"], state.get("tie", -math.inf), state["figures"])


@dataclass(frozen=True)
class EpochReport:
    """What one :meth:`TrainingRun.train_epoch` measured and what the run has selected so far.

    ``metrics``: this epoch's own figures (``run_contract.EPOCH_METRICS`` + layer densities);
    ``selected``: the selected epoch's figures (``run_contract.SELECTED_METRICS`` and bookkeeping);
    ``final``: this was the last epoch (then :meth:`TrainingRun.final_metrics` adds the test figures).
    """

    epoch: int
    metrics: dict[str, Any]
    selected: dict[str, Any]
    final: bool


@dataclass
class _EpochTotals:
    """Running sums kept on the device so the inner loop never syncs with the host."""

    loss: Tensor
    loss_clean: Tensor
    loss_adv: Tensor
    loss_l2: Tensor
    correct: Tensor
    seen: int = 0
    bad_step: Tensor | None = None


class TrainingRun:
    """One run of any training method (DNR or a baseline), one epoch per :meth:`train_epoch` call."""

    def __init__(self, config: RunConfig, *, data: DataSplits | None = None, device: torch.device | None = None):
        self.config = config
        self.device = device if device is not None else resolve_device(config.train.device)
        if config.train.num_threads is not None:
            torch.set_num_threads(config.train.num_threads)
        torch.manual_seed(config.train.seed)
        self.bf16 = _use_bf16(config, self.device)
        self.channels_last = (
            config.train.channels_last if config.train.channels_last is not None else self.device.type == "cuda"
        )

        gpu_resident = config.data.gpu_resident
        self.gpu_resident = self.device.type == "cuda" if gpu_resident is None else gpu_resident
        self.data = (
            data
            if data is not None
            else build_datasets(
                config.data.dataset,
                root=config.data.root_path,
                download=config.data.download,
                val_size=config.data.val_size,
                seed=config.train.seed,
                image_size=config.data.image_size,
                channels=config.data.channels,
                augment=not self.gpu_resident,  # the device loader augments itself
            )
        )
        self.train_loader, self.val_loader, self.test_loader = make_loaders(
            self.data,
            batch_size=config.train.batch_size,
            eval_batch_size=config.train.eval_batch_size,
            num_workers=config.data.num_workers,
            seed=config.train.seed,
        )
        if self.gpu_resident:
            # the whole training set on the device; crop + flip per batch there (digits: no augmentation)
            self.train_loader = gpu_data.from_dataset(
                self.data.train, self.device, config.train.batch_size,
                augment=dataset_specs.get(config.data.dataset).augmented,
                generator=torch.Generator(device=self.device).manual_seed(config.train.seed),
            )  # fmt: skip
        if config.train.select_on == "val" and len(self.data.val) == 0:
            raise ValueError("train.select_on is 'val' but data.val_size is 0; set a val_size or select_on: test")

        self.model = get_model(
            config.model.arch,
            num_classes=self.data.num_classes,
            in_channels=self.data.in_channels,
            width=config.model.width,
            mean=self.data.mean,
            std=self.data.std,
        ).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # forward passes (training, attacks, evaluation) go through `net`; masks, optimizer and
        # checkpoints keep using the plain module, so compiled and eager runs share their state
        self.net: nn.Module = torch.compile(self.model) if config.train.compile else self.model
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=config.train.lr,
            momentum=config.train.momentum,
            weight_decay=config.train.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=config.train.lr_milestones, gamma=config.train.lr_gamma
        )
        mask_rng = torch.Generator().manual_seed(config.train.seed + 1)
        # the training method (dnr_sweep/methods/): its masks, loss, step and per-epoch mask update
        self.method = methods.build(config)
        self.masking: Masking = self.method.make_masking(self.model, self.optimizer, mask_rng)
        self.l2 = DynamicL2(self.masking, rho=config.dnr.rho)
        self.l2.snapshot()
        self.method.attach(self)
        # training cost so far (run contract: TRAIN_FWD_EQUIV, TRAIN_ADV_EPOCHS, TRAIN_WALL_S, epochs per phase)
        self.cost: dict[str, Any] = {"fwd_equiv": 0.0, "adv_epochs": 0, "phase_epochs": {}}
        # the attack's random starts draw from their own stream, on the device
        self.attack_rng = torch.Generator(device=self.device).manual_seed(config.train.seed + 2)

        self.epoch = 0  # epochs completed
        self.selection = Selection()
        self.selected_state: dict[str, Tensor] | None = None  # the selected epoch's weights
        self.final: dict[str, Any] | None = None  # final_metrics(), once measured

    # ----------------------------------------------------------------------------------------
    # Training

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.train.epochs

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batches(self, loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels.to(self.device, non_blocking=True)

    def _adversarial(self, images: Tensor, labels: Tensor) -> Tensor:
        """The training adversaries the method makes (``attack.train``'s attack unless it has its own)."""
        with self._autocast():
            return self.method.adversary(self.net, images, labels, self.attack_rng)

    def _train_one_epoch(
        self, progress: Callable[[int, int], None] | None, plan: EpochPlan | None = None
    ) -> dict[str, float]:
        config = self.config
        plan = plan if plan is not None else self.method.start_epoch(self.epoch)
        beta = plan.beta
        self.model.train()
        zero = torch.zeros((), device=self.device)
        totals = _EpochTotals(zero.clone(), zero.clone(), zero.clone(), zero.clone(), zero.clone())
        totals.bad_step = torch.full((), -1, device=self.device, dtype=torch.long)
        n_batches = len(self.train_loader)
        for step, (images, labels) in enumerate(self._batches(self.train_loader)):
            adv = self._adversarial(images, labels) if plan.adversarial else None
            with self._autocast():
                logits = self.net(images)
                loss_clean = F.cross_entropy(logits, labels)
                loss_adv = self.method.adversarial_loss(self.net(adv), logits, labels) if adv is not None else zero
            loss_reg = self.method.regulariser(plan)
            loss_l2 = loss_reg if loss_reg is not None else zero
            loss = self.method.objective(loss_clean, loss_adv, loss_l2, beta)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.method.step(plan)  # optimizer step, then the masks are re-applied

            finite = torch.isfinite(loss.detach())
            totals.bad_step = torch.where(~finite & (totals.bad_step < 0), step, totals.bad_step)
            batch = labels.shape[0]
            totals.loss += loss.detach() * batch
            totals.loss_clean += loss_clean.detach() * batch
            totals.loss_adv += loss_adv.detach() * batch
            totals.loss_l2 += loss_l2.detach() * batch
            totals.correct += (logits.detach().argmax(1) == labels).sum()
            totals.seen += batch
            if progress is not None:
                progress(step + 1, n_batches)
            if step % 50 == 49 and int(totals.bad_step) >= 0:
                break  # stop burning compute on a diverged run; reported below
        bad = int(totals.bad_step)
        if bad >= 0:
            raise NonFiniteLossError(
                f"loss is not finite at epoch {self.epoch + 1}, step {bad + 1} "
                f"(lr {self.optimizer.param_groups[0]['lr']:g}, beta {beta:g}, rho {config.dnr.rho:g}); "
                "lower train.lr or check the data"
            )
        seen = max(totals.seen, 1)
        spec = config.attack.train
        cost = step_cost(adversarial=plan.adversarial, kind=self.method.training_attack, steps=spec.steps)
        return {
            "loss": float(totals.loss) / seen,
            "loss_clean": float(totals.loss_clean) / seen,
            "loss_adv": float(totals.loss_adv) / seen,
            "loss_l2": float(totals.loss_l2) / seen,
            "train_acc": 100.0 * float(totals.correct) / seen,
            "phase": plan.phase,
            "fwd_equiv": cost * totals.seen / max(len(self.data.train), 1),
        }

    # ----------------------------------------------------------------------------------------
    # Evaluation

    def evaluate(self, loader: DataLoader, *, robust: bool = True, limit: int | None = None) -> dict[str, float]:
        """Top-1 accuracy (%) ``{"clean", "fgsm", "pgd"}`` under the config's eval attacks.

        Always in fp32 (no autocast), like the post-training attacks of :mod:`dnr_sweep.evaluation`,
        so a figure means the same whichever precision trained the model. ``limit`` bounds the
        robust evaluation to the split's first images; clean accuracy uses them all.
        """
        spec = self.config.attack.eval
        correct = {"clean": 0, "fgsm": 0, "pgd": 0}
        seen = {"clean": 0, "robust": 0}
        eval_rng = torch.Generator(device=self.device).manual_seed(self.config.train.seed + 3)
        robust_attacks = {  # kind -> (settings, generator of its random starts), run in this order
            "fgsm": (AttackSettings(eps=spec.fgsm.eps), None),
            "pgd": (
                AttackSettings(
                    eps=spec.pgd.eps, alpha=spec.pgd.alpha, steps=spec.pgd.steps,
                    random_start=spec.pgd.random_start, restarts=spec.pgd.restarts,
                ),
                eval_rng,
            ),
        }  # fmt: skip
        for images, labels in self._batches(loader):
            correct["clean"] += int(attacks.accuracy(self.net, images, labels))
            seen["clean"] += labels.shape[0]
            if not robust or (limit is not None and seen["robust"] >= limit):
                continue
            if limit is not None and seen["robust"] + labels.shape[0] > limit:
                images, labels = images[: limit - seen["robust"]], labels[: limit - seen["robust"]]
            for kind, (settings, generator) in robust_attacks.items():
                adv = attack_registry.perturb(kind, self.net, images, labels, settings, generator)
                correct[kind] += int(attacks.accuracy(self.net, adv, labels))
            seen["robust"] += labels.shape[0]
        result = {"clean": 100.0 * correct["clean"] / max(seen["clean"], 1)}
        if robust:
            result["fgsm"] = 100.0 * correct["fgsm"] / max(seen["robust"], 1)
            result["pgd"] = 100.0 * correct["pgd"] / max(seen["robust"], 1)
        return result

    def sparsity_metrics(self) -> dict[str, Any]:
        """The model's sparsity as it is now (docs/RESULTS.md definitions, counted on the weights the network
        computes with: HYDRA's score phase masks them in the forward pass); ``mask_density``: the
        method's masks."""
        prune_linear = self.config.dnr.prune_linear
        with self.method.network_as_computed():
            metrics: dict[str, Any] = {
                "density": accounting.density(self.model, prune_linear=prune_linear),
                "mask_density": self.method.mask_density(),
                "compression": accounting.compression(self.model),
                "channels_present": accounting.channels_present(self.model, prune_linear=prune_linear),
            }
            for name, value in accounting.layer_density(self.model, prune_linear=prune_linear).items():
                metrics[rc.LAYER_PREFIX + name] = value
        return metrics

    # ----------------------------------------------------------------------------------------
    # One epoch

    @property
    def selection_split(self) -> str:
        return self.config.train.select_on

    def _selection_figures(self, robust: bool) -> dict[str, float]:
        """This epoch's accuracies on the selection split, by their contract names."""
        loader = self.val_loader if self.selection_split == "val" else self.test_loader
        names = dict(zip(rc.ACCURACY_KINDS, rc.selection_metrics(self.selection_split), strict=True))
        figures = self.evaluate(loader, robust=robust, limit=self.config.train.eval_subset)
        return {names[kind]: figures.get(kind, math.nan) for kind in rc.ACCURACY_KINDS}

    def train_epoch(self, progress: Callable[[int, int], None] | None = None) -> EpochReport:
        """Train, evaluate, select and rewire once; return this epoch's and the selected figures."""
        if self.finished:
            raise RuntimeError(f"the run already completed its {self.config.train.epochs} epochs")
        config = self.config
        start = time.perf_counter()
        plan = self.method.start_epoch(self.epoch)  # learning rate, phase entry
        metrics: dict[str, Any] = {"lr": self.optimizer.param_groups[0]["lr"]}
        metrics.update(self._train_one_epoch(progress, plan))
        with warnings.catch_warnings():
            # HYDRA's score phase steps the scores' optimizer, not this one; resumed inside that phase, torch
            # would warn that the (restored) schedule steps before an optimizer step it never sees
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.scheduler.step()
        train_time = time.perf_counter() - start

        epoch = self.epoch + 1
        last = epoch == config.train.epochs
        select_metric = config.train.resolved_select_metric
        tie_metric = rc.tie_break_metric(select_metric)
        robust = last or epoch % config.train.eval_every == 0 or not select_metric.endswith("_clean_acc")
        figures = self._selection_figures(robust)
        sparsity = self.sparsity_metrics()
        metrics.update(figures)
        metrics.update(sparsity)

        if plan.selectable and self.selection.may_win(figures[select_metric]):
            if not robust:  # a contender's robust figures are always measured (the tie-break reads them)
                figures = self._selection_figures(robust=True)
                metrics.update(figures)
            if self.selection.wins(figures[select_metric], figures[tie_metric]):
                self.selection.take(epoch, figures[select_metric], figures[tie_metric], {**figures, **sparsity})
                self.selected_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

        metrics["prune_rate"] = self.method.end_epoch(self.epoch, last)  # DNR: rewiring (not after the last)
        metrics.update(
            method_figures(self.method.epoch_metrics(), rc.METHOD_EPOCH_METRICS, "epoch_metrics", fill=False)
        )
        self.epoch = epoch
        metrics["train_time_s"] = train_time
        metrics["epoch_time_s"] = time.perf_counter() - start
        self.cost["fwd_equiv"] += metrics["fwd_equiv"]
        self.cost["adv_epochs"] += int(plan.adversarial)
        self.cost["phase_epochs"][plan.phase] = self.cost["phase_epochs"].get(plan.phase, 0) + 1
        return EpochReport(epoch, metrics, self.selected(), final=last)

    def selected(self) -> dict[str, Any]:
        """The selected epoch's figures so far: selection-split accuracies, sparsity, bookkeeping.

        Before the method's first selectable epoch (a baseline's final phase) nothing is selected:
        ``selected_epoch`` is ``None`` and the figures are NaN (a dense pre-training epoch is never
        offered as the pruned result)."""
        if self.selection.epoch is None:
            if self.epoch == 0:
                raise RuntimeError("no epoch has completed yet")
            names = (*rc.selection_metrics(self.selection_split), *rc.SPARSITY_METRICS)
            return {"selected_epoch": None, "selected_on": self.selection_split,
                    "select_metric": self.config.train.resolved_select_metric, **dict.fromkeys(names, math.nan)}  # fmt: skip
        return {
            "selected_epoch": self.selection.epoch,
            "selected_on": self.selection_split,
            "select_metric": self.config.train.resolved_select_metric,
            **self.selection.figures,
        }

    def final_metrics(self) -> dict[str, Any]:
        """The run's result: the selected figures plus the selected weights' full test-split accuracy.

        The test split is evaluated here, once per run, on the selected weights (never to choose).
        """
        if not self.finished:
            raise RuntimeError(f"the run has {self.config.train.epochs - self.epoch} epochs left")
        if self.final is None:
            current = copy.deepcopy(self.model.state_dict())
            self.model.load_state_dict(self.selected_state_dict())
            test = self.evaluate(self.test_loader, robust=True)
            self.model.load_state_dict(current)
            self.final = {
                **self.selected(),
                **dict(zip(rc.TEST_METRICS, (test[kind] for kind in rc.ACCURACY_KINDS), strict=True)),
                "epochs": self.epoch,
                **self.cost_metrics(),
                **method_figures(self.method.run_metrics(), rc.METHOD_RUN_METRICS, "run_metrics", fill=True),
            }
        return dict(self.final)

    def cost_metrics(self) -> dict[str, Any]:
        """What the run is and what its training cost (run contract: method, pruning type, forward-equivalents
        per image, adversarial epochs, epochs per phase). Wall time is the sum of the epochs' ``epoch_time_s``
        (the report adds it up): a run's result stays deterministic, so a resumed run's equals an
        uninterrupted one's."""
        return {
            "method": self.method.name,
            "pruning_type": self.method.pruning_type,
            rc.TRAIN_FWD_EQUIV: self.cost["fwd_equiv"],
            rc.TRAIN_ADV_EPOCHS: self.cost["adv_epochs"],
            **{rc.phase_epochs_metric(p): n for p, n in self.cost["phase_epochs"].items()},
        }

    def selected_state_dict(self) -> dict[str, Tensor]:
        """The selected epoch's weights (masks applied), for ``model.pt``."""
        if self.selected_state is None:
            raise RuntimeError("no epoch has completed yet")
        return {k: v.detach().cpu().clone() for k, v in self.selected_state.items()}

    # ----------------------------------------------------------------------------------------
    # State

    def _masked_weights(self) -> dict[str, Tensor]:
        """``w * m`` per prunable layer, computed exactly as :meth:`DynamicL2.snapshot` computes ``z``."""
        names = self.masking.layer_names
        weights = [w.detach() for w in self.masking.weights]
        return dict(zip(names, torch._foreach_mul(weights, [self.masking.masks[n] for n in names]), strict=True))

    def _z_is_snapshot(self) -> bool:
        """Whether ``z`` is, bit for bit, the masked weights as they are now.

        True between epochs (``z`` is snapshotted right after rewiring, and at construction), so a
        checkpoint can leave ``z`` out; false after the last epoch (no rewiring, no snapshot) and
        when the dynamic L2 term is off (``z`` empty). Checked, never assumed."""
        if not self.l2.z:
            return False
        masked = self._masked_weights()
        return list(self.l2.z) == list(masked) and all(
            state_codec.same_bits(self.l2.z[n], m) for n, m in masked.items()
        )

    def state_dict(self, *, selected_weights: bool = True) -> dict[str, Any]:
        """Everything needed to continue exactly, compactly encoded; tensors and plain values only.

        Masks are stored as bits and mostly-zero tensors (the masked weights) as their nonzero
        values (:mod:`dnr_sweep.artifacts.state_codec`, bit-exact); ``z`` is left out when it equals the masked
        weights (between epochs it always does) and rebuilt from them on load. Momentum stays dense:
        regrowth reads it where the mask is off. ``selected_weights=False`` leaves the selected
        epoch's weights out, for callers that keep them beside the checkpoint (written only when the
        selection changes) and hand them back to :meth:`load_state_dict`.
        """
        l2 = self.l2.state_dict()
        if self._z_is_snapshot():
            l2["z"] = Z_FROM_WEIGHTS
        return state_codec.encode({
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # MultiStepLR's own state holds a collections.Counter, which weights_only loading
            # refuses; the milestones come from the config, so the position is all we keep
            "scheduler": {"last_epoch": self.scheduler.last_epoch, "last_lr": self.scheduler.get_last_lr()},
            "masking": self.masking.state_dict(),
            "l2": l2,
            "selection": self.selection.state_dict(),
            "selected_state": self.selected_state if selected_weights else None,
            "final": dict(self.final) if self.final is not None else None,
            "method": self.method.state_dict(),
            "cost": {**self.cost, "phase_epochs": dict(self.cost["phase_epochs"])},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "loader": self.train_loader.generator.get_state() if self.train_loader.generator is not None else None,
                "attack": self.attack_rng.get_state(),
            },
        })  # fmt: skip

    def load_state_dict(self, state: dict[str, Any], *, selected_state: dict[str, Tensor] | None = None) -> None:
        """Restore :meth:`state_dict` output (or an older, plain one). ``selected_state``: the selected
        epoch's weights, when the state was saved with ``selected_weights=False``."""
        state = state_codec.decode(state)
        selection = state["selection"]
        selected = state["selected_state"] if state["selected_state"] is not None else selected_state
        if selection["epoch"] is not None and selected is None:
            raise ValueError(
                f"the state selects epoch {selection['epoch']} but holds no selected weights; pass them "
                "as selected_state (they are kept beside the checkpoint)"
            )
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler = state["scheduler"]  # the checkpoint keeps these two entries of torch's state_dict
        self.scheduler.load_state_dict({
            **self.scheduler.state_dict(),
            "last_epoch": int(scheduler["last_epoch"]),
            "_last_lr": list(scheduler["last_lr"]),
        })  # fmt: skip
        self.masking.load_state_dict(state["masking"])
        l2 = dict(state["l2"])
        if isinstance(l2["z"], str):
            if l2["z"] != Z_FROM_WEIGHTS:
                raise ValueError(f"unknown z reference {l2['z']!r} in the state; expected {Z_FROM_WEIGHTS!r}")
            l2["z"] = self._masked_weights()  # the weights and masks are restored bit for bit above
        self.l2.load_state_dict(l2)
        self.selection.load_state_dict(selection)
        self.selected_state = {k: v.to(self.device) for k, v in selected.items()} if selected is not None else None
        self.final = state["final"]
        self.method.load_state_dict(state.get("method") or {})
        cost = state.get("cost") or {"fwd_equiv": 0.0, "phase_epochs": {}}  # older states: none
        # older states did not count adversarial epochs: unknown (NaN), never a wrong count
        self.cost = {"adv_epochs": math.nan, **cost, "phase_epochs": dict(cost["phase_epochs"])}
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        if rng["loader"] is not None and self.train_loader.generator is not None:
            self.train_loader.generator.set_state(rng["loader"])
        self.attack_rng.set_state(rng["attack"])
