"""The GPU check (issue 24): every figure of dnr-sweep's GPU path in one command, within 8 minutes on one H200.

    bash benchmarks/gpu_check.sh OUTDIR            # on a lent GPU (installs the carried wheels it lacks)
    bash benchmarks/gpu_check.sh OUTDIR --smoke    # every part on CPU, tiny shapes, under a minute (CI)

Five parts, in this order, each with its own time budget (``gpu_check_parts.Profile.budgets``):
numerics (CUDA fp32 vs CPU: DNR steps, rewiring, FGSM/PGD, torchattacks), precision (bf16 vs
fp32 accuracy gap, which decides per-epoch evaluation precision), epoch speed (engine vs an
independent plain PGD-7 loop vs the FLOP-count limit, over bf16/tf32, channels_last,
torch.compile, cudnn.benchmark), packing (1/2/4/8 trial processes on one device, peak memory per
trial) and data path (DeviceLoader vs DataLoader with workers). After every part OUTDIR's
``gpu_check.json`` and ``gpu_check.md`` are rewritten (atomically), so a later failure or a killed
run keeps what finished; progress lines with timestamps go to stderr and ``gpu_check.log``. At the
end the check prints the recommendations it computes from its own figures (CUDA default setting,
per-epoch eval precision, ``resources_per_trial``); it changes no shipped value itself.

Smoke figures are CPU figures of tiny models: they show that the check runs, never what a GPU does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (puts the repository root on sys.path)
import gpu_check_parts as parts  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from dnr_sweep.foundation.files import atomic_write  # noqa: E402

JSON_NAME, MD_NAME, LOG_NAME = "gpu_check.json", "gpu_check.md", "gpu_check.log"
TOTAL_BUDGET_S = 480
SCHEMA = 1
#: the shipped configs whose resources_per_trial the packing figures speak to
SHIPPED = ("cifar10_resnet18_search.yaml", "cifar100_resnet18.yaml", "cifar10_vgg16.yaml", "tinyimagenet_vgg16.yaml")


class UsageError(Exception):
    """A wrong OUTDIR or flag: one message, exit 2."""


class Recorder:
    """Runs the parts, logs progress with timestamps, and rewrites the JSON and Markdown after each."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.data: dict[str, Any] = {"schema": SCHEMA, "meta": meta, "parts": {}, "recommendations": {}}

    def log(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.t0:6.1f} s {dt.datetime.now().strftime('%H:%M:%S')}] {message}"
        print(line, file=sys.stderr, flush=True)
        with (self.out / LOG_NAME).open("a") as f:
            f.write(line + "\n")

    def run(self, name: str, profile: parts.Profile, later: list[str]) -> None:
        # the part's own budget, cut where the whole run would otherwise pass TOTAL_BUDGET_S
        # (never below a quarter of it: a part that cannot start properly reports that instead)
        own = profile.budgets[name]
        left = TOTAL_BUDGET_S - (time.perf_counter() - self.t0) - sum(profile.budgets[n] for n in later)
        budget = parts.Budget(max(0.25 * own, min(own, left)), self.log)
        self.log(f"{name}: start (budget {budget.seconds:g} s)")
        entry: dict[str, Any] = {"budget_s": budget.seconds}
        try:
            entry["figures"] = parts.PARTS[name](profile, budget)
            entry["status"] = "ok"
        except Exception as exc:  # recorded; the later parts still run
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()[-4000:]
            self.log(f"{name}: FAILED {entry['error']}")
        entry["elapsed_s"] = budget.elapsed()
        entry["over_budget"] = budget.elapsed() > budget.seconds
        self.data["parts"][name] = entry
        self.log(f"{name}: {entry['status']} in {entry['elapsed_s']:.1f} s")
        self.write()

    def write(self) -> None:
        self.data["meta"]["elapsed_s"] = time.perf_counter() - self.t0
        self.data["recommendations"] = recommend(self.data)
        text = json.dumps(_finite(self.data), indent=1) + "\n"
        atomic_write(self.out / JSON_NAME, lambda tmp: tmp.write_text(text))
        md = summary(self.data)
        atomic_write(self.out / MD_NAME, lambda tmp: tmp.write_text(md))


