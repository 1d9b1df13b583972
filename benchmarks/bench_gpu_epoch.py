"""GPU epoch: one DNR PGD-7 hybrid epoch of CIFAR-10 shapes, against the device's physical limit.

Goal (issue 9): within 5x of the limit (H100 bf16: ResNet-18 ~1.12 s, VGG16 ~0.63 s per 50,000
images). For each architecture and each of fp32 / tf32 / bf16 autocast x channels_last off / on,
the real engine loop (``TrainingRun._train_one_epoch``: PGD-7 with random start, clean + adversarial
loss, dynamic L2, ``Masking.step``) runs over ``--images`` synthetic uint8 images held on the
device by :class:`dnr_sweep.data.device_loader.DeviceLoader` (random crop + flip on the device), batch 128,
after a warm-up of ``--warmup-steps`` steps (cuDNN autotuning).

Physical limit: ``20 forward-equivalents per image x 2 x MACs(model, 32x32) x images / peak``:
PGD-7 is 7 forwards + 7 input-gradient backwards (~14), the clean and the adversarial pass each a
forward and a full backward (~6). ``--peak-tflops`` defaults to the H100 SXM dense bf16 figure
(989); fp32/tf32 rows are compared against the same peak (pass the card's own figure if needed).

Without CUDA this prints a JSON object with ``"skipped": true`` and exits, unless ``--allow-cpu``
(tiny sizes, fp32 only; used by a test so the script cannot rot).

    PYTHONPATH=. python benchmarks/bench_gpu_epoch.py [--archs resnet18 vgg16 --images 50000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import torch  # noqa: E402
from bench_rewiring import macs  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from dnr_sweep.config import RunConfig
from dnr_sweep.data.device_loader import DeviceLoader
from dnr_sweep.data.loaders import DataSplits
from dnr_sweep.models.architectures import get_model
from dnr_sweep.training.engine import TrainingRun

FORWARD_EQUIVALENTS = 20  # PGD-7: 7 x (fwd + input-grad bwd) ~ 14; clean + adv: 2 x (fwd + full bwd) ~ 6
EPOCH_IMAGES = 50_000


def set_precision(mode: str) -> None:
    """fp32 and bf16 with TF32 off; tf32 with TF32 matmuls and convolutions on."""
    tf32 = mode == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def epoch_time(arch: str, precision: str, channels_last: bool, args: argparse.Namespace, device: torch.device) -> float:
    set_precision(precision)
    size = args.size
    small = torch.rand(8, 3, size, size)
    labels = torch.zeros(8, dtype=torch.long)
    splits = DataSplits(
        train=TensorDataset(small, labels), val=TensorDataset(small, labels), test=TensorDataset(small, labels),
        num_classes=10, in_channels=3, image_size=size, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26),
    )  # fmt: skip
    config = RunConfig.model_validate({
        "data": {"dataset": "synthetic", "val_size": 8},
        "model": {"arch": arch, "width": args.width},
        "train": {"epochs": 10, "batch_size": args.batch, "warmup_epochs": 0, "device": device.type,
                  "precision": "bf16" if precision == "bf16" else "fp32", "channels_last": channels_last,
                  "num_threads": args.threads if device.type == "cpu" else None},
        "dnr": {"pruning": "irregular", "density": 0.05, "beta": 0.5, "rho": 1e-4},
        "attack": {"train": {"kind": "pgd", "eps": 8 / 255, "alpha": 0.01, "steps": args.steps, "random_start": True}},
    })  # fmt: skip
    run = TrainingRun(config, data=splits, device=device)
    if args.compile:
        run.model = torch.compile(run.model)
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, size, size), dtype=torch.uint8, device=device, generator=gen)
    targets = torch.randint(0, 10, (args.images,), device=device, generator=gen)
    loader = DeviceLoader(
        images, targets, batch_size=args.batch, augment=True, generator=gen, pad=min(4, size // 2 - 1)
    )
    warm = DeviceLoader(images[: args.batch * args.warmup_steps], targets[: args.batch * args.warmup_steps],
                        batch_size=args.batch, augment=True, generator=gen, pad=min(4, size // 2 - 1))  # fmt: skip
    run.train_loader = warm
    if args.warmup_steps > 0:
        run._train_one_epoch(None)
    run.train_loader = loader
    return _common.timed(lambda: run._train_one_epoch(None), device)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["resnet18", "vgg16"])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--images", type=int, default=EPOCH_IMAGES, help="images in the timed epoch")
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=7, help="PGD steps")
    p.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "bf16"], choices=["fp32", "tf32", "bf16"])
    p.add_argument("--channels-last", nargs="+", default=["off", "on"], choices=["off", "on"])
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="device peak (H100 SXM dense bf16: 989)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default="cuda")
    p.add_argument("--allow-cpu", action="store_true", help="run on CPU (tiny sizes; fp32 only) when no GPU")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (with --allow-cpu)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        if not args.allow_cpu:
            message = (
                "bench_gpu_epoch: skipped, no CUDA device is visible (pass --allow-cpu with tiny sizes to smoke-test)"
            )
            print(message, file=sys.stderr)
            result = {"benchmark": "gpu_epoch", "skipped": True, "reason": message}
            _common.report("bench_gpu_epoch", result, "", write=False)
            return result
        device = torch.device("cpu")
    precisions = args.precisions
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        precisions = [q for q in precisions if q == "fp32"] or ["fp32"]  # tf32 and bf16 autocast are CUDA paths
    else:
        torch.backends.cudnn.benchmark = True

    rows = []
    for arch in args.archs:
        mac = macs(get_model(arch, num_classes=10, width=args.width), size=args.size)
        limit_50k = FORWARD_EQUIVALENTS * 2 * mac * EPOCH_IMAGES / (args.peak_tflops * 1e12)
        for precision in precisions:
            for cl in args.channels_last:
                seconds = epoch_time(arch, precision, cl == "on", args, device)
                per_50k = seconds * EPOCH_IMAGES / args.images
                rows.append({
                    "arch": arch, "width": args.width, "precision": precision, "channels_last": cl == "on",
                    "images": args.images, "epoch_s": seconds, "epoch_s_per_50k": per_50k,
                    "limit_s_per_50k": limit_50k, "ratio_to_limit": per_50k / limit_50k,
                })  # fmt: skip
                print(
                    f"{arch} {precision} channels_last={cl}: {seconds:.2f} s ({per_50k / limit_50k:.1f}x limit)",
                    file=sys.stderr,
                )
    set_precision("fp32")
    result = {
        "benchmark": "gpu_epoch",
        "skipped": False,
        "machine": _common.machine(device),
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
        "limit": {
            "formula": "20 forward-equivalents x 2 x MACs per image x 50,000 / peak",
            "peak_tflops": args.peak_tflops,
            "forward_equivalents": FORWARD_EQUIVALENTS,
        },
        "timing": "one timed epoch per row after a warm-up; device synchronised around it",
        "results": rows,
        "best": min(rows, key=lambda r: r["ratio_to_limit"]),
        "goal": "ratio_to_limit <= 5",
    }
    summary = (
        f"{args.images} images, w{args.width}, batch {args.batch}, PGD-{args.steps}, peak {args.peak_tflops:g} TFLOPS: "
        + "; ".join(
            f"{r['arch']} {r['precision']}{' CL' if r['channels_last'] else ''} {r['epoch_s_per_50k']:.2f} s/50k ({r['ratio_to_limit']:.1f}x)"
            for r in rows
        )
    )
    _common.report("bench_gpu_epoch", result, summary, write=not args.no_write)
    return result


if __name__ == "__main__":
    main()
