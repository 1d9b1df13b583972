"""How many trial-epochs each search needs to find the grid's validation front (digits, replayed on a table).

    python benchmarks/bench_search_efficiency.py                       # every method, 20 searcher seeds
    python benchmarks/bench_search_efficiency.py --methods tpe_warm gp_warm --seeds 5 --no-write

Method (as tabular HPO benchmarks, NAS-Bench / LCBench, do): ``build_search_table.py`` trained every
configuration of a discretised space once with the real engine (digits smallcnn w0.5, eps-0.1 PGD-7
hybrid loss, 180 validation images, training seed 0): target density {0.05, 0.1, 0.2} x pruning
{irregular, channel} x beta {0.2, 0.3, 0.5, 0.75} x rho {1e-4, 1e-3, 1e-2} x pruning rate {0.1, 0.3,
0.5, 0.7}, less channel pruning at 5% (the engine refuses it for this model): 240 configurations, the
paper-style grid's 40 among them, at 6 epochs and at cheaper fidelities. Each searcher is replayed on
that table (``search_sim.py``): Optuna's samplers for real (ask/tell, Categorical over the table's
values, sequential), the schedulers synchronously. Cost: trial-epochs (a full run 6, a 3-epoch run 3,
on half the data 1.5); the grid's budget B = 40 x 6 = 240. Only the full runs' validation points
(val_pgd_acc, compression; reference (0 %, 1x)) form the front; the test figures (pgd_acc of the
selected weights) are read only to report the test HV of the final front.

Limits: searchers are restricted to the table's values; one training seed per configuration, so a
configuration run twice would give the same figures (a sampler that proposes one again is told them at
no cost: in a continuous space it would never propose the very same point) and the noise between
training seeds is not in the replay: it is measured on the grid's 40 configurations retrained with
seed 1. A searcher runs to 2B (GP to B: minutes per seed on a CPU) to measure when it reaches the
grid's hypervolume; a seed that never does counts as its horizon (the mean is then a lower bound).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_sim as sim  # noqa: E402
from _common import machine, report  # noqa: E402

EPOCHS = 6
FRACTIONS = (1 / 6, 1 / 3, 1 / 2, 1.0)
TABLE = Path(__file__).resolve().parent / "data" / "search_table_digits.jsonl"


REPEATS: list[int] = []  # proposals of a configuration already run, per Optuna search (told, not charged)


def _optuna(kind: str, warm: bool) -> Callable[[sim.Table, int, float], list[sim.Spend]]:
    def run(table: sim.Table, seed: int, horizon: float) -> list[sim.Spend]:
        import optuna

        samplers = {
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "gp": lambda: optuna.samplers.GPSampler(seed=seed),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=12),
        }  # fmt: skip
        return sim.optuna_search(table, samplers[kind](), horizon, warm, REPEATS)

    return run


def _seeded(fn: Callable[..., list[sim.Spend]], **kwargs: Any) -> Callable[[sim.Table, int, float], list[sim.Spend]]:
    return lambda table, seed, horizon: fn(table, np.random.default_rng(seed), horizon, **kwargs)


#: name -> (what it is, the searcher, the table fidelities it needs)
METHODS: dict[str, tuple[str, Callable[[sim.Table, int, float], list[sim.Spend]], tuple[str, ...]]] = {
    "grid": ("grid (paper defaults + one neighbour each, 40 runs, random order)", _seeded(sim.grid_search), ()),
    "random": ("Optuna random", _optuna("random", False), ()),
    "tpe": ("Optuna TPE (multi-objective)", _optuna("tpe", False), ()),
    "tpe_warm": ("TPE, paper defaults first", _optuna("tpe", True), ()),
    "gp": ("Optuna GP (multi-objective)", _optuna("gp", False), ()),
    "gp_warm": ("GP, paper defaults first", _optuna("gp", True), ()),
    "nsga2_warm": ("NSGA-II (population 12), paper defaults first", _optuna("nsga2", True), ()),
    "sh_prefix": ("synchronous SH per cell, rung = first 2 epochs of the full run (continued), 12 per cell, eta 3",
                  _seeded(sim.successive_halving, rungs=("prefix2", "full"), candidates=12, warm=True), ()),
    "sh_short3": ("synchronous SH per cell, rung = 3-epoch run of the same schedule shape (retrained), 9 per cell, eta 3",
                  _seeded(sim.successive_halving, rungs=("short3", "full"), candidates=9, warm=True), ("short3",)),
    "sh_short2": ("synchronous SH per cell, rung = 2-epoch run of the same schedule shape (retrained), 12 per cell, eta 3",
                  _seeded(sim.successive_halving, rungs=("short2", "full"), candidates=12, warm=True), ("short2",)),
    "sh_prefix_small": ("as sh_prefix, brackets of 3 per cell (the best of 3 goes on)",
                        _seeded(sim.successive_halving, rungs=("prefix2", "full"), candidates=3, warm=True), ()),
    "sh_short3_small": ("as sh_short3, brackets of 3 per cell (the best of 3 is retrained fully)",
                        _seeded(sim.successive_halving, rungs=("short3", "full"), candidates=3, warm=True), ("short3",)),
    "screen_short3": ("screening: defaults full, 9 per cell at 3 epochs, then full runs in that order",
                      _seeded(sim.screening, fidelity="short3", screened=9, warm=True), ("short3",)),
    "screen_half": ("screening: defaults full, 12 per cell at 3 epochs on half the data, then full runs",
                    _seeded(sim.screening, fidelity="short3_half", screened=12, warm=True), ("short3_half",)),
    "oracle": ("bound: each cell's best full run, known in advance", _seeded(sim.oracle), ()),
}  # fmt: skip


def run_method(table: sim.Table, name: str, seeds: list[int], grid_hv: float, budget: float) -> dict[str, Any]:
    """``name`` with each searcher seed, run to 2 ``budget`` (to see when it reaches ``grid_hv``), cut at ``budget``."""
    _, searcher, _ = METHODS[name]
    horizon = (1 if name.startswith("gp") else 2) * budget  # GP: minutes per seed on a CPU, so only to B
    per_seed = []
    start = time.perf_counter()
    REPEATS.clear()
    for seed in seeds if name != "oracle" else [0]:
        spends = searcher(table, seed, horizon)
        long = sim.replay(table, spends, horizon)
        at_budget = sim.replay(table, spends, budget)
        reach = long.history.cost_to_reach(grid_hv)
        per_seed.append({
            "seed": seed, "reach": reach,
            "hv_at": {f"{f:.3g}": long.history.at(f * budget) for f in FRACTIONS},
            "test_hv": at_budget.front_test_hv,
            "duplicates": at_budget.duplicates,
            "full_runs": sum(s.counted for s in at_budget.spends),
        })  # fmt: skip
        print(f"{name} seed {seed}: reach {reach}, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    reach = [r["reach"] for r in per_seed]
    censored = [min(c, horizon) for c in reach]
    mean, half = sim.t_interval(censored)
    hv = {f: sim.t_interval([r["hv_at"][f] for r in per_seed]) for f in per_seed[0]["hv_at"]}
    return {
        "seeds": len(per_seed),
        "reach_mean": mean, "reach_ci95": half,
        "reach_median": float(np.median(censored)),
        "reached_within_B/3": sum(c <= budget / 3 for c in reach),
        "reached_within_B": sum(c <= budget for c in reach),
        "reached_within_2B": sum(c <= horizon for c in reach) if horizon > budget else None,
        "horizon": horizon,
        "val_hv_at": {f: {"mean": m, "ci95": h} for f, (m, h) in hv.items()},
        "test_hv": dict(zip(("mean", "ci95"), sim.t_interval([r["test_hv"] for r in per_seed]), strict=True)),
        "repeated_proposals": float(np.mean(REPEATS)) if REPEATS else 0.0,
        "full_runs_within_B": float(np.mean([r["full_runs"] for r in per_seed])),
        "per_seed_reach": [None if math.isinf(c) else c for c in reach],
        "wall_s": round(time.perf_counter() - start, 1),
    }  # fmt: skip


def _cheap_value(table: sim.Table, config: sim.Config, source: str) -> float:
    """A cheap run's val PGD: ``prefixK`` (the full run after K epochs), a short fidelity, or ``seed1``."""
    if source.startswith("prefix"):
        return table.get(config).prefix_val_pgd_acc[int(source.removeprefix("prefix")) - 1]
    if source == "seed1":
        return table.get(config, "full", 1).val_pgd_acc
    return table.get(config, source).val_pgd_acc