def _finite(value: Any) -> Any:
    """NaN and infinities as null (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ----------------------------------------------------------------------------------- meta, checks


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_common.ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def meta(profile: parts.Profile) -> dict[str, Any]:
    dev = torch.device(profile.device)
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "smoke": profile.name == "smoke",
        "profile": profile.name,
        "device": str(dev),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "host_cpu": _common.cpu_model(),
        "cores": os.cpu_count(),
        "git_commit": _git_commit(),
        "carried_wheels": os.environ.get("DNR_GPU_WHEELS", "").split() or [],
        "total_budget_s": TOTAL_BUDGET_S,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info.update({"gpu": props.name, "gpu_memory_bytes": props.total_memory,
                     "compute_capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count})  # fmt: skip
    return info


def prepare_out(path: Path) -> Path:
    """OUTDIR must be new or an empty folder: nothing already there is ever overwritten."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"OUTDIR {path} is a file; name a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"OUTDIR {path} is not empty; name a new or empty folder (nothing there is overwritten)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create OUTDIR {path}: {exc.strerror}; name a writable folder") from None
    return path


# -------------------------------------------------------------------------------- recommendations


def _shipped_resources() -> dict[str, Any]:
    found = {}
    for name in SHIPPED:
        path = _common.ROOT / "search_spaces" / name
        try:
            found[name] = yaml.safe_load(path.read_text()).get("tune", {}).get("resources_per_trial")
        except (OSError, yaml.YAMLError, AttributeError):
            found[name] = None
    return found


