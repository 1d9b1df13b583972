"""The five measurements of the GPU check (``benchmarks/gpu_check.py``): numerics, precision, epoch
speed, packing, data path.

Each ``part_*`` function takes the run's :class:`Profile` (sizes: the full H200 one or the tiny CPU
``--smoke`` one) and a :class:`Budget` (seconds, and the progress log), and returns a dict of
figures, each beside its same-run reference. A part checks its budget between measurements and
lists what it left out under ``skipped`` instead of running over. Nothing here imports Ray,
Optuna or ``dnr_sweep.sweep``: the check runs where only torch and the core's few pure wheels are.
"""

from __future__ import annotations

import copy
import io
import math
import multiprocessing as mp
import os
import queue
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import _common
import gpu_check_plain as plain
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dnr_sweep.attacks import gradient as attacks
from dnr_sweep.config import RunConfig
from dnr_sweep.data.device_loader import DeviceLoader
from dnr_sweep.data.loaders import DataSplits
from dnr_sweep.models.architectures import get_model
from dnr_sweep.training.engine import NonFiniteLossError, TrainingRun

#: dense bf16 matrix rate measured on this workplace's H200 (8192^3 products, 769-798 TFLOP/s)
PEAK_TFLOPS = 790.0
EPOCH_IMAGES = 50_000
#: goals of issue 24
GOAL_ENGINE_OVER_PLAIN = 1.05
GOAL_OVER_LIMIT = 3.0
#: numerics tolerances: relative L2 error of every weight tensor after N fp32 steps, CUDA vs CPU
WEIGHT_REL_TOL = 1e-3
#: adversarial images CUDA vs CPU: at most this fraction of pixels may differ (sign flips of near-zero gradients)
ADV_PIXEL_FRACTION_TOL = 0.01
#: per-epoch evaluation may run in bf16 when every accuracy gap (percentage points) is within this
PRECISION_GAP_PP = 0.5
#: ... and bf16 evaluation is at least this much faster than fp32
PRECISION_MIN_SPEEDUP = 1.1
#: forward agreement with fp32 eager (relative L2 error of the logits) that makes a setting "correct"
LOGIT_REL_TOL = {"fp32": 1e-4, "tf32": 1e-2, "bf16": 5e-2}
#: a larger packing must add at least this much aggregate throughput over the next smaller one
PACKING_MIN_GAIN = 1.1
#: CUDA context and allocator slack per process, on top of max_memory_reserved, when packing
CONTEXT_BYTES = 1 << 30


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets of one run of the check (seconds are per part)."""

    name: str
    device: str
    archs: tuple[str, ...] = ("resnet18", "vgg16")
    width: float = 1.0
    size: int = 32
    batch: int = 128
    numerics_width: float = 0.5
    numerics_batch: int = 32
    numerics_steps: int = 3
    attack_images: int = 64
    precision_arch: str = "resnet18"
    precision_train_images: int = 16_384
    precision_train_s: float = 30.0
    precision_max_epochs: int = 12
    precision_eval_images: int = 2048
    epoch_images: int = 30 * 128
    warmup_steps: int = 5
    precisions: tuple[str, ...] = ("fp32", "tf32", "bf16")
    channels_last: tuple[bool, ...] = (False, True)
    compile: bool = True
    compile_reserve_s: float = 45.0
    packs: tuple[int, ...] = (1, 2, 4, 8)
    pack_shapes: tuple[tuple[str, int, int, bool], ...] = (
        ("resnet18", 32, 10, True),  # arch, image side, classes, throughput measured (else memory only)
        ("vgg16", 32, 10, True),
        ("vgg16", 64, 200, False),
    )
    pack_loader_batches: int = 8
    pack_seconds: float = 6.0
    pack_ready_timeout_s: float = 120.0
    data_images: int = 20_480
    data_workers: tuple[int, ...] = (4, 8)
    budgets: dict[str, float] = field(
        default_factory=lambda: {"numerics": 35, "precision": 65, "epoch_speed": 190, "packing": 105, "data_path": 25}
    )


FULL = Profile(name="full", device="cuda")
SMOKE = Profile(
    name="smoke",
    device="cpu",
    width=0.0625,
    batch=16,
    numerics_width=0.0625,
    numerics_batch=8,
    numerics_steps=2,
    attack_images=8,
    precision_train_images=128,
    precision_train_s=3.0,
    precision_max_epochs=1,
    precision_eval_images=32,
    epoch_images=32,
    warmup_steps=1,
    precisions=("fp32",),
    # channels_last is a CUDA setting; on some CPUs torch 2.14.1's channels_last training is pathologically
    # slow and its backward aborts with heap corruption (seen on an AMD EPYC VM, plain loop and engine alike)
    channels_last=(False,),
    compile=False,
    packs=(1, 2),
    pack_shapes=(("resnet18", 32, 10, True), ("vgg16", 64, 200, False)),
    pack_loader_batches=1,
    pack_seconds=1.0,
    pack_ready_timeout_s=90.0,
    data_images=256,
    data_workers=(2,),
    budgets={"numerics": 60, "precision": 60, "epoch_speed": 60, "packing": 60, "data_path": 60},  # ~15 s used, idle
)


class Budget:
    """A part's time budget and the run's progress log."""

    def __init__(self, seconds: float, log: Callable[[str], None]) -> None:
        self.seconds = float(seconds)
        self.start = time.perf_counter()
        self.log = log

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def expired(self) -> bool:
        return self.remaining() <= 0


# ------------------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class Setting:
    """One CUDA speed setting: numeric precision, memory format, torch.compile, cuDNN autotuning."""

    precision: str = "fp32"  # fp32 (TF32 off), tf32 (TF32 matmuls + convolutions), bf16 (autocast, TF32 on)
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False  # the engine never sets it: False is what trials run with today

    @property
    def label(self) -> str:
        flags = [self.precision] + ["CL"] * self.channels_last + ["compile"] * self.compile
        return " ".join(flags + ["cudnn.benchmark"] * self.cudnn_benchmark)


def apply_backend(setting: Setting, device: torch.device) -> None:
    """TF32 and cuDNN flags for ``setting`` (no-ops on CPU)."""
    tf32 = setting.precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = setting.cudnn_benchmark and device.type == "cuda"


def sync(device: torch.device) -> None:
    _common.sync(device)


def tiny_splits(size: int, classes: int) -> DataSplits:
    small = torch.rand(8, 3, size, size)
    labels = torch.zeros(8, dtype=torch.long)
    ds = TensorDataset(small, labels)
    return DataSplits(
        train=ds, val=ds, test=ds, num_classes=classes, in_channels=3, image_size=size,
        mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26),
    )  # fmt: skip


def make_run(
    arch: str,
    *,
    width: float,
    size: int,
    classes: int,
    batch: int,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool | None = None,
    compile: bool = False,
    random_start: bool = True,
    density: float = 0.05,
    lr: float = 0.1,
    threads: int | None = None,
) -> TrainingRun:
    """A DNR run (PGD-7 hybrid loss, dynamic L2, irregular masks) on a stand-in data set; callers set
    ``train_loader`` to the batches they time."""
    config = RunConfig.model_validate({
        "data": {"dataset": "synthetic", "val_size": 8},
        "model": {"arch": arch, "width": width},
        "train": {"epochs": 10, "batch_size": batch, "warmup_epochs": 0, "device": device.type, "lr": lr,
                  "precision": precision, "channels_last": channels_last, "compile": compile,
                  "num_threads": threads},
        "dnr": {"pruning": "irregular", "density": density, "beta": 0.5, "rho": 1e-4},
        "attack": {"train": {"kind": "pgd", "eps": 8 / 255, "alpha": 0.01, "steps": 7, "random_start": random_start}},
    })  # fmt: skip
    return TrainingRun(config, data=tiny_splits(size, classes), device=device)


def uint8_images(n: int, size: int, classes: int, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Synthetic uint8 images of the real shape (random content; speed does not depend on it)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    return images.to(device), torch.randint(0, classes, (n,), generator=gen).to(device)


def rel_err(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    denom = float(b.norm())
    return float((a - b).norm()) / denom if denom > 0 else float((a - b).norm())


# ------------------------------------------------------------------------------------- 1. numerics


def _compare_adv(cpu: Tensor, dev: Tensor) -> dict[str, float]:
    diff = (cpu - dev.cpu()).abs()
    return {"max_abs_diff": float(diff.max()), "fraction_differing": float((diff > 1e-6).float().mean())}


def part_numerics(p: Profile, b: Budget) -> dict[str, Any]:
    """N DNR steps + one rewiring on the device (fp32, TF32 off) against the CPU from one saved state;
    FGSM/PGD on the device against the CPU path and torchattacks."""
    dev, cpu = torch.device(p.device), torch.device("cpu")
    apply_backend(Setting("fp32"), dev)
    kw = dict(width=p.numerics_width, size=p.size, classes=10, batch=p.numerics_batch, precision="fp32",
              random_start=False, density=0.1)  # fmt: skip
    ref = make_run("resnet18", device=cpu, channels_last=False, **kw)
    buf = io.BytesIO()  # the one saved state both runs start from
    torch.save({"model": ref.model.state_dict(), "masking": ref.masking.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    dut = make_run("resnet18", device=dev, channels_last=None, **kw)  # the device's default memory format
    for run in (ref, dut):
        run.model.load_state_dict(saved["model"])
        run.masking.load_state_dict(saved["masking"])
        run.l2.snapshot()
    gen = torch.Generator().manual_seed(11)
    size, n = p.size, p.numerics_batch
    batches = [(torch.rand(n, 3, size, size, generator=gen), torch.randint(0, 10, (n,), generator=gen))
               for _ in range(p.numerics_steps)]  # fmt: skip
    for run in (ref, dut):
        run.train_loader = batches
        run._train_one_epoch(None)
    b.log(f"numerics: {p.numerics_steps} DNR steps on cpu and {dev}")
    weight_err = {k: rel_err(dut.model.state_dict()[k], v) for k, v in ref.model.state_dict().items()
                  if v.is_floating_point()}  # fmt: skip
    worst = max(weight_err, key=weight_err.get)
    pre = {"model": copy.deepcopy(ref.model.state_dict()), "optimizer": copy.deepcopy(ref.optimizer.state_dict()),
           "masking": ref.masking.state_dict()}  # fmt: skip
    ref.masking.rewire(0)
    dut.masking.rewire(0)

    def mismatches() -> int:
        return int(sum(int((ref.masking.masks[k] != dut.masking.masks[k].cpu()).sum()) for k in ref.masking.masks))

    e2e = mismatches()
    # the rewiring alone: the device rewires from the CPU's exact pre-rewiring state
    dut.model.load_state_dict(pre["model"])
    dut.optimizer.load_state_dict(pre["optimizer"])
    dut.masking.load_state_dict(pre["masking"])
    dut.masking.rewire(0)
    iso = mismatches()
    iso_weight_err = max(rel_err(dut.model.state_dict()[k], v) for k, v in ref.model.state_dict().items()
                         if v.is_floating_point())  # fmt: skip
    total_mask = int(sum(m.numel() for m in ref.masking.masks.values()))
    b.log(f"numerics: rewiring compared, {iso} mask mismatches from the same state, {e2e} after the steps")

    # attacks on the same (CPU-trained) model and images
    model_cpu = ref.model.eval()
    model_dev = copy.deepcopy(model_cpu).to(dev)
    x = torch.rand(p.attack_images, 3, size, size, generator=gen)
    y = torch.randint(0, 10, (p.attack_images,), generator=gen)
    xd, yd = x.to(dev), y.to(dev)
    eps, alpha = 8 / 255, 0.01
    out: dict[str, Any] = {}
    for name, fn in {
        "fgsm": lambda m, a, t: attacks.fgsm(m, a, t, eps=eps),
        "pgd7": lambda m, a, t: attacks.pgd(m, a, t, eps=eps, alpha=alpha, steps=7, random_start=False),
    }.items():
        a_cpu, a_dev = fn(model_cpu, x, y), fn(model_dev, xd, yd)
        acc_cpu = 100.0 * int(attacks.accuracy(model_cpu, a_cpu, y)) / len(y)
        acc_dev = 100.0 * int(attacks.accuracy(model_dev, a_dev, yd)) / len(y)
        row = {**_compare_adv(a_cpu, a_dev), "acc_device": acc_dev, "acc_cpu_reference": acc_cpu}
        row["ok"] = row["fraction_differing"] <= ADV_PIXEL_FRACTION_TOL and abs(acc_dev - acc_cpu) <= 100.0 / len(y)
        out[name] = row
    try:
        import torchattacks  # the independent reference, carried as a pure wheel

        ta = {"fgsm": torchattacks.FGSM(model_dev, eps=eps),
              "pgd7": torchattacks.PGD(model_dev, eps=eps, alpha=alpha, steps=7, random_start=False)}  # fmt: skip
        for name, atk in ta.items():
            ours = attacks.fgsm(model_dev, xd, yd, eps=eps) if name == "fgsm" else attacks.pgd(
                model_dev, xd, yd, eps=eps, alpha=alpha, steps=7, random_start=False)  # fmt: skip
            cmp = _compare_adv(atk(xd, yd).cpu(), ours)
            out[name]["torchattacks_on_device"] = {**cmp, "ok": cmp["fraction_differing"] <= 1e-3}
        out["torchattacks"] = getattr(torchattacks, "__version__", "present")
    except ImportError:
        out["torchattacks"] = None  # not carried: the CPU path is the only reference
    return {
        "device": str(dev),
        "steps": p.numerics_steps,
        "setting": "fp32, TF32 off; device in its default memory format, CPU contiguous; PGD without random start",
        "weights_rel_err_max": weight_err[worst],
        "weights_rel_err_worst_tensor": worst,
        "weights_tolerance": WEIGHT_REL_TOL,
        "weights_ok": weight_err[worst] <= WEIGHT_REL_TOL,
        "rewiring_same_state_mask_mismatches": iso,
        "rewiring_same_state_weights_rel_err_max": iso_weight_err,
        "rewiring_after_steps_mask_mismatches": e2e,
        "mask_entries": total_mask,
        "masks_ok": iso == 0,
        "attacks": out,
    }


# ------------------------------------------------------------------------------------ 2. precision


def prototype_images(n: int, size: int, classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """A learnable CIFAR-shaped task: each class a fixed smooth colour pattern, plus per-image noise.

    The patterns always come from seed 0 (train and evaluation sets share them); ``seed`` draws the
    labels and the noise. uint8, so it runs through the DeviceLoader like CIFAR."""
    protos = F.interpolate(torch.rand(classes, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                           size=(size, size), mode="bilinear", align_corners=False)  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    noise = torch.rand(n, 3, size, size, generator=gen) - 0.5
    images = (0.5 + 0.3 * protos[labels] + 0.4 * noise).clamp(0, 1)
    return (images * 255).round().to(torch.uint8), labels


def _eval_precision(model: torch.nn.Module, x: Tensor, y: Tensor, bf16: bool, seed: int, chunk: int) -> dict:
    """Clean / FGSM / PGD-7 (random start, seeded) correctness per image, in bf16 autocast or fp32."""
    dev = x.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    ctx = torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if bf16 else None
    correct: dict[str, list[Tensor]] = {"clean": [], "fgsm": [], "pgd": []}
    model.eval()
    sync(dev)
    start = time.perf_counter()
    for i in range(0, len(y), chunk):
        xb, yb = x[i : i + chunk], y[i : i + chunk]
        if ctx is not None:
            ctx.__enter__()
        try:
            with torch.no_grad():
                correct["clean"].append(model(xb).argmax(1) == yb)
            adv = attacks.fgsm(model, xb, yb, eps=8 / 255)
            with torch.no_grad():
                correct["fgsm"].append(model(adv).argmax(1) == yb)
            adv = attacks.pgd(model, xb, yb, eps=8 / 255, alpha=0.01, steps=7, random_start=True, generator=gen)
            with torch.no_grad():
                correct["pgd"].append(model(adv).argmax(1) == yb)
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
    sync(dev)
    seconds = time.perf_counter() - start
    per_image = {k: torch.cat(v).cpu() for k, v in correct.items()}
    return {"per_image": per_image, "seconds": seconds}


def part_precision(p: Profile, b: Budget) -> dict[str, Any]:
    """Train one model briefly (DNR hybrid, the device's default precision), then clean/FGSM/PGD accuracy
    over the same images in bf16 autocast and in fp32; the gap decides per-epoch evaluation precision."""
    dev = torch.device(p.device)
    apply_backend(Setting("tf32"), dev)  # torch's own CUDA default leaves cuDNN TF32 on; fp32 eval below turns it off
    run = make_run(p.precision_arch, width=p.width, size=p.size, classes=10, batch=p.batch, device=dev,
                   precision="auto", density=0.1, lr=0.05)  # fmt: skip
    train_x, train_y = prototype_images(p.precision_train_images, p.size, 10, seed=1)
    run.train_loader = DeviceLoader(train_x.to(dev), train_y.to(dev), batch_size=p.batch, augment=True,
                                    generator=torch.Generator(device=dev).manual_seed(0), pad=4)  # fmt: skip
    epochs, start = 0, time.perf_counter()
    while epochs < p.precision_max_epochs and (epochs == 0 or time.perf_counter() - start < p.precision_train_s):
        stats = run._train_one_epoch(None)
        run.masking.rewire(epochs)
        run.l2.snapshot()
        epochs += 1
        b.log(f"precision: trained epoch {epochs} (train acc {stats['train_acc']:.1f}%)")
    eval_x, eval_y = prototype_images(p.precision_eval_images, p.size, 10, seed=2)
    x, y = eval_x.to(dev).float().div_(255), eval_y.to(dev)
    chunk = 256
    apply_backend(Setting("fp32"), dev)
    fp32 = _eval_precision(run.model, x, y, bf16=False, seed=5, chunk=chunk)
    apply_backend(Setting("bf16"), dev)
    bf16 = _eval_precision(run.model, x, y, bf16=True, seed=5, chunk=chunk)
    apply_backend(Setting("fp32"), dev)
    figures: dict[str, Any] = {"images": len(y), "train_epochs": epochs, "train_images": p.precision_train_images,
                               "model": f"{p.precision_arch} w{p.width}, density 0.1, trained {epochs} epochs",
                               "accuracy": {}}  # fmt: skip
    for kind in ("clean", "fgsm", "pgd"):
        a, r = bf16["per_image"][kind], fp32["per_image"][kind]
        figures["accuracy"][kind] = {
            "bf16": 100.0 * float(a.float().mean()),
            "fp32_reference": 100.0 * float(r.float().mean()),
            "gap_pp": 100.0 * float(a.float().mean() - r.float().mean()),
            "images_disagreeing": int((a != r).sum()),
        }
    worst = max(abs(v["gap_pp"]) for v in figures["accuracy"].values())
    speedup = fp32["seconds"] / max(bf16["seconds"], 1e-9)
    use_bf16 = worst <= PRECISION_GAP_PP and speedup >= PRECISION_MIN_SPEEDUP
    figures.update({
        "eval_seconds": {"bf16": bf16["seconds"], "fp32_reference": fp32["seconds"]},
        "bf16_speedup": speedup,
        "worst_gap_pp": worst,
        "rule": f"per-epoch eval in bf16 iff every |gap| <= {PRECISION_GAP_PP} pp and bf16 >= "
                f"{PRECISION_MIN_SPEEDUP}x faster; final evaluation stays fp32",
        "per_epoch_eval_precision": "bf16" if use_bf16 else "fp32",
    })  # fmt: skip
    return figures


# ----------------------------------------------------------------------------------- 3. epoch speed


def flops_per_image(arch: str, p: Profile, dev: torch.device) -> float:
    """FLOPs of one PGD-7 hybrid training step per image, counted by torch.utils.flop_counter
    (matrix multiplies and convolutions): 7 attack steps (forward + input-gradient backward) and two
    forward + full backward passes (clean and adversarial). Counted piecewise with ``backward()``:
    the counter's module tracking refuses ``torch.autograd.grad``."""
    from torch.utils.flop_counter import FlopCounterMode

    model = get_model(arch, num_classes=10, width=p.width).to(dev)
    n = 4
    x, y = torch.rand(n, 3, p.size, p.size, device=dev), torch.randint(0, 10, (n,), device=dev)
    model.eval()
    model.requires_grad_(False)  # an attack step: gradients with respect to the input only
    with FlopCounterMode(display=False) as attack:
        F.cross_entropy(model(x.clone().requires_grad_(True)), y).backward()
    model.requires_grad_(True)
    model.train()
    with FlopCounterMode(display=False) as full:
        F.cross_entropy(model(x), y).backward()
    return (7 * attack.get_total_flops() + 2 * full.get_total_flops()) / n


def matmul_tflops(dev: torch.device) -> float | None:
    """The card's bf16 matrix rate here and now (8192^3, random data, median of 10 after 3 warm-ups)."""
    if dev.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    c = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ c
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ c
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * 8192**3 / sorted(times)[len(times) // 2] / 1e12


def _loaders(images: Tensor, labels: Tensor, p: Profile) -> tuple[DeviceLoader, DeviceLoader]:
    dev = images.device
    n_warm = p.batch * p.warmup_steps
    warm = DeviceLoader(images[:n_warm], labels[:n_warm], batch_size=p.batch, augment=True,
                        generator=torch.Generator(device=dev).manual_seed(1), pad=4)  # fmt: skip
    timed = DeviceLoader(images, labels, batch_size=p.batch, augment=True,
                         generator=torch.Generator(device=dev).manual_seed(0), pad=4)  # fmt: skip
    return warm, timed


def engine_epoch(arch: str, s: Setting, p: Profile, images: Tensor, labels: Tensor) -> dict[str, Any]:
    """Seconds of the engine's DNR epoch over ``images`` (after a warm-up), and whether ``s`` is correct."""
    dev = images.device
    apply_backend(s, dev)
    run = make_run(arch, width=p.width, size=p.size, classes=10, batch=p.batch, device=dev,
                   precision="bf16" if s.precision == "bf16" else "fp32", channels_last=s.channels_last,
                   compile=s.compile)  # fmt: skip
    warm, timed = _loaders(images, labels, p)
    row: dict[str, Any] = {"arch": arch, "setting": asdict(s), "label": s.label}
    try:
        run.train_loader = warm
        run._train_one_epoch(None)
        run.train_loader = timed
        stats: dict[str, Any] = {}
        seconds = _common.timed(lambda: stats.update(run._train_one_epoch(None)), dev)
        finite = math.isfinite(stats["loss"])
    except NonFiniteLossError as exc:
        return {**row, "correct": False, "error": str(exc)}
    # forward agreement with fp32 eager on the same weights
    xb = images[: p.batch].float().div(255)
    run.model.eval()
    with torch.no_grad():
        xv = xb.contiguous(memory_format=torch.channels_last) if s.channels_last else xb
        ctx = torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if s.precision == "bf16" else None
        with ctx if ctx is not None else torch.no_grad():
            out = run.net(xv).float()
        apply_backend(Setting("fp32"), dev)
        ref = run.model(xb).float()
    err = rel_err(out, ref)
    return {**row, "images": len(labels), "epoch_s": seconds, "epoch_s_per_50k": seconds * EPOCH_IMAGES / len(labels),
            "loss_finite": finite, "logits_rel_err_vs_fp32": err,
            "correct": finite and err <= LOGIT_REL_TOL[s.precision]}  # fmt: skip


def plain_epoch(arch: str, s: Setting, p: Profile, images: Tensor, labels: Tensor) -> float:
    """Seconds of the independent dense PGD-7 loop over the same batches and setting."""
    dev = images.device
    apply_backend(s, dev)
    torch.manual_seed(0)
    model = get_model(arch, num_classes=10, width=p.width).to(dev)
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if s.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    warm, timed = _loaders(images, labels, p)
    bf16 = s.precision == "bf16"
    plain.train_epoch(net, opt, warm, bf16=bf16, channels_last=s.channels_last)
    return _common.timed(lambda: plain.train_epoch(net, opt, timed, bf16=bf16, channels_last=s.channels_last), dev)


def part_epoch_speed(p: Profile, b: Budget) -> dict[str, Any]:
    """Engine epoch vs the plain loop and vs the FLOP-count limit, per arch and setting."""
    dev = torch.device(p.device)
    measured_peak = matmul_tflops(dev)
    if measured_peak is not None:
        b.log(f"epoch_speed: bf16 matmul {measured_peak:.0f} TFLOP/s measured (limit uses {PEAK_TFLOPS:g})")
    rows, skipped, limits = [], [], {}
    images, labels = uint8_images(p.epoch_images, p.size, 10, dev)
    eager = [Setting(q, cl) for q in p.precisions for cl in p.channels_last]
    for i, arch in enumerate(p.archs):
        arch_end = b.elapsed() + b.remaining() / (len(p.archs) - i)
        fpi = flops_per_image(arch, p, dev)
        limit = fpi * EPOCH_IMAGES / (PEAK_TFLOPS * 1e12)
        limits[arch] = {"flops_per_image": fpi, "limit_s_per_50k": limit, "peak_tflops": PEAK_TFLOPS,
                        "limit_s_per_50k_at_measured_peak": fpi * EPOCH_IMAGES / (measured_peak * 1e12)
                        if measured_peak else None}  # fmt: skip
        arch_rows: list[dict[str, Any]] = []

        def measure(
            s: Setting, with_plain: bool = True, arch: str = arch, limit: float = limit, arch_rows: list = arch_rows
        ) -> None:
            row = engine_epoch(arch, s, p, images, labels)
            if "epoch_s" in row:
                row["limit_s_per_50k"] = limit
                row["ratio_to_limit"] = row["epoch_s_per_50k"] / limit
                if with_plain:
                    ps = plain_epoch(arch, s, p, images, labels)
                    row["plain_epoch_s_per_50k"] = ps * EPOCH_IMAGES / len(labels)
                    row["engine_over_plain"] = row["epoch_s"] / ps
            arch_rows.append(row)
            b.log(f"epoch_speed: {arch} {s.label}: {row.get('epoch_s_per_50k', float('nan')):.2f} s/50k "
                  f"({row.get('ratio_to_limit', float('nan')):.1f}x limit, "
                  f"{row.get('engine_over_plain', float('nan')):.2f}x plain, correct={row['correct']})")  # fmt: skip

        for s in eager:
            if arch_rows and b.elapsed() >= arch_end:  # the first setting of every arch always runs
                skipped.append(f"{arch} {s.label}: part budget")
                continue
            measure(s)
        good = [r for r in arch_rows if r["correct"] and "epoch_s" in r]
        if good:
            best = Setting(**min(good, key=lambda r: r["epoch_s"])["setting"])
            extras = [replace(best, cudnn_benchmark=True)] + ([replace(best, compile=True)] if p.compile else [])
            for s in extras:
                if s.compile and arch_end - b.elapsed() < p.compile_reserve_s:
                    skipped.append(f"{arch} {s.label}: less than {p.compile_reserve_s:g} s of budget left")
                    continue
                if b.elapsed() >= arch_end:
                    skipped.append(f"{arch} {s.label}: part budget")
                    continue
                measure(s, with_plain=not s.compile)  # compiling the plain loop too would double the cost
        rows.extend(arch_rows)
    apply_backend(Setting("fp32"), dev)
    return {
        "device": str(dev),
        "images_timed": p.epoch_images,
        "batch": p.batch,
        "width": p.width,
        "measured_matmul_tflops": measured_peak,
        "limits": limits,
        "rows": rows,
        "skipped": skipped,
        "goals": {"engine_over_plain": GOAL_ENGINE_OVER_PLAIN, "ratio_to_limit": GOAL_OVER_LIMIT},
        "timing": "one timed epoch over the images after a warm-up of warmup_steps batches; device synchronised",
    }


# --------------------------------------------------------------------------------------- 4. packing


def pack_worker(index: int, device: str, commands: Any, results: Any) -> None:
    """A trial process: builds the run it is told to, warms it up, trains until told to stop."""
    dev = torch.device(device)
    run = None
    try:
        while True:
            cmd = commands.get()
            if cmd is None:
                return
            if cmd["op"] == "prepare":
                run = None
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(dev)
                torch.set_num_threads(cmd["threads"])
                run = make_run(cmd["arch"], width=cmd["width"], size=cmd["size"], classes=cmd["classes"],
                               batch=cmd["batch"], device=dev, precision="auto", threads=cmd["threads"])  # fmt: skip
                images, labels = uint8_images(cmd["batch"] * cmd["batches"], cmd["size"], cmd["classes"], dev, index)
                run.train_loader = DeviceLoader(images, labels, batch_size=cmd["batch"], augment=True, pad=4,
                                                generator=torch.Generator(device=dev).manual_seed(index))  # fmt: skip
                run._train_one_epoch(None)  # warm-up
                sync(dev)
                results.put({"op": "ready", "index": index})
            elif cmd["op"] == "go":
                assert run is not None
                sync(dev)
                start = time.perf_counter()
                epochs = 0
                while epochs == 0 or time.time() < cmd["until"]:
                    run._train_one_epoch(None)
                    epochs += 1
                sync(dev)
                elapsed = time.perf_counter() - start
                peak = reserved = None
                if dev.type == "cuda":
                    peak, reserved = torch.cuda.max_memory_allocated(dev), torch.cuda.max_memory_reserved(dev)
                results.put({"op": "done", "index": index, "images": epochs * run.train_loader.dataset_size,
                             "elapsed_s": elapsed, "peak_allocated_bytes": peak, "peak_reserved_bytes": reserved,
                             "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})  # fmt: skip
    except Exception:  # reported to the parent, which records it and stops the part
        results.put({"op": "error", "index": index, "error": traceback.format_exc()[-2000:]})


def _collect(results: Any, op: str, k: int, timeout: float) -> list[dict[str, Any]]:
    out, deadline = [], time.time() + timeout
    while len(out) < k:
        try:
            msg = results.get(timeout=max(0.1, deadline - time.time()))
        except queue.Empty:
            raise TimeoutError(
                f"{k - len(out)} of {k} trial processes did not answer '{op}' in {timeout:g} s"
            ) from None
        if msg["op"] == "error":
            raise RuntimeError(f"trial process {msg['index']} failed:\n{msg['error']}")
        out.append(msg)
    return sorted(out, key=lambda m: m["index"])


def part_packing(p: Profile, b: Budget) -> dict[str, Any]:
    """1, 2, 4, 8 trial processes training at once on the one device (what Ray's fractional num_gpus
    does: separate processes sharing it), without Ray: plain spawned processes."""
    ctx = mp.get_context("spawn")
    n_workers = max(p.packs)
    results = ctx.Queue()
    commands = [ctx.Queue() for _ in range(n_workers)]
    procs = [ctx.Process(target=pack_worker, args=(i, p.device, commands[i], results), daemon=True)
             for i in range(n_workers)]  # fmt: skip
    for proc in procs:
        proc.start()
    cores = os.cpu_count() or 1
    phases, skipped = [], []
    try:
        for arch, size, classes, throughput in p.pack_shapes:
            for k in p.packs if throughput else (1,):
                if k > 1 and b.expired():  # one trial of every shape always runs (its memory figure)
                    skipped.append(f"{arch} {size}px k={k}: part budget")
                    continue
                threads = max(1, cores // k) if p.device == "cuda" else 1
                for i in range(k):
                    commands[i].put({"op": "prepare", "arch": arch, "size": size, "classes": classes, "width": p.width,
                                     "batch": p.batch, "batches": p.pack_loader_batches, "threads": threads})  # fmt: skip
                _collect(results, "prepare", k, p.pack_ready_timeout_s)
                seconds = p.pack_seconds if throughput else min(p.pack_seconds, 2.0)
                until = time.time() + seconds
                for i in range(k):
                    commands[i].put({"op": "go", "until": until})
                done = _collect(results, "go", k, seconds + p.pack_ready_timeout_s)
                rate = sum(m["images"] / m["elapsed_s"] for m in done)  # images/s, all trials together
                phase = {
                    "arch": arch, "size": size, "classes": classes, "per_gpu": k, "throughput_measured": throughput,
                    "images_per_s": rate, "trial_epochs_per_hour": rate * 3600 / EPOCH_IMAGES,
                    "peak_allocated_bytes_per_trial": max((m["peak_allocated_bytes"] or 0) for m in done) or None,
                    "peak_reserved_bytes_per_trial": max((m["peak_reserved_bytes"] or 0) for m in done) or None,
                    "peak_rss_bytes_per_trial": max(m["peak_rss_bytes"] for m in done),
                    "cpu_threads_per_trial": threads,
                }  # fmt: skip
                phases.append(phase)
                mem = phase["peak_allocated_bytes_per_trial"] or phase["peak_rss_bytes_per_trial"]
                what = "device" if phase["peak_allocated_bytes_per_trial"] else "host RSS"
                b.log(f"packing: {arch} {size}px k={k}: {phase['trial_epochs_per_hour']:.1f} trial-epochs/h, "
                      f"peak {what} {mem / 2**30:.2f} GiB/trial")  # fmt: skip
    finally:
        for c in commands:
            c.put(None)
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    for ph in phases:
        base = next(
            (q for q in phases if (q["arch"], q["size"]) == (ph["arch"], ph["size"]) and q["per_gpu"] == 1), None
        )
        ph["throughput_vs_1"] = ph["images_per_s"] / base["images_per_s"] if base else None
    total = torch.cuda.get_device_properties(0).total_memory if p.device == "cuda" else None
    return {"device": p.device, "phases": phases, "skipped": skipped, "device_memory_bytes": total,
            "seconds_per_phase": p.pack_seconds, "batch": p.batch, "width": p.width,
            "memory_note": "peak_* from torch.cuda.max_memory_* in each trial process (CUDA); "
                           "peak_rss is host memory (the only figure on CPU)"}  # fmt: skip


# ------------------------------------------------------------------------------------- 5. data path


class AugmentedCPU(Dataset):
    """The CPU path: uint8 images augmented per item with torchvision (crop, reflect pad 4, flip)."""

    def __init__(self, images: Tensor, labels: Tensor, size: int) -> None:
        from torchvision import transforms

        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.RandomCrop(size, padding=4, padding_mode="reflect"),
                                             transforms.RandomHorizontalFlip()])  # fmt: skip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.images[i].float().div(255)), int(self.labels[i])


def part_data_path(p: Profile, b: Budget) -> dict[str, Any]:
    """Images/s of one augmented epoch: DeviceLoader vs DataLoader with workers (batches moved to the device)."""
    dev = torch.device(p.device)
    cpu_images, cpu_labels = uint8_images(p.data_images, p.size, 10, torch.device("cpu"))
    dev_images, dev_labels = cpu_images.to(dev), cpu_labels.to(dev)
    loader = DeviceLoader(dev_images, dev_labels, batch_size=p.batch, augment=True, pad=4,
                          generator=torch.Generator(device=dev).manual_seed(0))  # fmt: skip

    def device_epoch() -> None:
        for x, _ in loader:
            x.sum()  # consume it

    device_epoch()  # warm-up
    dev_s = _common.timed(device_epoch, dev)
    rows = []
    for workers in p.data_workers:
        if b.expired():
            rows.append({"workers": workers, "skipped": "part budget"})
            continue
        dl = DataLoader(AugmentedCPU(cpu_images, cpu_labels, p.size), batch_size=p.batch, shuffle=True,
                        num_workers=workers, pin_memory=dev.type == "cuda", persistent_workers=True)  # fmt: skip

        def cpu_epoch(dl: DataLoader = dl) -> None:
            for x, _ in dl:
                x.to(dev, non_blocking=True).sum()

        cpu_epoch()  # warm-up: starts the workers
        secs = _common.timed(cpu_epoch, dev)
        rows.append({"workers": workers, "images_per_s": p.data_images / secs})
        b.log(f"data_path: DataLoader {workers} workers {p.data_images / secs:,.0f} images/s")
        del dl
    return {"device": str(dev), "images": p.data_images, "batch": p.batch,
            "device_loader_images_per_s": p.data_images / dev_s, "dataloader": rows,
            "device_loader_over_best_dataloader": (p.data_images / dev_s)
            / max((r["images_per_s"] for r in rows if "images_per_s" in r), default=math.nan)}  # fmt: skip


PARTS: dict[str, Callable[[Profile, Budget], dict[str, Any]]] = {
    "numerics": part_numerics,
    "precision": part_precision,
    "epoch_speed": part_epoch_speed,
    "packing": part_packing,
    "data_path": part_data_path,
}
