"""Searchers replayed on a table of trained configurations (``build_search_table.py``'s rows).

A searcher proposes configurations; each costs the trial-epochs its row says and, when it is a full run,
adds its validation point (``val_pgd_acc``, ``compression``) to the front. Optuna's samplers run for real
(ask/tell, Categorical over the table's values); the schedulers (successive halving, screening) are
written here, synchronously. A search is a list of :class:`Spend` in the order it happened; the
hypervolume history, the budget cut and the test figures of the final front are computed from it. Needs
numpy, pandas, optuna; no torch, no Ray.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnr_sweep.reports.hypervolume import HypervolumeHistory, hypervolume, hypervolume_history

DIMS = ("beta", "rho", "prune_rate")  # searched within a cell
CELL_DIMS = ("density", "pruning")
REFERENCE = (0.0, 1.0)  # 0 % PGD accuracy, 1x compression
DIRECTIONS = ("max", "max")
PAPER_DEFAULT = {"beta": 0.5, "rho": 1.0e-4, "prune_rate": 0.5}
GRID_VALUES = {"beta": (0.5, 0.3), "rho": (1.0e-4, 1.0e-3), "prune_rate": (0.5, 0.3)}

Config = tuple  # (density, pruning, beta, rho, prune_rate)


@dataclass(frozen=True)
class Row:
    """One trained configuration at one fidelity: what a searcher may read, and what only the report may."""

    val_pgd_acc: float
    compression: float
    cost: float  # trial-epochs
    prefix_val_pgd_acc: tuple[float, ...]  # selected-so-far val PGD after each epoch (a continued run's rungs)
    test_pgd_acc: float  # test split, selected weights: reported, never given to a searcher


@dataclass(frozen=True)
class Table:
    rows: dict[tuple[str, int, Config], Row]

    def cells(self) -> list[tuple[float, str]]:
        return sorted({c[:2] for _, _, c in self.rows}, key=lambda c: (c[1], c[0]))

    def values(self, dim: str) -> list[Any]:
        index = (*CELL_DIMS, *DIMS).index(dim)
        return sorted({c[index] for _, _, c in self.rows})

    def configs(self, cell: tuple[float, str] | None = None, fidelity: str = "full", seed: int = 0) -> list[Config]:
        return sorted(c for f, s, c in self.rows if f == fidelity and s == seed and (cell is None or c[:2] == cell))

    def get(self, config: Config, fidelity: str = "full", seed: int = 0) -> Row:
        try:
            return self.rows[(fidelity, seed, config)]
        except KeyError:
            raise ValueError(f"the table has no {fidelity} row of seed {seed} for {config}") from None


def config_of(row: dict[str, Any]) -> Config:
    return (row["density"], row["pruning"], row["beta"], row["rho"], row["prune_rate"])


def load_table(path: str | Path) -> Table:
    """The table from its JSON lines (one per fidelity, seed and configuration; the last row of a key wins)."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        final = raw["final"]
        prefix = tuple(_num(e["selected_val_pgd_acc"]) for e in raw["per_epoch"])
        rows[(raw["fidelity"], raw["seed"], config_of(raw))] = Row(
            _num(final["val_pgd_acc"]), _num(final["compression"]), float(raw["cost"]), prefix,
            _num(final.get("pgd_acc")),
        )  # fmt: skip
    return Table(rows)


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


# ------------------------------------------------------------------------------------------------
# A search's record


@dataclass(frozen=True)
class Spend:
    """``cost`` trial-epochs spent on ``config``; ``counted``: a full run whose point joins the front."""

    config: Config
    cost: float
    counted: bool


@dataclass(frozen=True)
class Outcome:
    history: HypervolumeHistory
    spends: list[Spend]  # within the budget
    front_test_hv: float  # test HV of the configurations on the final validation front
    duplicates: int  # full runs of a configuration already run fully (cost paid, nothing learned)