def _has(table: sim.Table, config: sim.Config, source: str) -> bool:
    fidelity, seed = {"seed1": ("full", 1)}.get(source, (source, 0))
    return source.startswith("prefix") or (fidelity, seed, config) in table.rows


def rank_agreement(table: sim.Table) -> dict[str, Any]:
    """Spearman's rho per cell between a cheap ranking and the full runs' (val_pgd_acc), mean +- 95% CI over
    the cells, over all of a cell's configurations and over the grid's 8; ``seed1`` is the full runs' own
    reproducibility (training seed 1 against seed 0, on the grid's configurations)."""
    found: dict[str, Any] = {}
    grid = set(sim.grid_configs(table))
    for source in ("prefix2", "prefix3", "prefix4", "short3", "short3_half", "short2", "seed1"):
        for scope in ("all", "grid") if source != "seed1" else ("grid",):
            rhos = []
            for cell in table.cells():
                configs = [c for c in table.configs(cell) if (scope == "all" or c in grid) and _has(table, c, source)]
                if len(configs) >= 3:
                    rhos.append(sim.spearman([_cheap_value(table, c, source) for c in configs],
                                             [table.get(c).val_pgd_acc for c in configs]))  # fmt: skip
            rhos = [r for r in rhos if math.isfinite(r)]
            if rhos:
                m, h = sim.t_interval(rhos)
                found[f"{source}/{scope}"] = {"mean": m, "ci95": h, "cells": len(rhos)}
    return found


