"""``dnr-sweep report RUN_DIR``: Parquet tables, figures and tables from a run folder; needs no Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

from dnr_sweep.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="Parquet + figures + tables from a run directory (no Ray needed)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", default=None, metavar="DIR", help="default RUN_DIR/report")
    p.add_argument("--format", default=None, help="comma-separated: pdf,png,svg (default from the config, else pdf,png)")
    p.add_argument("--x", default=None, help="x axis column (default from the config's report block)")
    p.add_argument("--y", default=None, help="comma-separated accuracy columns, e.g. clean_acc,pgd_acc")
    p.add_argument("--group-by", default=None, help="column that colours the figures (default dnr.pruning)")
    p.add_argument("--objectives", default=None, help="e.g. pgd_acc:max,compression:max")


def _objectives(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    objectives = {}
    for item in text.split(","):
        name, _, direction = item.partition(":")
        if direction not in ("max", "min"):
            raise UserError(f"--objectives: '{item}' must be NAME:max or NAME:min")
        objectives[name] = direction
    return objectives


def _items(text: str | None) -> tuple[str, ...] | None:
    return tuple(item.strip() for item in text.split(",") if item.strip()) if text else None


def run(args: argparse.Namespace) -> int:
    from dnr_sweep import storage
    from reports.build import build_report

    location = storage.locate(args.run_dir, what="RUN_DIR")  # a folder or a URI (s3://...)
    try:
        with storage.staged(location) as folder:  # remote: the small files, copied here and back
            written = build_report(folder, out_dir=args.out, formats=_items(args.format), x=args.x,
                                   y=_items(args.y), objectives=_objectives(args.objectives),
                                   group_by=args.group_by)  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(f"{args.run_dir}: {exc}") from None
    for path in written:
        inside = location.local is None and Path(path).is_relative_to(folder)
        print(location / Path(path).relative_to(folder).as_posix() if inside else path)
    return 0
