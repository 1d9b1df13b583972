"""``dnr-sweep validate CONFIG...``: check configs and print the resolved sweep; starts nothing.

A config is valid when its schema checks pass *and* its dry preparation does
(:func:`dnr_sweep.training.dry_run.check_sweep`: data sizes, model shapes, masks, report settings for the base
config and the extremes of every search dimension), so a config that validates can run.
"""

from __future__ import annotations

import argparse
import json
import sys

from dnr_sweep.cli._common import add_set
from dnr_sweep.foundation.errors import EXIT_USAGE, ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check configs and print the resolved sweep; starts nothing")
    p.add_argument("configs", nargs="+", metavar="CONFIG")
    p.add_argument("--json", action="store_true", help="print the resolved base config as one JSON object")
    add_set(p)


def run(args: argparse.Namespace) -> int:
    # lazy: loaded only when this command runs (cli/__init__ imports every command for --help)
    import yaml

    from dnr_sweep.config import load_sweep_config, to_yaml_dict
    from dnr_sweep.training.dry_run import check_sweep

    failures = 0
    for path in args.configs:
        try:
            config = load_sweep_config(path, args.overrides)
            check_sweep(config, path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            failures += 1
            continue
        if args.json:
            print(json.dumps(to_yaml_dict(config.base_run())))
            continue
        print(f"{path}: OK")
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