def seed_noise(table: sim.Table) -> dict[str, Any]:
    """The grid's configurations at training seeds 0 and 1: how far one run's figures move."""
    grid = [c for c in sim.grid_configs(table) if ("full", 1, c) in table.rows]
    if not grid:
        return {}
    diffs = [table.get(c, "full", 1).val_pgd_acc - table.get(c).val_pgd_acc for c in grid]
    test_diffs = [table.get(c, "full", 1).test_pgd_acc - table.get(c).test_pgd_acc for c in grid]
    return {
        "configs": len(grid),
        "val_pgd_sd_of_difference": float(np.std(diffs, ddof=1)),
        "test_pgd_sd_of_difference": float(np.std(test_diffs, ddof=1)),
        "grid_val_hv_seed0": sim.hv_of(table, grid, 0),
        "grid_val_hv_seed1": sim.hv_of(table, grid, 1),
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| method | trial-epochs to reach the grid's val HV (mean ± 95% CI; median) | seeds reaching it within B/3, B, 2B "
        "| val HV at B/3 | val HV at B | test HV of the final val front |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, m in summary["methods"].items():
        third, full = m["val_hv_at"]["0.333"], m["val_hv_at"]["1"]
        ci = "" if not math.isfinite(m["reach_ci95"]) else f" ± {m['reach_ci95']:.0f}"
        lines.append(
            f"| {name} | {m['reach_mean']:.0f}{ci}; {m['reach_median']:.0f} | {m['reached_within_B/3']}/{m['seeds']}, "
            f"{m['reached_within_B']}/{m['seeds']}, {_of(m['reached_within_2B'], m['seeds'])} | {_pm(third)} | {_pm(full)} "
            f"| {_pm(m['test_hv'])} |"
        )  # fmt: skip
    return "\n".join(lines)


def _of(count: int | None, total: int) -> str:
    return "not run to 2B" if count is None else f"{count}/{total}"


def _pm(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.1f}" + ("" if not math.isfinite(stat["ci95"]) else f" ± {stat['ci95']:.1f}")


def summary_line(summary: dict[str, Any]) -> str:
    t = summary["table"]
    parts = [f"replayed on {t['path']} ({t['rows']} rows: {t['fidelities']}; built {t['built']}), budget B = {summary['budget']:.0f} "
             f"trial-epochs, {summary['seeds']} searcher seeds, val HV over val_pgd_acc x compression, reference "
             f"(0 %, 1x), mean ± 95% t-CI; grid val HV {summary['grid_val_hv']:.1f}, test HV {summary['grid_test_hv']:.1f}"]  # fmt: skip
    for name, m in summary["methods"].items():
        parts.append(
            f"{name} ({m['seeds']} seeds): to reach grid HV {m['reach_mean']:.0f} ± {m['reach_ci95']:.0f} (median {m['reach_median']:.0f}; "
            f"within B/3 {m['reached_within_B/3']}/{m['seeds']}, B {m['reached_within_B']}, 2B {_of(m['reached_within_2B'], m['seeds'])}); "
            f"val HV B/3 {_pm(m['val_hv_at']['0.333'])}, B {_pm(m['val_hv_at']['1'])}; test HV {_pm(m['test_hv'])}; "
            f"{m['full_runs_within_B']:.1f} full runs within B, {m['repeated_proposals']:.0f} repeated proposals"
        )  # fmt: skip
    ranks = ", ".join(f"{k} {v['mean']:.2f} ± {v['ci95']:.2f}" for k, v in summary["rank_agreement"].items())
    parts.append(f"Spearman vs full val PGD per cell (mean ± 95% CI over cells): {ranks}")
    if summary["seed_noise"]:
        n = summary["seed_noise"]
        parts.append(f"training-seed noise (grid, seeds 0/1): sd of val PGD difference {n['val_pgd_sd_of_difference']:.2f}, "
                     f"test {n['test_pgd_sd_of_difference']:.2f}; grid val HV {n['grid_val_hv_seed0']:.1f} / "
                     f"{n['grid_val_hv_seed1']:.1f}")  # fmt: skip
    return " | ".join(parts)


def _fingerprint(table: sim.Table) -> str:
    """What a method's replay depends on beyond its own fidelities: the full runs of seed 0."""
    import hashlib

    full = sorted((c, table.get(c).val_pgd_acc, table.get(c).compression) for c in table.configs())
    return hashlib.sha256(repr(full).encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=20, help="searcher seeds 0 .. N-1")
    parser.add_argument("--gp-seeds", type=int, default=10, help="seeds of the GP methods (minutes per seed)")
    parser.add_argument("--reuse", type=Path, nargs="+", default=[],
                        help="--json files of earlier runs: their methods are taken from there when the full runs agree")  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    table = sim.load_table(args.table)
    grid = sim.grid_configs(table)
    grid_hv = sim.hv_of(table, grid)
    budget = EPOCHS * len(grid)
    fidelities = sorted({(f, s) for f, s, _ in table.rows})
    summary: dict[str, Any] = {
        "table": {"path": str(args.table.name), "rows": len(table.rows), "fingerprint": _fingerprint(table),
                  "fidelities": ", ".join(f"{f} s{s}: {len(table.configs(fidelity=f, seed=s))}" for f, s in fidelities),
                  "built": _built(args.table)},  # fmt: skip
        "budget": budget, "seeds": args.seeds, "gp_seeds": args.gp_seeds, "grid_configs": len(grid),
        "grid_val_hv": grid_hv,
        "grid_test_hv": sim.replay(table, [sim.Spend(c, EPOCHS, True) for c in grid], budget).front_test_hv,
        "methods": {},
    }  # fmt: skip
    reused: dict[str, Any] = {}
    for path in args.reuse:
        earlier = json.loads(path.read_text())
        if earlier.get("table", {}).get("fingerprint") == _fingerprint(table):
            reused.update(earlier["methods"])
    for name in args.methods:
        needs = METHODS[name][2]
        if any(not table.configs(fidelity=f) for f in needs):
            print(f"{name}: skipped, the table has no {needs} rows", file=sys.stderr)
            continue
        if not needs and name in reused:  # a method that reads only the full runs, replayed on the same ones
            summary["methods"][name] = reused[name]
            continue
        seeds = list(range(args.gp_seeds if name.startswith("gp") else args.seeds))
        summary["methods"][name] = run_method(table, name, seeds, grid_hv, budget)
        print(f"{name}: {summary['methods'][name]['wall_s']} s", file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1, default=str))
    summary["rank_agreement"] = rank_agreement(table)
    summary["seed_noise"] = seed_noise(table)
    result = {"machine": machine("cpu"), **summary}
    report("bench_search_efficiency", result, summary_line(summary), write=not args.no_write)
    print(markdown(summary), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


def _built(path: Path) -> str:
    meta = path.with_suffix(".meta.json")
    return json.loads(meta.read_text()).get("built", "?") if meta.is_file() else "?"


if __name__ == "__main__":
    main()
