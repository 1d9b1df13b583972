"""``dnr-sweep``: the command line, and the one place that ties core, trainables and reports.

Heavy modules (torch, Ray, matplotlib) are imported inside the commands, so ``dnr-sweep --help``
and ``dnr-sweep validate`` answer at once. User errors (bad config, missing files) print
``file: field: message`` lines without a traceback and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error the user can fix; printed without a traceback, exit code 2."""


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value by dotted path, e.g. --set dnr.density=0.1 (repeatable)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnr-sweep",
        description="Dynamic Network Rewiring (robust one-shot pruning) sweeps on Ray Tune.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check configs and print the resolved sweep; starts nothing")
    p.add_argument("configs", nargs="+", metavar="CONFIG")
    p.add_argument("--json", action="store_true", help="print the resolved base config as one JSON object")
    _add_set(p)

    p = sub.add_parser("train", help="one DNR run without Ray (debugging, small machines)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for model.pt, checkpoint.pt, metrics.json")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    _add_set(p)

    p = sub.add_parser("run", help="run the sweep on Ray Tune (embedded local Ray or --address)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--address", default=None, help="an existing Ray cluster, e.g. 10.0.0.1:6379 or 'auto'")
    p.add_argument("--storage", default="runs", metavar="DIR", help="where run folders go (default ./runs)")
    p.add_argument("--name", default=None, help="run folder name (default: the config's name and a timestamp)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start Ray's dashboard")
    p.add_argument("--dashboard-host", default="127.0.0.1",
                   help="interface the dashboard and job API bind to (default loopback only)")  # fmt: skip
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    _add_set(p)

    p = sub.add_parser("resume", help="continue an interrupted sweep")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--address", default=None)
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument("--dashboard-host", default="127.0.0.1")
    p.add_argument("--no-report", action="store_true")

    from dnr_sweep import evaluation_cli, export_cli

    evaluation_cli.register(sub)
    export_cli.register(sub)

    p = sub.add_parser("report", help="Parquet + figures + tables from a run directory (no Ray needed)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", default=None, metavar="DIR", help="default RUN_DIR/report")
    p.add_argument("--format", default=None, help="comma-separated: pdf,png,svg (default from the config, else pdf,png)")
    p.add_argument("--x", default=None, help="x axis column (default from the config's report block)")
    p.add_argument("--y", default=None, help="comma-separated accuracy columns, e.g. clean_acc,pgd_acc")
    p.add_argument("--group-by", default=None, help="column that colours the figures (default dnr.pruning)")
    p.add_argument("--objectives", default=None, help="e.g. pgd_acc:max,compression:max")
    return parser


# ------------------------------------------------------------------------------------------------
# Commands


def cmd_validate(args: argparse.Namespace) -> int:
    from dnr_sweep.config import ConfigError, load_sweep_config, to_yaml_dict

    failures = 0
    for path in args.configs:
        try:
            config = load_sweep_config(path, args.overrides)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            failures += 1
            continue
        if args.json:
            print(json.dumps(to_yaml_dict(config.base_run())))
            continue
        print(f"{path}: OK")
        import yaml

        print(yaml.safe_dump({"base": to_yaml_dict(config.base_run())}, sort_keys=False).rstrip())
        if config.search:
            print("sweep dimensions:")
            for key, spec in config.search.items():
                kind, value = spec.rule
                print(f"  {key}: {kind} {list(value) if isinstance(value, tuple) else value}")
        sampled = any(spec.rule[0] != "grid" for spec in config.search.values())
        note = " (num_samples x grid; sampled dimensions drawn per trial)" if sampled else ""
        print(f"trials: {config.grid_size()}{note}")
    return EXIT_USAGE if failures else 0


