"""The two-stage protocol of a DNR search: choose on validation, then confirm on test over seeds.

    python scripts/confirm_search.py write SEARCH_RUN [--out FILE] [--seeds 1 2 3]
    python scripts/confirm_search.py analyse CONFIRM_RUN [--record]

Stage 1 (``dnr-sweep run search_spaces/digits_search.yaml``) searches beta, rho and the pruning rate
at each (density, pruning) cell with one training seed per trial. ``write`` reads its
``results.parquet`` and picks one configuration per cell on validation figures only
(``reports/cell_choice.py``: among the trials that ran every epoch, the best ``val_pgd_acc``; ties by
``val_clean_acc``), then writes the stage-2 sweep: those configurations and the paper's defaults (the
search config's base ``dnr`` values), each trained with every seed of a plain grid
(``train.seed: {grid: [1, 2, 3]}``; no searcher, no scheduler, ``tune.metric: null``), through
``tune.points_to_evaluate``. Run it with ``dnr-sweep run FILE``. The seeds are fresh by default
(the three after the search's seed): with the search's own seed a trial repeats, bit for bit, the
training the choice was made on (same weights, same validation split), so a default that was
unlucky there would count against it twice.

``analyse`` reads the confirmation run and prints, per cell, the test accuracy (clean, PGD) of the
searched and the default configuration as mean +- 95% CI over the seeds (Student t), and the paired
difference searched - default (same seed: same data split and initialisation). ``--record`` appends
the table to docs/REPRODUCE.md with the date and machine. The test split is looked at here only:
the choice was made in ``write``, on validation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dnr_sweep.config import apply_overrides, read_yaml, validate_sweep  # noqa: E402
from dnr_sweep.foundation import run_contract as rc  # noqa: E402
from dnr_sweep.foundation.errors import ConfigError  # noqa: E402
from dnr_sweep.reports.cell_choice import CELL, choose_per_cell  # noqa: E402

#: what the search varies within a cell; the rest of a configuration is the cell itself
TUNED = ("dnr.beta", "dnr.rho", "dnr.prune_rate")
SEED = "train.seed"
CLEAN, _, PGD = rc.TEST_METRICS  # test figures: reported here, never used to choose


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so the YAML stays plain."""
    return value.item() if hasattr(value, "item") else value


def run_config_data(run_dir: Path) -> dict[str, Any]:
    """A run folder's sweep config as YAML data: its config.yaml with the run's ``--set`` overrides applied."""
    sweep = run_dir / rc.SWEEP_FILE
    overrides = json.loads(sweep.read_text())["overrides"] if sweep.is_file() else []
    return apply_overrides(read_yaml(run_dir / rc.CONFIG_FILE), overrides)


def base_defaults(raw: dict[str, Any]) -> dict[str, float]:
    """The base config's beta, rho and pruning rate (the paper's defaults in the shipped searches)."""
    dnr = validate_sweep(raw).dnr
    return {path: getattr(dnr, path.split(".", 1)[1]) for path in TUNED}


def confirmation_config(search_run: Path, seeds: list[int]) -> dict[str, Any]:
    """The stage-2 sweep (as YAML data) for the search run in ``search_run``."""
    raw = run_config_data(search_run)
    results = pd.read_parquet(search_run / rc.RESULTS_FILE)
    chosen = choose_per_cell(results)
    if chosen.empty:
        raise ConfigError([f"{search_run}: no trial ran every epoch; nothing to choose from (resume the search)"])
    defaults = base_defaults(raw)
    points: list[dict[str, Any]] = []
    for _, row in chosen.iterrows():
        cell = {path: _plain(row[path]) for path in CELL}
        searched = {path: _plain(row[path]) for path in TUNED}
        points.append({**cell, **searched})
        if searched != defaults:
            points.append({**cell, **defaults})
    search = {path: rule for path, rule in (raw.get("search") or {}).items() if path in (*CELL, *TUNED)}
    search[SEED] = {"grid": list(seeds)}
    tune = {key: value for key, value in (raw.get("tune") or {}).items()
            if key in ("resources_per_trial", "max_concurrent_trials", "max_failures")}  # fmt: skip
    tune.update(num_samples=len(points), metric=None, points_to_evaluate=points)
    config = {key: value for key, value in raw.items() if key not in ("search", "tune")}
    config.update(name=f"{raw.get('name', 'search')}_confirm", search=search, tune=tune)
    validate_sweep(config, f"confirmation of {search_run}")  # the file written must run
    return config


