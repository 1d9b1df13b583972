"""``dnr-sweep report RUN_DIR [RUN_DIR ...]``: Parquet tables, figures and tables from run folders; no Ray.

One run: its report (default ``RUN_DIR/report``). Several runs (``--labels a,b --out DIR``): one
figure and table set comparing them (:mod:`reports.compare`), refused when their numbers are not
comparable. A report folder is recognised by the manifest a report leaves (:mod:`reports.report_folder`):
without ``--force`` a report is drawn again only over the same report (a run's own ``report/``, or the same
runs compared); ``--force`` replaces an earlier report, and only the files its manifest lists.

Recovers what it can (:mod:`reports.load`): tables missing or unreadable are rebuilt from the trials'
``result.json`` (an unreadable one is moved aside), a truncated ``result.json`` line is skipped; each
recovery prints a ``warning:`` line. The settings (flags, else the config's ``report:`` block) are
checked against the run's columns before anything is drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dnr_sweep.foundation import storage
from dnr_sweep.foundation.errors import UserError
from dnr_sweep.foundation.files import output_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="Parquet + figures + tables from run folders; several runs: a comparison")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default=None, metavar="DIR", help="default RUN_DIR/report; required to compare runs")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier report in --out (only the files its manifest lists); without it --out must "
                        "be new, empty, or hold this same report")  # fmt: skip
    p.add_argument("--labels", default=None, help="comparing runs: one label per run, e.g. searched,defaults")
    p.add_argument(
        "--format", default=None, help="comma-separated: pdf,png,svg (default from the config, else pdf,png)"
    )
    p.add_argument("--x", default=None, help="x axis column (default from the config's report block)")
    p.add_argument("--y", default=None, help="comma-separated accuracy columns, e.g. clean_acc,pgd_acc")
    p.add_argument("--group-by", default=None, help="column that colours the figures (default dnr.pruning)")
    p.add_argument("--objectives", default=None, help="e.g. pgd_acc:max,compression:max")
    p.add_argument("--table2-compression", type=float, default=None, metavar="X",
                   help="Table 2's reference compression: each method at its best configuration within +-10%% of "
                        "it (default: report.table2_compression, else DNR's chosen configuration's)")  # fmt: skip


def _objectives(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    objectives = {}
    for item in text.split(","):
        name, _, direction = item.partition(":")
        if direction not in ("max", "min") or not name.strip():
            raise UserError(f"--objectives: '{item}' must be NAME:max or NAME:min")
        objectives[name.strip()] = direction
    return objectives


def _items(text: str | None) -> tuple[str, ...] | None:
    return tuple(item.strip() for item in text.split(",") if item.strip()) if text else None


def check_settings(run_dir: Path, **flags) -> None:
    """The report settings (flags over the config's ``report:`` block) name columns the run has."""
    # lazy: the reports pull pandas (and matplotlib); --help and the other commands stay light
    from dnr_sweep.reports.load import flatten, load_run
    from dnr_sweep.reports.settings import resolve_settings

    run = load_run(run_dir)
    try:
        settings = resolve_settings(run.config, **flags)
    except ValueError as exc:
        raise UserError(f"{run_dir}: report settings: {exc}") from None
    columns = set(run.results.columns)
    constants = set(flatten({k: v for k, v in run.config.items() if k not in ("search", "report")}))
    accuracies = sorted(c for c in columns if c.endswith("_acc"))
    wanted = {"x": [settings.x], "y": list(settings.y), "objectives": list(settings.objectives or {})}
    for name, values in wanted.items():
        missing = [v for v in values if v not in columns]
        if missing:
            hint = f"accuracy columns: {', '.join(accuracies)}" if name == "y" else "e.g. compression, density"
            raise UserError(f"{run_dir}: report {name}: no trial reports {', '.join(map(repr, missing))} ({hint}); "
                            f"pass --{name} or fix report.{name} in its config.yaml")  # fmt: skip
    named = flags.get("group_by") or (run.config.get("report") or {}).get("group_by")  # the default may be absent
    if named and settings.group_by not in columns | constants:
        raise UserError(f"{run_dir}: report group_by: {settings.group_by!r} is neither a column nor a config field; "
                        "e.g. --group-by dnr.pruning")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dnr_sweep.reports.build import build_report  # lazy: pandas and matplotlib, as above

    for text in args.run_dirs:
        if not text.strip():
            raise UserError("RUN_DIR '': an empty path; pass the run folder `dnr-sweep run` printed")
    out = None if args.out is None else output_folder(args.out, "--out")
    flags = {"formats": _items(args.format), "x": args.x, "y": _items(args.y),
             "objectives": _objectives(args.objectives), "group_by": args.group_by,
             "table2_compression": args.table2_compression}  # fmt: skip
    if len(args.run_dirs) > 1:
        return _compare(args, out, flags)
    if args.labels is not None:
        raise UserError(
            "--labels: only for comparing several runs (dnr-sweep report RUN_A RUN_B --labels a,b --out DIR)"
        )
    location = storage.locate(args.run_dirs[0], what="RUN_DIR")  # a folder or a URI (s3://...)
    with storage.staged(location) as folder:  # remote: the small files, copied here and back
        check_settings(folder, **flags)
        try:
            written = build_report(folder, out_dir=out, force=args.force, **flags)
        except ValueError as exc:  # the reports' own refusals (settings, an empty table)
            raise UserError(f"{args.run_dirs[0]}: {exc}") from None
    for path in written:
        inside = location.local is None and Path(path).is_relative_to(folder)
        print(location / Path(path).relative_to(folder).as_posix() if inside else path)
    return 0


def _compare(args: argparse.Namespace, out: Path | None, flags: dict) -> int:
    from dnr_sweep.reports.compare import compare, parse_labels, write_comparison  # lazy: as above

    if out is None:
        raise UserError(
            "--out: comparing runs writes a new report folder; name it, e.g. --out compare/searched_vs_defaults"
        )
    paths = [Path(p) for p in args.run_dirs]
    if len({p.resolve() for p in paths}) != len(paths):
        raise UserError("RUN_DIR: the same run folder is given twice; compare different runs")
    formats = flags.pop("formats")
    try:
        labels = parse_labels(args.labels, len(paths))
        comparison = compare(paths, labels=labels, **flags)
        written = write_comparison(comparison, out, formats=formats, force=args.force)
    except (ValueError, FileNotFoundError) as exc:  # incomparable runs, bad settings, missing runs
        raise UserError(f"report: {exc}") from None
    for path in written:
        print(path)
    return 0