def replay(table: Table, spends: Sequence[Spend], budget: float) -> Outcome:
    """The validation-HV history of ``spends`` cut at ``budget``, and its final front's test HV."""
    kept, total = [], 0.0
    for spend in spends:
        if total + spend.cost > budget + 1e-9:
            break
        kept.append(spend)
        total += spend.cost
    points = [point(table, s.config) if s.counted else (math.nan, math.nan) for s in kept]
    history = hypervolume_history(points, [s.cost for s in kept], REFERENCE, DIRECTIONS)
    counted = sorted({s.config for s in kept if s.counted})
    front = pareto_front(table, counted)
    test = [(table.get(c).test_pgd_acc, table.get(c).compression) for c in front]
    seen, dups = set(), 0
    for s in kept:
        if s.counted:
            dups += s.config in seen
            seen.add(s.config)
    return Outcome(history, kept, hypervolume(test, REFERENCE, DIRECTIONS), dups)


def point(table: Table, config: Config, seed: int = 0) -> tuple[float, float]:
    row = table.get(config, "full", seed)
    return (row.val_pgd_acc, row.compression)


def pareto_front(table: Table, configs: Iterable[Config]) -> list[Config]:
    """The configurations whose validation point no other one dominates (brute force)."""
    configs = list(configs)
    pts = [point(table, c) for c in configs]
    return [c for c, p in zip(configs, pts, strict=True)
            if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in pts)]  # fmt: skip


def grid_configs(table: Table) -> list[Config]:
    """The paper-style grid: every cell x the paper's defaults and one neighbour each (40 on the digits table)."""
    return [c for c in table.configs() if all(c[2 + i] in GRID_VALUES[d] for i, d in enumerate(DIMS))]


def hv_of(table: Table, configs: Iterable[Config], seed: int = 0) -> float:
    return hypervolume([point(table, c, seed) for c in configs], REFERENCE, DIRECTIONS)


# ------------------------------------------------------------------------------------------------
# Searchers: each returns the spends in order, at least ``budget`` trial-epochs of them (or the table)


def grid_search(table: Table, rng: np.random.Generator, budget: float) -> list[Spend]:
    """The grid, in a random order (the seed draws the order)."""
    configs = grid_configs(table)
    return [Spend(configs[i], table.get(configs[i]).cost, True) for i in rng.permutation(len(configs))]


#: consecutive proposals of configurations already run after which a sampler is taken to have converged
MAX_REPEATS = 50