def cmd_train(args: argparse.Namespace) -> int:
    from dnr_sweep.config import load_run_config

    config = load_run_config(args.config, args.overrides)
    from dnr_sweep.single_run import train_to_dir

    out = Path(args.out)
    if not args.resume and (out / "checkpoint.pt").exists():
        raise UserError(f"{out}: already holds a run (checkpoint.pt); pass --resume or choose another --out")
    print(f"training {config.model.arch} on {config.data.dataset}: {config.dnr.pruning} pruning at density "
          f"{config.dnr.density:g}, {config.train.epochs} epochs -> {out}")  # fmt: skip
    try:
        final = train_to_dir(config, out, resume=args.resume)
    except KeyboardInterrupt:
        sets = "".join(f" --set {item}" for item in args.overrides)
        print(f"\ninterrupted; every finished epoch is in {out / 'checkpoint.pt'}. Continue with:\n"
              f"  dnr-sweep train {args.config} --out {out}{sets} --resume", file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    print(
        f"done: selected epoch {final['selected_epoch']}, test clean {final['clean_acc']:.2f}% "
        f"fgsm {final['fgsm_acc']:.2f}% pgd {final['pgd_acc']:.2f}% at {final['compression']:.2f}x "
        f"compression (density {final['density']:.4f})"
    )
    print(f"results: {out / 'metrics.json'}, model: {out / 'model.pt'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dnr_sweep.config import load_sweep_config

    config = load_sweep_config(args.config, args.overrides)  # fails fast, before Ray starts
    from dnr_sweep.data import check_available
    from trainables import sweep

    try:
        run_dir = sweep.plan_run_dir(config, storage=args.storage, name=args.name)
        check_available(config.data.dataset, root=config.data.root_path, download=config.data.download)
        sweep.start_ray(address=args.address, dashboard=not args.no_dashboard, dashboard_host=args.dashboard_host)
        sweep.check_resources_feasible(config)
        sweep.prepare_run_dir(run_dir, config_path=Path(args.config), overrides=args.overrides)
    except sweep.SweepError as exc:
        raise UserError(str(exc)) from None
    print(f"run folder: {run_dir}")
    outcome = sweep.fit(config, run_dir, restore=False)
    return _finish_sweep(outcome, config, report=not args.no_report)


def cmd_resume(args: argparse.Namespace) -> int:
    from trainables import sweep

    run_dir = Path(args.run_dir).expanduser().resolve()
    try:
        config = sweep.load_run_dir_config(run_dir)
        sweep.start_ray(address=args.address, dashboard=not args.no_dashboard, dashboard_host=args.dashboard_host)
        sweep.check_resources_feasible(config)
    except sweep.SweepError as exc:
        raise UserError(str(exc)) from None
    print(f"resuming {run_dir}")
    outcome = sweep.fit(config, run_dir, restore=True)
    return _finish_sweep(outcome, config, report=not args.no_report)


def _finish_sweep(outcome, config, *, report: bool) -> int:
    """Write results.parquet/epochs.parquet, print the summary, draw the report; the exit code."""
    import pandas as pd

    from reports.load import EPOCHS_FILE, RESULTS_FILE, rebuild_tables, write_parquet_atomic
    from reports.pareto import pareto_front
    from trainables.sweep import objectives

    run_dir = outcome.run_dir
    try:
        results, epochs = rebuild_tables(run_dir)
    except FileNotFoundError:  # no trial reported a single epoch
        results, epochs = pd.DataFrame(columns=["trial_id", "status", "early_stopped"]), pd.DataFrame()
    # a trial that failed before its first epoch left no result.json: it still gets its row
    missing = [t for t in outcome.statuses if t not in set(results["trial_id"])]
    if missing:
        rows = [{"trial_id": t, "status": outcome.statuses[t], "early_stopped": True, "epochs_completed": 0,
                 **outcome.configs.get(t, {})} for t in missing]  # fmt: skip
        results = pd.concat([results, pd.DataFrame(rows)], ignore_index=True).sort_values("trial_id", ignore_index=True)
        results["early_stopped"] = results["early_stopped"].astype(bool)
    if outcome.errors:
        results["error"] = results["trial_id"].map(outcome.errors)
    for trial_id, status in outcome.statuses.items():
        rows = results["trial_id"] == trial_id
        if status == "ERROR":
            results.loc[rows, "status"] = "ERROR"
        elif status == "TERMINATED":
            results.loc[rows & results["early_stopped"], "status"] = "EARLY_STOPPED"
    write_parquet_atomic(results, run_dir / RESULTS_FILE)
    if len(epochs):
        write_parquet_atomic(epochs, run_dir / EPOCHS_FILE)

    print(f"\nresults: {run_dir / RESULTS_FILE} ({len(results)} trials), {run_dir / EPOCHS_FILE}")
    finished = results[results["status"] == "TERMINATED"]
    columns = [c for c in config.search if c in results.columns]
    columns += [c for c in ("clean_acc", "fgsm_acc", "pgd_acc", "compression") if c in results.columns]
    if len(finished):
        metric, mode = config.tune.metric, config.tune.mode
        if metric in finished.columns:  # per-epoch metrics (val_*, loss) have no final column
            best = finished.sort_values(metric, ascending=mode == "min").iloc[0]
            print(f"best trial by {metric} ({mode}): {best['trial_id']}")
        goals = objectives(config) if len(objectives(config)) > 1 else {"pgd_acc": "max", "compression": "max"}
        front = pareto_front(finished, goals).rows
        print(f"Pareto set over {', '.join(f'{k} ({v})' for k, v in goals.items())}:")
        print(front[["trial_id", *columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if report and len(finished):
        from reports.build import build_report

        written = build_report(run_dir)
        figure = next((p for p in written if p.suffix == ".png"), None)
        print(f"report: {run_dir / 'report' / 'index.html'}" + (f" (figure: {figure})" if figure else ""))
    if outcome.errors:
        print(f"\n{len(outcome.errors)} trial(s) failed:", file=sys.stderr)
        for trial_id, error in outcome.errors.items():
            print(f"  {trial_id}: {error}", file=sys.stderr)
    if outcome.interrupted:
        print(f"\nthe sweep was interrupted; continue it with: dnr-sweep resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if outcome.errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    from reports.build import build_report

    objectives = None
    if args.objectives:
        objectives = {}
        for item in args.objectives.split(","):
            name, _, direction = item.partition(":")
            if direction not in ("max", "min"):
                raise UserError(f"--objectives: '{item}' must be NAME:max or NAME:min")
            objectives[name] = direction
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip()) if args.format else None
    y = tuple(c.strip() for c in args.y.split(",") if c.strip()) if args.y else None
    try:
        written = build_report(Path(args.run_dir), out_dir=args.out, formats=formats, x=args.x, y=y,
                               objectives=objectives, group_by=args.group_by)  # fmt: skip
    except ValueError as exc:
        raise UserError(f"{args.run_dir}: {exc}") from None
    for path in written:
        print(path)
    return 0


def _lazy(module: str):
    import importlib

    return importlib.import_module(module)


COMMANDS = {
    "validate": cmd_validate,
    "train": cmd_train,
    "run": cmd_run,
    "resume": cmd_resume,
    "report": cmd_report,
    "evaluate": lambda args: _lazy("dnr_sweep.evaluation_cli").run(args),
    "export": lambda args: _lazy("dnr_sweep.export_cli").run(args),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dnr_sweep.config import ConfigError

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, UserError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
