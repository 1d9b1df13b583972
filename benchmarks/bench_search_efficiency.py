"""How much Pareto front each search finds per trial-epoch (digits, CPU, the real sweep service).

    python benchmarks/bench_search_efficiency.py                     # RESULTS.md's methods, seeds 0 1 2
    python benchmarks/bench_search_efficiency.py --methods grid tpe --seeds 0
    python benchmarks/bench_search_efficiency.py --analyse-only      # summarise the runs in --storage

One search space for every method: target density {0.05, 0.1, 0.2}, pruning {irregular, channel},
beta in [0.2, 1], rho log-uniform in [1e-6, 1e-2], pruning rate in [0.1, 0.9]. The methods:

- ``grid``: the paper's way, a grid over the same space: 3 densities x 2 pruning types x the paper's
  defaults plus one neighbour each (beta {0.5, 0.3}, rho {1e-4, 1e-3}, pruning rate {0.5, 0.3}):
  48 trials of E epochs. Its trial-epochs (48 E) are every other method's budget.
- ``random``, ``tpe``, ``nsga2``: Optuna's random, (multi-objective) TPE and NSGA-II samplers on the
  validation objectives ``val_pgd_acc`` (max) and ``compression`` (max), 48 trials each.
- ``nsga2_asha``, ``tpe_asha``: the sampler with ASHA on ``val_pgd_acc`` (grace 2 epochs, reduction
  factor 3) with rungs per (density, pruning) group (``tune.scheduler.asha.group_by``): a sparser
  model is less accurate by design, so a shared rung would stop the high-compression trials first.
  More trials than the budget are queued and the run is cut at the budget (below).
- ``tpe_warm``, ``tpe_warm_asha``: TPE (with ASHA) that first runs the paper's defaults of every cell
  (``tune.points_to_evaluate``), as the shipped ``digits_search.yaml`` does.

Every method runs through ``dnr_sweep.cli.main(["run", ...])`` (Ray Tune + Optuna + ASHA, two
concurrent 1-CPU trials), searcher seeds 0, 1, 2 (the grid has none: one run). Training seed 0 for
every trial, so methods differ by what they try, not by training noise. Runs already in --storage
are not run again. The default set (16 runs) took about 1.5 hours on 2 shared CPU cores, 3-13
minutes a run.

Measured, per run: trials in the order the searcher proposed them (Tune's trial folder counter),
each costing the epochs it ran (a trial ASHA stopped after k epochs cost k). After each trial, the hypervolume
(reports/hypervolume.py, exact) of the validation figures of the trials that ran every epoch, over
``val_pgd_acc`` (%) and ``compression`` (x), reference point (0 %, 1x). A run is cut at the budget
(trials whose cumulative cost exceeds it are ignored). Its final front (validation) is then looked at
on the test split: the test hypervolume of the same trials (``pgd_acc``, ``compression``), and the
test PGD/clean accuracy of the one configuration chosen per (density, pruning) cell on validation
(reports/cell_choice.py: best ``val_pgd_acc``).

Goal (issue #19): the default search reaches the grid's final validation hypervolume with <= 1/3 of
the grid's trial-epochs, and its front holds up on test. Appends one dated line to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, report  # noqa: E402

from dnr_sweep.foundation import run_contract as rc

EPOCHS = 6
GRID_TRIALS = 48
BUDGET = GRID_TRIALS * EPOCHS  # trial-epochs every method may spend
OBJECTIVES = {"val_pgd_acc": "max", "compression": "max"}
TEST_OBJECTIVES = {"pgd_acc": "max", "compression": "max"}
REFERENCE = {"val_pgd_acc": 0.0, "pgd_acc": 0.0, "compression": 1.0}  # 0 % accuracy, 1x (dense)
FRACTIONS = (1 / 6, 1 / 3, 1 / 2, 2 / 3, 1.0)  # of the budget, where the curves are summarised
#: searched methods: Optuna sampler, ASHA (grouped by cell) or not, paper defaults run first or not
SEARCHERS: dict[str, tuple[str, bool, bool]] = {
    "random": ("random", False, False),
    "tpe": ("tpe", False, False),
    "nsga2": ("nsga2", False, False),
    "nsga2_asha": ("nsga2", True, False),
    "tpe_asha": ("tpe", True, False),
    "tpe_warm": ("tpe", False, True),
    "tpe_warm_asha": ("tpe", True, True),
}
METHODS = ("grid", *SEARCHERS)
SEEDED = set(SEARCHERS)
#: what RESULTS.md reports (tpe_asha, tpe_warm_asha can be run on request)
DEFAULT_METHODS = ("grid", "random", "tpe", "nsga2", "nsga2_asha", "tpe_warm")

#: one DNR run: digits, smallcnn at half width, E epochs (1 clean warm-up), eps-0.1 PGD-7 hybrid loss
BASE: dict[str, Any] = {
    "name": "search_bench",
    "data": {"dataset": "digits", "val_size": 180},
    "model": {"arch": "smallcnn", "width": 0.5},
    "train": {"epochs": EPOCHS, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4,
              "lr_milestones": [4], "lr_gamma": 0.2, "warmup_epochs": 1, "select_on": "val",
              "eval_every": EPOCHS, "device": "cpu", "num_threads": 1, "seed": 0},
    "dnr": {"pruning": "irregular", "density": 0.1, "beta": 0.5, "rho": 1.0e-4, "prune_rate": 0.5},
    "attack": {"train": {"kind": "pgd", "eps": 0.1, "alpha": 0.025, "steps": 7, "random_start": True},
               "eval": {"fgsm": {"eps": 0.1}, "pgd": {"eps": 0.1, "alpha": 0.025, "steps": 7, "random_start": True}}},
}  # fmt: skip

DENSITIES = [0.05, 0.1, 0.2]
PRUNING = ["irregular", "channel"]
SPACE = {
    "dnr.density": {"choice": DENSITIES},
    "dnr.pruning": {"choice": PRUNING},
    "dnr.beta": {"uniform": [0.2, 1.0]},
    "dnr.rho": {"loguniform": [1.0e-6, 1.0e-2]},
    "dnr.prune_rate": {"uniform": [0.1, 0.9]},
}
GRID = {
    "dnr.density": {"grid": DENSITIES},
    "dnr.pruning": {"grid": PRUNING},
    "dnr.beta": {"grid": [0.5, 0.3]},
    "dnr.rho": {"grid": [1.0e-4, 1.0e-3]},
    "dnr.prune_rate": {"grid": [0.5, 0.3]},
}
TUNE = {"resources_per_trial": {"cpu": 1, "gpu": 0}, "max_concurrent_trials": 2, "max_failures": 1}
ASHA = {"metric": "val_pgd_acc", "mode": "max", "grace_period": 2, "reduction_factor": 3,
        "group_by": ["dnr.density", "dnr.pruning"]}  # fmt: skip
#: the paper's defaults in every cell, run first by the *_warm methods (as digits_search.yaml does)
DEFAULT_POINTS = [{"dnr.density": d, "dnr.pruning": k, "dnr.beta": 0.5, "dnr.rho": 1.0e-4, "dnr.prune_rate": 0.5}
                  for k in PRUNING for d in DENSITIES]  # fmt: skip
NSGA2_POPULATION = 12  # 4 generations in 48 trials (Optuna's default, 50, would make it random search)
ASHA_QUEUED = 96  # trials queued for the ASHA run: enough to spend the budget (cut there)


def sweep_config(method: str, seed: int) -> dict[str, Any]:
    """The sweep YAML (as a dict) of one method and searcher seed."""
    config = {**BASE, "name": f"bench_{method}"}
    if method == "grid":
        return {**config, "search": GRID, "tune": {**TUNE, "metric": None}}
    sampler, asha, warm = SEARCHERS[method]
    optuna: dict[str, Any] = {"sampler": sampler, "objectives": OBJECTIVES, "seed": seed}
    if sampler == "nsga2":
        optuna["population_size"] = NSGA2_POPULATION
    tune: dict[str, Any] = {**TUNE, "metric": "val_pgd_acc", "num_samples": GRID_TRIALS,
                            "search_alg": {"optuna": optuna}}  # fmt: skip
    if asha:
        tune.update(num_samples=ASHA_QUEUED, scheduler={"asha": ASHA})
    if warm:
        tune["points_to_evaluate"] = DEFAULT_POINTS
    return {**config, "search": SPACE, "tune": tune}


def run_name(method: str, seed: int) -> str:
    return method if method not in SEEDED else f"{method}_s{seed}"


def run_method(method: str, seed: int, storage: Path) -> Path:
    """One sweep through the service (``dnr-sweep run``), skipped when its results already exist."""
    from dnr_sweep import cli

    name = run_name(method, seed)
    run_dir = storage / name
    if (run_dir / rc.RESULTS_FILE).is_file():
        return run_dir
    path = storage / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep_config(method, seed), sort_keys=False))
    start = time.perf_counter()
    code = cli.main(["run", str(path), "--storage", str(storage), "--name", name, "--no-report", "--no-dashboard"])
    (run_dir / "bench_wall_s.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    if code != 0:
        raise RuntimeError(f"{name}: dnr-sweep run exited {code}")
    return run_dir


# ------------------------------------------------------------------------------------------------
# Analysis (files only)


def analyse_run(run_dir: Path, budget: float) -> dict[str, Any]:
    """Hypervolume curve, final validation front and its test figures of one run, cut at ``budget``."""
    import numpy as np
    import pandas as pd

    from dnr_sweep.reports.cell_choice import choose_per_cell, finished_trials, proposal_order
    from dnr_sweep.reports.chooser import front as chosen_front
    from dnr_sweep.reports.hypervolume import frame_hypervolume, hypervolume_history

    results = pd.read_parquet(run_dir / rc.RESULTS_FILE)
    results = results.assign(order=results["trial_id"].map(proposal_order(run_dir))).sort_values("order")
    costs = results["epochs_completed"].astype(float).to_numpy()
    within = results[np.cumsum(costs) <= budget]
    done = finished_trials(within)
    counted = within[list(OBJECTIVES)].to_numpy(dtype=float, copy=True)
    counted[~within.index.isin(done.index)] = np.nan  # a trial stopped early costs its epochs, adds no point
    history = hypervolume_history(counted, within["epochs_completed"].astype(float).tolist(),
                                  [REFERENCE[k] for k in OBJECTIVES], list(OBJECTIVES.values()))  # fmt: skip
    front = chosen_front(done, OBJECTIVES)
    chosen = choose_per_cell(done)
    wall = run_dir / "bench_wall_s.txt"
    return {
        "trials": int(len(within)),
        "finished": int(len(done)),
        "cost": float(history.cost[-1]) if len(history.cost) else 0.0,
        "history": history,
        "val_hv": history.at(budget),
        "val_hv_at": {f"{f:.3g}": history.at(f * budget) for f in FRACTIONS},
        "front_size": int(len(front)),
        "test_hv_of_front": frame_hypervolume(front, TEST_OBJECTIVES, REFERENCE),
        "cells_chosen": int(len(chosen)),
        "chosen_test_pgd": float(chosen["pgd_acc"].mean()),
        "chosen_test_clean": float(chosen["clean_acc"].mean()),
        "chosen_val_pgd": float(chosen["val_pgd_acc"].mean()),
        "wall_s": float(wall.read_text()) if wall.is_file() else math.nan,
    }


def _mean_sd(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "never"
    if len(finite) == 1:
        return f"{finite[0]:.4g}"
    return f"{statistics.mean(finite):.4g} +- {statistics.stdev(finite):.2g}"


def summarise(storage: Path, methods: list[str], seeds: list[int]) -> dict[str, Any]:
    runs = {m: {s: analyse_run(storage / run_name(m, s), BUDGET) for s in (seeds if m in SEEDED else [0])
                if (storage / run_name(m, s) / rc.RESULTS_FILE).is_file()} for m in methods}  # fmt: skip
    grid_hv = runs["grid"][0]["val_hv"] if runs.get("grid") else math.nan
    summary: dict[str, Any] = {"budget_trial_epochs": BUDGET, "grid_final_val_hv": grid_hv, "methods": {}}
    for method, by_seed in runs.items():
        if not by_seed:
            continue
        reach = [r["history"].cost_to_reach(grid_hv) for r in by_seed.values()]
        summary["methods"][method] = {
            "seeds": sorted(by_seed),
            "val_hv_at_fraction_of_budget": {
                f: _mean_sd([r["val_hv_at"][f] for r in by_seed.values()])
                for f in next(iter(by_seed.values()))["val_hv_at"]
            },  # fmt: skip
            "trial_epochs_to_reach_grid_hv": [None if math.isinf(c) else c for c in reach],
            "reached_within_third_of_budget": sum(c <= BUDGET / 3 for c in reach),
            "test_hv_of_final_front": _mean_sd([r["test_hv_of_front"] for r in by_seed.values()]),
            "chosen_per_cell_test_pgd": _mean_sd([r["chosen_test_pgd"] for r in by_seed.values()]),
            "chosen_per_cell_test_clean": _mean_sd([r["chosen_test_clean"] for r in by_seed.values()]),
            "chosen_per_cell_val_pgd": _mean_sd([r["chosen_val_pgd"] for r in by_seed.values()]),
            "trials_within_budget": [r["trials"] for r in by_seed.values()],
            "finished_trials": [r["finished"] for r in by_seed.values()],
            "wall_s": [round(r["wall_s"]) if math.isfinite(r["wall_s"]) else None for r in by_seed.values()],
        }
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    parts = [f"digits smallcnn w0.5, {EPOCHS} epochs, 2 concurrent 1-CPU trials (2 cores shared with other jobs, no "
             f"GPU), budget B = {BUDGET} trial-epochs (grid {GRID_TRIALS} trials), validation hypervolume (HV) over "
             f"val_pgd_acc x compression, reference (0 %, 1x), mean +- sd over searcher seeds; grid final val HV "
             f"{summary['grid_final_val_hv']:.4g}"]  # fmt: skip
    for method, m in summary["methods"].items():
        curve = ", ".join(f"{float(f):.2f}B: {v}" for f, v in m["val_hv_at_fraction_of_budget"].items())
        parts.append(
            f"{method} (seeds {m['seeds']}): val HV {curve}; to reach grid HV {m['trial_epochs_to_reach_grid_hv']} "
            f"trial-epochs ({m['reached_within_third_of_budget']}/{len(m['seeds'])} within B/3); "
            f"test HV of final val front {m['test_hv_of_final_front']}; chosen per cell: val PGD "
            f"{m['chosen_per_cell_val_pgd']}, test PGD {m['chosen_per_cell_test_pgd']}, test clean "
            f"{m['chosen_per_cell_test_clean']}; trials {m['trials_within_budget']} ({m['finished_trials']} ran "
            f"every epoch); wall {m['wall_s']} s"
        )
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--storage", type=Path, default=Path("/tmp/dnr_search_bench"))
    parser.add_argument("--analyse-only", action="store_true", help="summarise existing runs, train nothing")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    storage = args.storage.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    if not args.analyse_only:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            for method in args.methods:
                for seed in args.seeds if method in SEEDED else [0]:
                    run_method(method, seed, storage)
        finally:
            ray.shutdown()
    methods = sorted(set(args.methods) | {"grid"}, key=METHODS.index)
    summary = summarise(storage, methods, args.seeds)
    result = {"machine": machine("cpu"), "storage": str(storage), **summary}
    report("bench_search_efficiency", result, summary_line(summary), write=not args.no_write)
    (storage / "summary.json").write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