def optuna_search(
    table: Table, sampler: Any, budget: float, warm: bool, repeats: list[int] | None = None
) -> list[Spend]:
    """An Optuna sampler on the validation objectives (max, max), one full run per trial, ask/tell.

    A configuration proposed again is told its known figures and costs nothing (in the continuous space
    the service searches, a sampler never proposes the very same point twice; with one training seed per
    configuration a rerun would add nothing); their number is appended to ``repeats`` when given.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    cells = {f"{density}/{pruning}": (density, pruning) for density, pruning in table.cells()}
    if warm:
        for cell in cells:
            study.enqueue_trial({"cell": cell, **PAPER_DEFAULT})
    # one categorical over the table's (density, pruning) cells: a cell the engine refuses is not offered
    space = {"cell": optuna.distributions.CategoricalDistribution(list(cells))}
    space.update({name: optuna.distributions.CategoricalDistribution(table.values(name)) for name in DIMS})
    spends, total, seen, repeated, run = [], 0.0, set(), 0, 0
    while total < budget and run < MAX_REPEATS:
        trial = study.ask(space)
        config = (*cells[trial.params["cell"]], *(trial.params[name] for name in DIMS))
        row = table.get(config)
        study.tell(trial, [row.val_pgd_acc, row.compression])
        if config in seen:
            repeated, run = repeated + 1, run + 1
            continue
        seen.add(config)
        run = 0
        spends.append(Spend(config, row.cost, True))
        total += row.cost
    if repeats is not None:
        repeats.append(repeated)
    return spends


def successive_halving(table: Table, rng: np.random.Generator, budget: float, *, rungs: Sequence[str],
                       candidates: int, eta: int = 3, warm: bool = False) -> list[Spend]:  # fmt: skip
    """Synchronous successive halving in every (density, pruning) cell, the cells in step.

    ``candidates`` configurations per cell (drawn at random; with ``warm`` the paper's default among them)
    run at the first rung; the top ``1/eta`` of each cell by validation PGD accuracy go on to the next,
    after every configuration of the rung has reported (synchronous). A rung is a fidelity of the table:
    ``"short3"`` is its own (preserved-shape) run, so a promotion retrains from scratch at the next rung
    and pays that rung's full cost; ``"prefix2"`` is the first 2 epochs of the full run, so a promotion
    continues and pays the remaining epochs. Only the last rung's runs (full) join the front. Cells run a
    rung in turn (round-robin), so the front grows in every cell at once. Repeats (bracket after bracket)
    until the cells run out of candidates.
    """
    cells = table.cells()
    pools = {cell: _candidate_order(table, cell, rng, warm) for cell in cells}
    spends: list[Spend] = []
    while sum(s.cost for s in spends) < budget and any(pools.values()):
        survivors = {cell: [pools[cell].pop(0) for _ in range(min(candidates, len(pools[cell])))] for cell in cells}
        continued: dict[Config, float] = {}  # epochs of the full run already trained (prefix rungs)
        for level, rung in enumerate(rungs):
            last = level == len(rungs) - 1
            for cell in cells:
                for config in survivors[cell]:
                    cost = _rung_cost(table, config, rung)
                    if rung.startswith("prefix") or rung == "full":
                        cost -= continued.get(config, 0.0)
                        continued[config] = continued.get(config, 0.0) + cost
                    spends.append(Spend(config, cost, last))
            if not last:
                for cell in cells:
                    ranked = sorted(survivors[cell], key=lambda c: -_rung_value(table, c, rung))
                    survivors[cell] = ranked[: max(1, len(ranked) // eta)]
    return spends


def _candidate_order(table: Table, cell: tuple[float, str], rng: np.random.Generator, warm: bool) -> list[Config]:
    configs = table.configs(cell)
    order = [configs[i] for i in rng.permutation(len(configs))]
    if warm:
        default = (*cell, *(PAPER_DEFAULT[d] for d in DIMS))
        order.remove(default)
        order.insert(0, default)
    return order


def _rung_cost(table: Table, config: Config, rung: str) -> float:
    if rung.startswith("prefix"):
        return float(rung.removeprefix("prefix"))
    return table.get(config, rung).cost


def _rung_value(table: Table, config: Config, rung: str) -> float:
    if rung.startswith("prefix"):
        value = table.get(config).prefix_val_pgd_acc[int(rung.removeprefix("prefix")) - 1]
    else:
        value = table.get(config, rung).val_pgd_acc
    return -math.inf if math.isnan(value) else value


def screening(table: Table, rng: np.random.Generator, budget: float, *, fidelity: str, screened: int,
              warm: bool = False) -> list[Spend]:  # fmt: skip
    """Low-fidelity screening: ``screened`` configurations per cell (drawn at random) run at ``fidelity``,
    then full runs in the order of each cell's short ranking, the cells in turn (with ``warm`` the paper's
    default runs fully first in every cell, before the screening)."""
    cells = table.cells()
    spends: list[Spend] = []
    chosen: dict[tuple[float, str], list[Config]] = {}
    for cell in cells:
        order = _candidate_order(table, cell, rng, warm)
        chosen[cell] = order[:screened] if not warm else order[1 : screened + 1]
    if warm:
        spends += [Spend((*cell, *(PAPER_DEFAULT[d] for d in DIMS)), table.get((*cell, *(PAPER_DEFAULT[d] for d in DIMS))).cost, True)
                   for cell in cells]  # fmt: skip
    for cell in cells:
        spends += [Spend(c, table.get(c, fidelity).cost, False) for c in chosen[cell]]
    ranked = {cell: sorted(chosen[cell], key=lambda c: -_rung_value(table, c, fidelity)) for cell in cells}
    for i in range(max(len(r) for r in ranked.values())):
        spends += [Spend(r[i], table.get(r[i]).cost, True) for r in ranked.values() if i < len(r)]
    return spends


def oracle(table: Table, rng: np.random.Generator, budget: float) -> list[Spend]:
    """The lower bound: the best full run of every cell (known in advance), then nothing new."""
    best = [max(table.configs(cell), key=lambda c: table.get(c).val_pgd_acc) for cell in table.cells()]
    return [Spend(c, table.get(c).cost, True) for c in best]


# ------------------------------------------------------------------------------------------------
# Rank agreement


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    ra, rb = _ranks(np.asarray(a, dtype=float)), _ranks(np.asarray(b, dtype=float))
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its two-sided Student-t confidence interval."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()) if len(x) else math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


Searcher = Callable[[Table, int, float], list[Spend]]
