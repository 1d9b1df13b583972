"""Sweep overhead: N short digits trials through ``dnr-sweep run`` vs the same N runs in one process.

Goal (issues 9, 16): wall-clock ratio sweep / best sequential baseline <= 1.0 (Ray's start-up paid
back by running trials at once on all cores), or an account of where the remaining time goes.

- ``sweep``: ``dnr-sweep run CONFIG --storage TMP --name NAME --no-report --no-dashboard`` as a
  subprocess (Python start-up, ``ray.init``, N trials with 2 concurrent at 1 CPU each, per-epoch
  checkpoints, results tables; no report). CONFIG is ``search_spaces/digits_quick.yaml`` with
  ``train.epochs`` set to ``--epochs`` (milestones moved inside), ``tune.max_concurrent_trials`` to
  ``--concurrent`` and the search space replaced by a grid of N densities (irregular pruning).
- ``seq1`` / ``seqall``: the same N run configs trained one after another with ``TrainingRun`` in this
  process (data, model, epochs, final test evaluation), ``num_threads`` 1 (what one 1-CPU trial
  gets) and all cores (the whole machine to one run). The best baseline of a repetition is the
  faster of the two.
- ``ray``: a fresh Python process that imports Ray, starts a local Ray and shuts it down: the fixed
  cost every sweep pays before its first trial.
- Where the sweep's time goes, from its own files: the trials' own time (Tune's ``time_total_s``:
  epochs, checkpoints, finish step), divided by the concurrency, is the ideal parallel time; the
  rest of the wall clock is Ray's start-up, actor start-up, per-result processing, checkpoint
  copies and the results tables.

The variants are interleaved (order alternated per repetition), medians over ``--reps``; the
machine's load average is recorded (the machine may be shared).

    PYTHONPATH=. python benchmarks/bench_sweep_overhead.py [--trials 4 --epochs 6 --reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from dnr_sweep.config import RunConfig, run_config_from_flat, validate_sweep
from dnr_sweep.training.engine import TrainingRun

BASE = _common.ROOT / "search_spaces" / "digits_quick.yaml"
DENSITIES = [0.05, 0.1, 0.2, 0.5, 1.0, 0.3, 0.15, 0.02]


def sweep_yaml(trials: int, epochs: int, concurrent: int) -> dict:
    """digits_quick.yaml shortened to ``trials`` irregular runs of ``epochs`` epochs."""
    if not 1 <= trials <= len(DENSITIES):
        raise ValueError(f"--trials must be in [1, {len(DENSITIES)}], got {trials}")
    raw = yaml.safe_load(BASE.read_text())
    raw["name"] = "bench_sweep_overhead"
    train = raw["train"]
    train["epochs"] = epochs
    train["warmup_epochs"] = min(train["warmup_epochs"], max(0, epochs - 1))
    train["lr_milestones"] = sorted({max(1, epochs - 2), max(1, epochs - 1)}) if epochs > 1 else [1]
    raw["dnr"]["pruning"] = "irregular"
    raw["search"] = {"dnr.density": {"grid": DENSITIES[:trials]}}
    raw["tune"]["max_concurrent_trials"] = concurrent
    raw["tune"]["resources_per_trial"] = {"cpu": 1, "gpu": 0}
    return raw


def run_sequential(raw: dict, threads: int) -> float:
    sweep = validate_sweep(raw, "bench")
    base = sweep.base_run()
    configs: list[RunConfig] = [
        run_config_from_flat(base, {"dnr.density": d}) for d in raw["search"]["dnr.density"]["grid"]
    ]
    old = torch.get_num_threads()
    start = time.perf_counter()
    for config in configs:
        config = config.model_copy(deep=True)
        config.train.num_threads = threads
        run = TrainingRun(config)
        while not run.finished:
            run.train_epoch()
    wall = time.perf_counter() - start
    torch.set_num_threads(old)
    return wall


RAY_START = """
import json, time
t0 = time.perf_counter()
import ray
t1 = time.perf_counter()
ray.init(address="local", num_cpus={cpus}, include_dashboard=False, logging_level="WARNING")
t2 = time.perf_counter()
ray.shutdown()
print(json.dumps({{"import_s": t1 - t0, "init_s": t2 - t1, "shutdown_s": time.perf_counter() - t2}}))
"""


def ray_start(cpus: int) -> float:
    """Wall seconds of a fresh Python that imports Ray, starts a local Ray and stops it."""
    env = dict(os.environ, RAY_AIR_NEW_OUTPUT="0")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RAY_START.format(cpus=cpus)], env=env, capture_output=True,
                          text=True, cwd=_common.ROOT)  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ray start failed:\n{proc.stderr[-3000:]}")
    return wall


def trial_seconds(run_dir: Path) -> list[float]:
    """Each trial's own time (Tune's time_total_s on its last result line)."""
    totals = []
    for path in sorted(run_dir.glob("*/result.json")):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        totals.append(float(lines[-1]["time_total_s"]))
    return totals


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument(
        "--variants",
        default="sweep,seq1,seqall,ray",
        help="comma-separated subset of sweep,seq1,seqall,ray (e.g. skip seqall on an oversubscribed machine)",
    )
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - {"sweep", "seq1", "seqall", "ray"})
    if unknown or "sweep" not in chosen:
        p.error(f"--variants: {unknown or 'sweep is required'}; valid: sweep, seq1, seqall, ray")
    raw = sweep_yaml(args.trials, args.epochs, args.concurrent)
    cores = os.cpu_count() or 1
    times: dict[str, list[float]] = {"sweep": [], "seq1": [], "seqall": [], "ray": []}
    trial_total: list[float] = []  # per rep: the trials' own seconds, summed
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dnr-bench-sweep-") as tmp:
        config_path = Path(tmp) / "bench_sweep.yaml"
        config_path.write_text(yaml.safe_dump(raw, sort_keys=False))

        def sweep(rep: int) -> float:
            wall = _common.run_sweep(config_path, Path(tmp) / "runs", f"rep{rep}")
            trial_total.append(sum(trial_seconds(Path(tmp) / "runs" / f"rep{rep}")))
            return wall

        fns = {
            "sweep": sweep,
            "seq1": lambda rep: run_sequential(raw, 1),
            "seqall": lambda rep: run_sequential(raw, cores),
            "ray": lambda rep: ray_start(args.concurrent),
        }
        fns = {name: fn for name, fn in fns.items() if name in chosen}
        for rep in range(args.reps):
            order = list(fns) if rep % 2 == 0 else list(fns)[::-1]
            for name in order:
                times[name].append(fns[name](rep))
                print(f"rep {rep} {name}: {times[name][-1]:.1f} s", file=sys.stderr)
            load.append(os.getloadavg()[0])
    times = {name: values for name, values in times.items() if values}
    baselines = [times[name] for name in ("seq1", "seqall") if name in times]
    best = [min(values) for values in zip(*baselines, strict=True)] if baselines else []
    med = {k: _common.median(v) for k, v in times.items()}
    nan = float("nan")
    med.setdefault("ray", nan)
    ideal = _common.median([t / args.concurrent for t in trial_total])
    breakdown = {
        "trials_own_s_sum": _common.median(trial_total),
        "ideal_parallel_s": ideal,  # the trials' own time spread over `concurrent` workers
        "ray_start_s": med["ray"],  # python + import ray + ray.init + shutdown
        "rest_s": med["sweep"] - ideal - med["ray"],  # actor start, result processing, checkpoint copies, tables
    }
    result = {
        "benchmark": "sweep_overhead",
        "machine": {**_common.machine("cpu"), "load_avg_1min": load},
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
        "config": raw,
        "timing": "variants interleaved (order alternated per rep), medians; sweep = subprocess wall clock incl. Python and Ray start-up; shared machine",
        "median_s": {**med, "best_sequential": _common.median(best) if best else nan},
        "ratio_sweep_to_best": _common.ratio_median(times["sweep"], best) if best else nan,
        "ratio_sweep_to_seq1": _common.ratio_median(times["sweep"], times["seq1"]) if "seq1" in times else nan,
        "ratio_sweep_to_seqall": _common.ratio_median(times["sweep"], times["seqall"]) if "seqall" in times else nan,
        "breakdown_s": breakdown,
        "goal": "ratio_sweep_to_best <= 1.0",
        "times_s": times,
    }
    summary = (
        f"{args.trials} digits smallcnn trials x {args.epochs} epochs, {args.concurrent} concurrent, {args.reps} interleaved reps, "
        f"load avg {min(load):.1f}-{max(load):.1f}: dnr-sweep run {med['sweep']:.1f} s vs sequential TrainingRun 1 thr "
        f"{med.get('seq1', nan):.1f} s / {cores} thr {med.get('seqall', nan):.1f} s; ratio sweep/best sequential "
        f"{result['ratio_sweep_to_best']:.2f} "
        f"(sweep/seq1 {result['ratio_sweep_to_seq1']:.2f}, sweep/seq{cores} {result['ratio_sweep_to_seqall']:.2f}; goal <= 1.0); "
        f"sweep time: trials' own {breakdown['trials_own_s_sum']:.1f} s / {args.concurrent} = {ideal:.1f} s, Ray start "
        f"{med['ray']:.1f} s, rest {breakdown['rest_s']:.1f} s (actor start, per-result processing, checkpoint copies, tables)"
    )
    _common.report("bench_sweep_overhead", result, summary, write=not args.no_write)
    return result


if __name__ == "__main__":
    main()