def _figures(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    entry = data["parts"].get(name)
    return entry["figures"] if entry and entry.get("status") == "ok" else None


def recommend(data: dict[str, Any]) -> dict[str, Any]:
    """What the figures of this run say; computed, never applied (a person changes the shipped values)."""
    rec: dict[str, Any] = {"applies": "decisions for CUDA; only meaningful from a full run on the GPU"}
    if data["meta"].get("smoke"):
        rec["applies"] = "SMOKE run on CPU: these show the computation works, they decide nothing"
    prec = _figures(data, "precision")
    if prec:
        rec["per_epoch_eval_precision"] = {"choice": prec["per_epoch_eval_precision"], "worst_gap_pp": prec["worst_gap_pp"],
                                           "bf16_speedup": prec["bf16_speedup"], "rule": prec["rule"]}  # fmt: skip
    speed = _figures(data, "epoch_speed")
    if speed:
        good = [r for r in speed["rows"] if r.get("correct") and "epoch_s" in r]
        by_label: dict[str, dict[str, float]] = {}
        for r in good:
            by_label.setdefault(r["label"], {})[r["arch"]] = r["epoch_s_per_50k"]
        archs = {r["arch"] for r in good}
        complete = {k: v for k, v in by_label.items() if set(v) == archs}  # measured (and correct) for every arch
        if complete:
            fastest = {a: min(r["epoch_s_per_50k"] for r in good if r["arch"] == a) for a in archs}
            label = min(complete, key=lambda k: sum(v / fastest[a] for a, v in complete[k].items()))
            row = next(r for r in good if r["label"] == label)
            rec["cuda_default_setting"] = {
                "choice": row["setting"], "label": label,
                "epoch_s_per_50k": complete[label],
                "ratio_to_limit": {r["arch"]: r["ratio_to_limit"] for r in good if r["label"] == label},
                "engine_over_plain": {r["arch"]: r.get("engine_over_plain") for r in good if r["label"] == label},
                "current_default": "bf16 autocast, channels_last, no compile, cuDNN TF32 on (torch default), "
                                   "cudnn.benchmark off",
                "rule": "the correct setting with the lowest epoch time summed over archs (each relative to its fastest)",
            }  # fmt: skip
    pack = _figures(data, "packing")
    if pack:
        rec["resources_per_trial"] = _recommend_packing(pack)
        rec["resources_per_trial"]["shipped"] = _shipped_resources()
    return rec


def _recommend_packing(pack: dict[str, Any]) -> dict[str, Any]:
    total = pack.get("device_memory_bytes")
    out: dict[str, Any] = {"rule": f"the largest k whose aggregate throughput is >= {parts.PACKING_MIN_GAIN}x the next "
                                   "smaller k's and whose k x (peak reserved + 1 GiB context) fits in 90% of the card"}  # fmt: skip
    cores = os.cpu_count() or 1
    best_cifar_k: dict[str, int] = {}
    for ph in pack["phases"]:
        key = f"{ph['arch']}_{ph['size']}px"
        per = (ph.get("peak_reserved_bytes_per_trial") or 0) + parts.CONTEXT_BYTES
        fits = int(0.9 * total // per) if total else None
        group = sorted((q for q in pack["phases"] if (q["arch"], q["size"]) == (ph["arch"], ph["size"])),
                       key=lambda q: q["per_gpu"])  # fmt: skip
        if ph is not group[0]:
            continue
        if ph["throughput_measured"]:
            k, prev = 1, group[0]
            for q in group[1:]:
                if q["images_per_s"] >= parts.PACKING_MIN_GAIN * prev["images_per_s"] and (
                    fits is None or q["per_gpu"] <= fits
                ):
                    k, prev = q["per_gpu"], q
                else:
                    break
            best_cifar_k[ph["arch"]] = k
            basis = "measured throughput"
        else:
            k = min(best_cifar_k.get(ph["arch"], 1), fits) if fits else best_cifar_k.get(ph["arch"], 1)
            basis = f"memory only; throughput from {ph['arch']} at 32px"
        out[key] = {"per_gpu": k, "resources_per_trial": {"cpu": max(1, cores // k), "gpu": round(1 / k, 4)},
                    "fits_by_memory": fits, "basis": basis}  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------- summary


def _f(value: Any, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float | int):
        return format(value, fmt)
    return str(value)


def summary(data: dict[str, Any]) -> str:
    m = data["meta"]
    lines = ["# dnr-sweep GPU check", ""]
    if m.get("smoke"):
        lines += ["**SMOKE RUN ON CPU, tiny shapes. These are not GPU figures; they show the check runs.**", ""]
    lines += [
        f"- date: {m['date']}; device: {m.get('gpu', m['device'])}"
        + (f" ({m['gpu_memory_bytes'] / 2**30:.1f} GiB, sm {m['compute_capability']})" if "gpu" in m else ""),
        f"- torch {m['torch']}, torchvision {m.get('torchvision')}, CUDA {m['cuda']}, cuDNN {m['cudnn']}, "
        f"Python {m['python']}; {m['cores']} cores ({m['host_cpu']}); commit {m.get('git_commit')}",
        f"- carried wheels: {', '.join(m['carried_wheels']) or 'none'}; total {m.get('elapsed_s', 0):.0f} s "
        f"(budget {TOTAL_BUDGET_S} s)",
        "",
        "| part | status | seconds | budget |",
        "|---|---|---|---|",
    ]
    for name, entry in data["parts"].items():
        status = entry["status"] + (" (over budget)" if entry.get("over_budget") else "")
        lines.append(f"| {name} | {status} | {entry['elapsed_s']:.1f} | {entry['budget_s']:g} |")
    for name, entry in data["parts"].items():
        lines += ["", f"## {name}", ""]
        if entry["status"] != "ok":
            lines += [f"FAILED: `{entry['error']}` (traceback in {JSON_NAME})"]
            continue
        lines += _SECTIONS[name](entry["figures"])
    lines += ["", "## Recommendations (computed from the figures above; nothing is changed by the check)", "",
              "```", yaml.safe_dump(_finite(data["recommendations"]), sort_keys=False).rstrip(), "```", ""]  # fmt: skip
    return "\n".join(lines)


def _md_numerics(f: dict[str, Any]) -> list[str]:
    rows = ["| figure | device | reference (CPU, same run) | tolerance / goal | ok |", "|---|---|---|---|---|",
            f"| max weight rel. L2 error after {f['steps']} DNR steps | {_f(f['weights_rel_err_max'])} "
            f"({f['weights_rel_err_worst_tensor']}) | 0 | <= {f['weights_tolerance']:g} | {_f(f['weights_ok'])} |",
            f"| mask mismatches, rewiring from the same state | {f['rewiring_same_state_mask_mismatches']} "
            f"of {f['mask_entries']} | 0 | 0 | {_f(f['masks_ok'])} |",
            f"| mask mismatches, rewiring after the steps | {f['rewiring_after_steps_mask_mismatches']} | 0 | "
            "reported | - |"]  # fmt: skip
    for name in ("fgsm", "pgd7"):
        a = f["attacks"][name]
        rows.append(f"| {name}: accuracy % / pixels differing | {_f(a['acc_device'])} / {_f(a['fraction_differing'])} | "
                    f"{_f(a['acc_cpu_reference'])} / 0 | 1 image / <= {parts.ADV_PIXEL_FRACTION_TOL:g} | {_f(a['ok'])} |")  # fmt: skip
        if "torchattacks_on_device" in a:
            t = a["torchattacks_on_device"]
            rows.append(f"| {name} vs torchattacks on the device: pixels differing | {_f(t['fraction_differing'])} | "
                        f"0 | <= 0.001 | {_f(t['ok'])} |")  # fmt: skip
    rows += ["", f"Setting: {f['setting']}; torchattacks: {f['attacks']['torchattacks'] or 'not carried'}."]
    return rows


def _md_precision(f: dict[str, Any]) -> list[str]:
    rows = [
        "| accuracy % | bf16 autocast | fp32 (reference) | gap (pp) | images disagreeing |",
        "|---|---|---|---|---|",
    ]
    for kind, a in f["accuracy"].items():
        rows.append(f"| {kind} | {_f(a['bf16'], '.2f')} | {_f(a['fp32_reference'], '.2f')} | {_f(a['gap_pp'], '+.2f')} | "
                    f"{a['images_disagreeing']} |")  # fmt: skip
    rows += ["", f"{f['images']} images; {f['model']}. Eval time bf16 {_f(f['eval_seconds']['bf16'])} s vs fp32 "
             f"{_f(f['eval_seconds']['fp32_reference'])} s ({_f(f['bf16_speedup'])}x). Decision: per-epoch evaluation "
             f"in **{f['per_epoch_eval_precision']}** ({f['rule']})."]  # fmt: skip
    return rows


def _md_epoch(f: dict[str, Any]) -> list[str]:
    rows = [f"Matmul bf16 measured: {_f(f['measured_matmul_tflops'], '.0f')} TFLOP/s; limit at {parts.PEAK_TFLOPS:g}.",
            "", "| arch | setting | engine s/50k | plain loop s/50k (same run) | engine/plain (goal <= 1.05) | "
            "limit s/50k | /limit (goal <= 3) | correct (logit err) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in f["rows"]:
        rows.append(f"| {r['arch']} | {r['label']} | {_f(r.get('epoch_s_per_50k'))} | {_f(r.get('plain_epoch_s_per_50k'))} "
                    f"| {_f(r.get('engine_over_plain'))} | {_f(r.get('limit_s_per_50k'))} | {_f(r.get('ratio_to_limit'))} "
                    f"| {_f(r['correct'])} ({_f(r.get('logits_rel_err_vs_fp32'))}) |")  # fmt: skip
    for arch, lim in f["limits"].items():
        rows.append(
            f"\n{arch}: {lim['flops_per_image'] / 1e9:.2f} GFLOP per image per PGD-7 training step (flop_counter)."
        )
    if f["skipped"]:
        rows += ["", "Skipped: " + "; ".join(f["skipped"])]
    return rows


def _md_packing(f: dict[str, Any]) -> list[str]:
    rows = ["| arch | image | trials on one device | trial-epochs/hour | vs 1 trial | peak allocated GiB/trial | "
            "peak reserved GiB/trial | host RSS GiB/trial |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    g = 2**30
    for p in f["phases"]:
        rows.append(f"| {p['arch']} | {p['size']}px/{p['classes']} cl. | {p['per_gpu']} | {_f(p['trial_epochs_per_hour'])} | "
                    f"{_f(p['throughput_vs_1'])} | {_f((p['peak_allocated_bytes_per_trial'] or math.nan) / g)} | "
                    f"{_f((p['peak_reserved_bytes_per_trial'] or math.nan) / g)} | {_f(p['peak_rss_bytes_per_trial'] / g)} |")  # fmt: skip
    if f["skipped"]:
        rows += ["", "Skipped: " + "; ".join(f["skipped"])]
    return rows


def _md_data(f: dict[str, Any]) -> list[str]:
    rows = ["| loader | images/s |", "|---|---|", f"| DeviceLoader | {_f(f['device_loader_images_per_s'], ',.0f')} |"]
    for r in f["dataloader"]:
        rows.append(f"| DataLoader, {r['workers']} workers (reference) | {_f(r.get('images_per_s'), ',.0f')} |")
    rows += [
        "",
        f"DeviceLoader / best DataLoader: {_f(f['device_loader_over_best_dataloader'])}x ({f['images']} images).",
    ]
    return rows


_SECTIONS = {"numerics": _md_numerics, "precision": _md_precision, "epoch_speed": _md_epoch,
             "packing": _md_packing, "data_path": _md_data}  # fmt: skip


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path, help="new or empty folder for gpu_check.json, gpu_check.md, gpu_check.log")
    ap.add_argument("--smoke", action="store_true", help="every part on CPU with tiny shapes (CI; not GPU figures)")
    ap.add_argument("--parts", nargs="+", choices=list(parts.PARTS), default=list(parts.PARTS), help="a subset")
    args = ap.parse_args(argv)
    try:
        if not args.smoke and not torch.cuda.is_available():
            raise UsageError(
                "no CUDA device is visible; run this on the GPU machine, or pass --smoke for the CPU check"
            )
        out = prepare_out(args.outdir)
    except UsageError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    profile = parts.SMOKE if args.smoke else parts.FULL
    if args.smoke:
        torch.set_num_threads(1)
    rec = Recorder(out, meta(profile))
    rec.log(f"gpu_check {profile.name} on {rec.data['meta'].get('gpu', profile.device)}, torch {torch.__version__}")
    rec.write()
    for i, name in enumerate(args.parts):
        rec.run(name, profile, later=args.parts[i + 1 :])
    rec.log(f"done in {time.perf_counter() - rec.t0:.0f} s; {out / MD_NAME}")
    print(yaml.safe_dump(_finite(rec.data["recommendations"]), sort_keys=False))
    return 0 if all(e["status"] == "ok" for e in rec.data["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
