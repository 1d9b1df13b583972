"""Shared bits of the benchmarks: the machine description, timing, and the RESULTS.md line.

Every benchmark prints one JSON object on stdout and appends one dated line to RESULTS.md (never
rewriting earlier lines, which other benchmarks and machines add to).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Platform, CPU model, core count, torch version and the device the figures were taken on."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds for one call of ``fn`` (the device synchronised before and after)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(
    fns: dict[str, Callable[[], Any]], reps: int, device: torch.device, warmup: int = 2
) -> dict[str, list[float]]:
    """Time every function ``reps`` times, alternating A, B, A, B ... (order flipped every rep).

    Interleaving spreads the noise of a shared machine (other processes on the same cores) evenly
    over the variants, so the median of the per-rep ratios is a fair comparison.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(fns[name], device))
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def ratio_median(num: list[float], den: list[float]) -> float:
    """Median of the per-repetition ratios (pairs taken in the same rep)."""
    return float(statistics.median(a / b for a, b in zip(num, den, strict=True)))


def report(name: str, result: dict[str, Any], summary: str, *, write: bool = True) -> None:
    """Print ``result`` as one JSON object and append a dated line to RESULTS.md."""
    print(json.dumps(result, sort_keys=False))
    if not write:
        return
    m = result.get("machine", {})
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    where = f"{m.get('platform', '?')}, {m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}, {m.get('device', '?')}"
    if "gpu" in m:
        where += f" ({m['gpu']})"
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nOne line per benchmark run, newest last (appended by `benchmarks/bench_*.py`).\n\n"
        )
    with RESULTS.open("a") as f:
        f.write(f"- {when} `{name}` [{where}]: {summary}\n")


def run_sweep(config_path: Path, storage: Path, name: str) -> float:
    """Wall-clock seconds of `dnr-sweep run CONFIG` in a subprocess (Python and Ray start-up included)."""
    env = dict(os.environ, RAY_AIR_NEW_OUTPUT="0", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "dnr_sweep.cli", "run", str(config_path), "--storage", str(storage),
           "--name", name, "--no-report", "--no-dashboard"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"dnr-sweep run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall
