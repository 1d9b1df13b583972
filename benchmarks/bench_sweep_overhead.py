"""Sweep overhead: N short digits trials through ``dnr-sweep run`` vs the same N runs in one process.

Goal (issue 9): wall-clock ratio sweep / sequential <= 1.0 (Ray's start-up paid back by running two
trials at once on two cores).

- ``sweep``: ``dnr-sweep run CONFIG --storage TMP --name NAME --no-report --no-dashboard`` as a
  subprocess (Python start-up, ``ray.init``, N trials with 2 concurrent at 1 CPU each, per-epoch
  checkpoints, results tables; no report). CONFIG is ``search_spaces/digits_quick.yaml`` with
  ``train.epochs`` set to ``--epochs`` (milestones moved inside), ``tune.max_concurrent_trials`` to
  ``--concurrent`` and the search space replaced by a grid of N densities (irregular pruning).
- ``seq1`` / ``seq2``: the same N run configs trained one after another with ``DNRRun`` in this
  process (data, model, epochs, final test evaluation), ``num_threads`` 1 (what one 1-CPU trial
  gets) and 2 (the whole machine to one run).

The variants are interleaved (order alternated per repetition), medians over ``--reps``.

    PYTHONPATH=. python benchmarks/bench_sweep_overhead.py [--trials 4 --epochs 6 --reps 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from dnr_sweep.config import RunConfig, run_config_from_flat, validate_sweep  # noqa: E402
from dnr_sweep.engine import DNRRun  # noqa: E402

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
    configs: list[RunConfig] = [run_config_from_flat(base, {"dnr.density": d}) for d in raw["search"]["dnr.density"]["grid"]]
    old = torch.get_num_threads()
    start = time.perf_counter()
    for config in configs:
        config = config.model_copy(deep=True)
        config.train.num_threads = threads
        run = DNRRun(config)
        while not run.finished:
            run.train_epoch()
    wall = time.perf_counter() - start
    torch.set_num_threads(old)
    return wall


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    raw = sweep_yaml(args.trials, args.epochs, args.concurrent)
    times: dict[str, list[float]] = {"sweep": [], "seq1": [], "seq2": []}
    with tempfile.TemporaryDirectory(prefix="dnr-bench-sweep-") as tmp:
        config_path = Path(tmp) / "bench_sweep.yaml"
        config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        fns = {
            "sweep": lambda rep: _common.run_sweep(config_path, Path(tmp) / "runs", f"rep{rep}"),
            "seq1": lambda rep: run_sequential(raw, 1),
            "seq2": lambda rep: run_sequential(raw, 2),
        }
        for rep in range(args.reps):
            order = list(fns) if rep % 2 == 0 else list(fns)[::-1]
            for name in order:
                times[name].append(fns[name](rep))
                print(f"rep {rep} {name}: {times[name][-1]:.1f} s", file=sys.stderr)
    med = {k: _common.median(v) for k, v in times.items()}
    result = {
        "benchmark": "sweep_overhead",
        "machine": _common.machine("cpu"),
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
        "config": raw,
        "timing": "variants interleaved (order alternated per rep), medians; sweep = subprocess wall clock incl. Python and Ray start-up; shared machine",
        "median_s": med,
        "ratio_sweep_to_seq1": _common.ratio_median(times["sweep"], times["seq1"]),
        "ratio_sweep_to_seq2": _common.ratio_median(times["sweep"], times["seq2"]),
        "goal": "ratio_sweep_to_seq1 <= 1.0",
        "times_s": times,
    }
    summary = (
        f"{args.trials} digits smallcnn trials x {args.epochs} epochs, {args.concurrent} concurrent, {args.reps} interleaved reps: "
        f"dnr-sweep run {med['sweep']:.1f} s vs sequential DNRRun 1 thr {med['seq1']:.1f} s / 2 thr {med['seq2']:.1f} s; "
        f"ratio sweep/seq1 {result['ratio_sweep_to_seq1']:.2f}, sweep/seq2 {result['ratio_sweep_to_seq2']:.2f} (goal <= 1.0)"
    )
    _common.report("bench_sweep_overhead", result, summary, write=not args.no_write)
    return result


if __name__ == "__main__":
    main()