def header(search_run: Path, config: dict[str, Any], seeds: list[int], out: Path) -> str:
    cells = len({tuple(p[c] for c in CELL) for p in config["tune"]["points_to_evaluate"]})
    trials = len(config["tune"]["points_to_evaluate"]) * len(seeds)
    sweep = validate_sweep(config)
    where = out.resolve().relative_to(REPO) if out.resolve().is_relative_to(REPO) else out
    return (
        f"# {config['name']}: stage 2 of the search protocol (docs/REPRODUCE.md, 'Searching beta, rho and the\n"
        f"# pruning rate'). Written by scripts/confirm_search.py from the search run {search_run.name}\n"
        f"# on {datetime.date.today().isoformat()}: for each of its {cells} (density, pruning) cells, the configuration\n"
        "# the search chose on VALIDATION (the finished trial with the best val_pgd_acc) and the paper's\n"
        f"# defaults, each trained with seeds {seeds} (a plain grid: no searcher, no scheduler, no metric;\n"
        f"# the search trained with seed {validate_sweep(run_config_data(search_run)).train.seed}).\n"
        f"# Compute: {trials} trials x {sweep.train.epochs} epochs of {sweep.model.arch} (width {sweep.model.width:g}) on "
        f"{sweep.data.dataset},\n# as in the search.\n"
        "#\n"
        f"#   dnr-sweep run {where}\n"
        "#   python scripts/confirm_search.py analyse RUN_DIR --record    # test mean +- 95% CI per configuration\n"
    )


# ------------------------------------------------------------------------------------------------
# Stage 2: test accuracy over seeds


def t_interval(values: pd.Series) -> tuple[float, float, int]:
    """(mean, half-width of the 95% Student-t interval, n); half-width NaN for one value."""
    from scipy import stats

    values = values.dropna().astype(float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, n
    return mean, float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)), n


def _fmt(interval: tuple[float, float, int]) -> str:
    mean, half, _ = interval
    return f"{mean:.1f}" if math.isnan(half) else f"{mean:.1f} ± {half:.1f}"


