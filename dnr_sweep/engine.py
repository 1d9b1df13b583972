"""One DNR training run, epoch by epoch (the paper's Algorithm 1).

``DNRRun(config)`` builds the data, the model, SGD with momentum, the MultiStep LR schedule, the
masks (:class:`~dnr_sweep.sparsity.Masking`) and the dynamic L2 term. Each call of
:meth:`DNRRun.train_epoch` then

1. trains one epoch: clean-only sparse training during ``train.warmup_epochs``, afterwards the
   hybrid loss ``J = beta * (J_clean + rho/2 ||theta*m - z||^2) + (1 - beta) * J_adv`` (Eq. 6), with
   the masks re-applied after every optimizer step; ``beta = 1`` is DNR-C and generates no
   adversarial examples at all;
2. evaluates clean accuracy on the selection split and, every ``train.eval_every`` epochs, FGSM
   and PGD accuracy; keeps a copy of the best epoch's weights (selection on clean accuracy);
3. rewires the masks (prune by magnitude, regrow by momentum) with the linearly decaying pruning
   rate, except after the last epoch (a regrown weight starts at zero: rewiring after the last
   epoch would leave the final model below its target density), and snapshots ``z``;
4. returns a flat metrics dict.

After the last epoch the selected weights are evaluated on the full test split; those are the
run's final metrics (``clean_acc``, ``fgsm_acc``, ``pgd_acc`` and the sparsity figures). Every
epoch's dict also carries ``clean_acc``/``fgsm_acc``/``pgd_acc`` of the best epoch so far on the
selection split (and ``selected_epoch``), so a scheduler always has the metric it ranks by; on
the last epoch they are replaced by the test figures and ``final`` is true. ``density``,
``compression`` and ``channels_present`` are always the epoch's own; the selected epoch's are in
its own row (and in :meth:`finish`'s result).

The complete state (model, masks, z, optimizer, LR schedule, best weights, RNG states) round-trips
through :meth:`state_dict` / :meth:`load_state_dict`, so a resumed run continues bit-identically on
CPU. Nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from dnr_sweep import attacks, dataset_specs, gpu_data
from dnr_sweep.config import RunConfig
from dnr_sweep.data import DataSplits, build_datasets, make_loaders
from dnr_sweep.models import get_model
from dnr_sweep.sparsity import DynamicL2, Masking, accounting


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


class DNRRun:
    """A DNR training run that advances one epoch per :meth:`train_epoch` call."""

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
        self.data = data if data is not None else build_datasets(
            config.data.dataset,
            root=config.data.root_path,
            download=config.data.download,
            val_size=config.data.val_size,
            seed=config.train.seed,
            image_size=config.data.image_size,
            channels=config.data.channels,
            augment=not self.gpu_resident,  # the device loader augments itself
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
        self.masking = Masking(
            self.model,
            self.optimizer,
            density=config.dnr.density,
            pruning=config.dnr.pruning,
            prune_rate=config.dnr.prune_rate,
            total_epochs=config.train.epochs,
            prune_linear=config.dnr.prune_linear,
            generator=mask_rng,
        )
        self.l2 = DynamicL2(self.masking, rho=config.dnr.rho)
        self.l2.snapshot()
        # the attack's random starts draw from their own stream, on the device
        self.attack_rng = torch.Generator(device=self.device).manual_seed(config.train.seed + 2)

        self.epoch = 0  # epochs completed
        self.best: dict[str, Any] | None = None  # selection-split figures of the best epoch so far
        self.best_state: dict[str, Tensor] | None = None
        self.final: dict[str, Any] | None = None
        self.last_metrics: dict[str, Any] | None = None  # the last epoch's dict, replayed when finished

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
        spec = self.config.attack.train
        with self._autocast():
            if spec.kind == "fgsm":
                return attacks.fgsm(self.net, images, labels, eps=spec.eps)
            return attacks.pgd(
                self.net, images, labels, eps=spec.eps, alpha=spec.alpha, steps=spec.steps,
                random_start=spec.random_start, generator=self.attack_rng, bn_mode=spec.bn_mode,
            )  # fmt: skip

    def _train_one_epoch(self, progress: Callable[[int, int], None] | None) -> dict[str, float]:
        config = self.config
        hybrid = self.epoch >= config.train.warmup_epochs
        beta = config.dnr.beta if hybrid else 1.0
        use_l2 = hybrid and config.dnr.dynamic_l2 and config.dnr.rho > 0
        self.model.train()
        zero = torch.zeros((), device=self.device)
        totals = _EpochTotals(zero.clone(), zero.clone(), zero.clone(), zero.clone(), zero.clone())
        totals.bad_step = torch.full((), -1, device=self.device, dtype=torch.long)
        n_batches = len(self.train_loader)
        for step, (images, labels) in enumerate(self._batches(self.train_loader)):
            adv = self._adversarial(images, labels) if beta < 1.0 else None
            with self._autocast():
                logits = self.net(images)
                loss_clean = F.cross_entropy(logits, labels)
                loss_adv = F.cross_entropy(self.net(adv), labels) if adv is not None else zero
            loss_l2 = self.l2.penalty() if use_l2 else zero
            loss = beta * (loss_clean + loss_l2) + (1.0 - beta) * loss_adv
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.masking.step()  # optimizer step, then the masks are re-applied

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
        return {
            "loss": float(totals.loss) / seen,
            "loss_clean": float(totals.loss_clean) / seen,
            "loss_adv": float(totals.loss_adv) / seen,
            "loss_l2": float(totals.loss_l2) / seen,
            "train_acc": 100.0 * float(totals.correct) / seen,
            "phase": "hybrid" if hybrid else "warmup",
        }

    # ----------------------------------------------------------------------------------------
    # Evaluation

    def evaluate(self, loader: DataLoader, *, robust: bool = True, limit: int | None = None) -> dict[str, float]:
        """Top-1 accuracy (%) on clean, FGSM and PGD inputs (the config's eval attacks)."""
        spec = self.config.attack.eval
        correct = {"clean": 0, "fgsm": 0, "pgd": 0}
        seen = 0
        eval_rng = torch.Generator(device=self.device).manual_seed(self.config.train.seed + 3)
        for images, labels in self._batches(loader):
            if limit is not None and seen >= limit:
                break
            if limit is not None and seen + labels.shape[0] > limit:
                images, labels = images[: limit - seen], labels[: limit - seen]
            with self._autocast():
                correct["clean"] += int(attacks.accuracy(self.net, images, labels))
                if robust:
                    adv = attacks.fgsm(self.net, images, labels, eps=spec.fgsm.eps)
                    correct["fgsm"] += int(attacks.accuracy(self.net, adv, labels))
                    adv = attacks.pgd(
                        self.net, images, labels, eps=spec.pgd.eps, alpha=spec.pgd.alpha,
                        steps=spec.pgd.steps, random_start=spec.pgd.random_start,
                        restarts=spec.pgd.restarts, generator=eval_rng,
                    )  # fmt: skip
                    correct["pgd"] += int(attacks.accuracy(self.net, adv, labels))
            seen += labels.shape[0]
        seen = max(seen, 1)
        result = {"clean_acc": 100.0 * correct["clean"] / seen}
        if robust:
            result["fgsm_acc"] = 100.0 * correct["fgsm"] / seen
            result["pgd_acc"] = 100.0 * correct["pgd"] / seen
        return result

    def sparsity_metrics(self) -> dict[str, Any]:
        prune_linear = self.config.dnr.prune_linear
        metrics: dict[str, Any] = {
            "density": accounting.density(self.model, prune_linear=prune_linear),
            "mask_density": self.masking.mask_density(),
            "compression": accounting.compression(self.model),
            "channels_present": accounting.channels_present(self.model, prune_linear=prune_linear),
        }
        for name, value in accounting.layer_density(self.model, prune_linear=prune_linear).items():
            metrics[f"layer_density/{name}"] = value
        return metrics

    # ----------------------------------------------------------------------------------------
    # One epoch

    def train_epoch(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Train, evaluate, select and rewire once; return the epoch's flat metrics."""
        if self.finished:
            raise RuntimeError(f"the run already completed its {self.config.train.epochs} epochs")
        config = self.config
        start = time.perf_counter()
        metrics: dict[str, Any] = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        metrics.update(self._train_one_epoch(progress))
        self.scheduler.step()
        train_time = time.perf_counter() - start

        last = self.epoch + 1 == config.train.epochs
        robust = last or (self.epoch + 1) % config.train.eval_every == 0
        select_loader = self.val_loader if config.train.select_on == "val" else self.test_loader
        clean = self.evaluate(select_loader, robust=False)
        metrics["val_clean_acc"] = clean["clean_acc"]
        if robust:
            attacked = self.evaluate(select_loader, robust=True, limit=config.train.eval_subset)
            metrics["val_fgsm_acc"] = attacked["fgsm_acc"]
            metrics["val_pgd_acc"] = attacked["pgd_acc"]
        else:
            metrics["val_fgsm_acc"] = math.nan
            metrics["val_pgd_acc"] = math.nan
        metrics.update(self.sparsity_metrics())

        if self.best is None or clean["clean_acc"] > self.best["clean_acc"]:
            self.best = {
                "selected_epoch": self.epoch + 1,
                "clean_acc": clean["clean_acc"],
                "fgsm_acc": metrics["val_fgsm_acc"],
                "pgd_acc": metrics["val_pgd_acc"],
                **{k: metrics[k] for k in ("density", "compression", "channels_present")},
            }
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

        stats = None
        if not last:
            stats = self.masking.rewire(self.epoch)
            self.l2.snapshot()
        metrics["prune_rate"] = stats.prune_rate if stats is not None else 0.0
        self.epoch += 1
        metrics["epoch_time_s"] = time.perf_counter() - start
        metrics["train_time_s"] = train_time

        # the per-epoch sparsity figures stay this epoch's own; only the selection keys are merged
        selection_keys = ("selected_epoch", "clean_acc", "fgsm_acc", "pgd_acc")
        metrics.update({k: self.best[k] for k in selection_keys})
        metrics["final"] = False
        if last:
            final = self.finish()
            metrics.update({k: final[k] for k in selection_keys})
            metrics["final"] = True
        self.last_metrics = dict(metrics)
        return metrics

    def finish(self) -> dict[str, Any]:
        """Evaluate the selected epoch's weights on the full test split (the run's result)."""
        if self.final is not None:
            return self.final
        assert self.best_state is not None and self.best is not None
        current = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(self.best_state)
        final = self.evaluate(self.test_loader, robust=True)
        final.update({k: self.best[k] for k in ("density", "compression", "channels_present")})
        final["selected_epoch"] = self.best["selected_epoch"]
        final["final"] = True
        self.model.load_state_dict(current)
        self.final = final
        return final

    def selected_state_dict(self) -> dict[str, Tensor]:
        """The selected epoch's weights (masks applied), for ``model.pt``."""
        if self.best_state is None:
            raise RuntimeError("no epoch has completed yet")
        return {k: v.detach().cpu().clone() for k, v in self.best_state.items()}

    # ----------------------------------------------------------------------------------------
    # State

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: tensors and plain values only (weights_only loads)."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # MultiStepLR's own state holds a collections.Counter, which weights_only loading
            # refuses; the milestones come from the config, so the position is all we keep
            "scheduler": {"last_epoch": self.scheduler.last_epoch, "last_lr": self.scheduler.get_last_lr()},
            "masking": self.masking.state_dict(),
            "l2": self.l2.state_dict(),
            "best": dict(self.best) if self.best is not None else None,
            "best_state": self.best_state,
            "final": dict(self.final) if self.final is not None else None,
            "last_metrics": dict(self.last_metrics) if self.last_metrics is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "loader": self.train_loader.generator.get_state() if self.train_loader.generator is not None else None,
                "attack": self.attack_rng.get_state(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.last_epoch = int(state["scheduler"]["last_epoch"])
        self.scheduler._last_lr = list(state["scheduler"]["last_lr"])
        self.masking.load_state_dict(state["masking"])
        self.l2.load_state_dict(state["l2"])
        self.best = state["best"]
        self.best_state = state["best_state"]
        self.final = state["final"]
        self.last_metrics = state.get("last_metrics")
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        if rng["loader"] is not None and self.train_loader.generator is not None:
            self.train_loader.generator.set_state(rng["loader"])
        self.attack_rng.set_state(rng["attack"])