def analyse(confirm_run: Path, defaults: dict[str, float]) -> str:
    """Markdown table: per cell, searched vs default test accuracy over seeds, and the paired difference."""
    results = pd.read_parquet(confirm_run / rc.RESULTS_FILE)
    done = results[(results["status"] == "TERMINATED") & ~results["early_stopped"].astype(bool)]
    is_default = pd.Series(True, index=done.index)
    for path, value in defaults.items():
        is_default &= done[path].astype(float).sub(float(value)).abs() < 1e-12 * max(1.0, abs(float(value)))
    done = done.assign(kind=is_default.map({True: "paper default", False: "searched"}))
    lines = [
        "| density | pruning | configuration (beta, rho, prune rate) | seeds | test clean % | test PGD % | "
        "PGD searched - default (paired) | clean searched - default (paired) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (density, pruning), cell in done.groupby(list(CELL), sort=True):
        kinds = dict(tuple(cell.groupby("kind")))
        for kind in ("searched", "paper default"):
            rows = kinds.get(kind)
            if rows is None:
                continue
            params = rows.iloc[0]
            label = f"{kind}: {params['dnr.beta']:.3g}, {params['dnr.rho']:.2g}, {params['dnr.prune_rate']:.3g}"
            diff = {"pgd": "", "clean": ""}
            if kind == "searched" and "paper default" in kinds:
                paired = rows.set_index(SEED)[[PGD, CLEAN]] - kinds["paper default"].set_index(SEED)[[PGD, CLEAN]]
                diff = {"pgd": _fmt(t_interval(paired[PGD])), "clean": _fmt(t_interval(paired[CLEAN]))}
            elif kind == "paper default" and "searched" not in kinds:
                label += " (the search chose the default)"
            lines.append(f"| {density:g} | {pruning} | {label} | {len(rows)} | {_fmt(t_interval(rows[CLEAN]))} | "
                         f"{_fmt(t_interval(rows[PGD]))} | {diff['pgd']} | {diff['clean']} |")  # fmt: skip
    pooled = _pooled_difference(done)
    if pooled is not None:
        lines.append(f"| all | all | searched - default, mean over the {pooled[0]} cells per seed | {pooled[1]['pgd'][2]} | | | "
                     f"{_fmt(pooled[1]['pgd'])} | {_fmt(pooled[1]['clean'])} |")  # fmt: skip
    return "\n".join(lines)


def _pooled_difference(done: pd.DataFrame) -> tuple[int, dict[str, tuple[float, float, int]]] | None:
    """Searched - default averaged over the cells where both ran, one value per seed, and its interval."""
    by = [*CELL, SEED]
    searched = done[done["kind"] == "searched"].set_index(by)[[PGD, CLEAN]]
    default = done[done["kind"] == "paper default"].set_index(by)[[PGD, CLEAN]]
    paired = (searched - default).dropna()
    if paired.empty:
        return None
    per_seed = paired.groupby(level=SEED).mean()
    cells = paired.reset_index()[list(CELL)].drop_duplicates()
    return len(cells), {"pgd": t_interval(per_seed[PGD]), "clean": t_interval(per_seed[CLEAN])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="the confirmation sweep of a search run")
    write.add_argument("search_run", type=Path)
    write.add_argument("--out", type=Path, help="default: SEARCH_RUN/confirm.yaml")
    write.add_argument(
        "--seeds", type=int, nargs="+", help="training seeds (default: the three after the search's seed, e.g. 1 2 3)"
    )
    show = sub.add_parser("analyse", help="test accuracy over seeds of a finished confirmation run")
    show.add_argument("confirm_run", type=Path)
    show.add_argument("--record", action="store_true", help="append the table to docs/REPRODUCE.md")
    args = parser.parse_args(argv)
    run_dir = args.search_run if args.command == "write" else args.confirm_run
    missing = [name for name in (rc.CONFIG_FILE, rc.RESULTS_FILE) if not (run_dir / name).is_file()]
    if missing:
        print(f"{run_dir}: no {' or '.join(missing)}; pass the run folder `dnr-sweep run` printed, after the run "
              "finished", file=sys.stderr)  # fmt: skip
        return 2
    try:
        return _command(args, parser)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


def _command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "write":
        search_seed = validate_sweep(run_config_data(args.search_run)).train.seed
        seeds = args.seeds or [search_seed + k for k in (1, 2, 3)]
        if len(seeds) < 3:
            parser.error("--seeds: a confidence interval needs at least 3 seeds")
        if search_seed in seeds:
            print(f"warning: seed {search_seed} is the search's own: its trials repeat the search's training "
                  "bit for bit, the very runs the choice was made on, which biases the comparison toward the "
                  "searched configurations; prefer fresh seeds", file=sys.stderr)  # fmt: skip
        config = confirmation_config(args.search_run, seeds)
        out = args.out or args.search_run / "confirm.yaml"
        out.write_text(header(args.search_run, config, seeds, out) + yaml.safe_dump(config, sort_keys=False))
        print(f"wrote {out}: {config['tune']['num_samples']} configurations x {len(seeds)} seeds")
        return 0

    table = analyse(args.confirm_run, base_defaults(run_config_data(args.confirm_run)))
    print(table)
    if args.record:
        stamp = (f"\n#### Recorded {datetime.date.today().isoformat()} on {platform.platform()}, {os.cpu_count()} "
                 f"CPU cores (confirmation run `{args.confirm_run.name}`)\n\n")  # fmt: skip
        with open(REPO / "docs" / "REPRODUCE.md", "a") as handle:
            handle.write(stamp + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
