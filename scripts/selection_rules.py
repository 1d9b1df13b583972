"""Evidence for the selection rule: what each candidate rule would choose, and what that costs on test.

    python scripts/selection_rules.py                       # digits_table2, seeds 0-4, print the tables
    python scripts/selection_rules.py --seeds 0 1 --jobs 2  # fewer seeds, two processes
    python scripts/selection_rules.py --from rules.json     # analyse recorded epochs only

Every (method, seed) of ``search_spaces/digits_table2.yaml`` is trained once, in process, without
Ray. After each epoch the validation split is evaluated as the engine does (robust figures every
epoch) and, **for this study only**, the test split too: the study asks how well a rule that looks
only at validation figures does on test, so it needs test figures it never lets a rule see. Each
rule then picks one epoch per run from the validation columns; the tables show the test accuracy
of the picked epochs (mean and 95% CI over seeds), how far that is below the best test epoch the
rule could have picked (regret), and which methods each rule ranks first.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CONFIG = REPO / "search_spaces" / "digits_table2.yaml"
METHODS = ("dnr", "admm", "lasso", "hydra")


def train_one(method: str, seed: int, config_path: str, overrides: list[str]) -> list[dict]:
    """Train one run and return one row per epoch: phase, validation figures and (study only) test figures."""
    import torch

    from dnr_sweep.config.load import load_sweep_config, run_config_from_flat
    from dnr_sweep.training.engine import TrainingRun

    torch.set_num_threads(1)
    sweep = load_sweep_config(config_path, overrides)
    config = run_config_from_flat(sweep.base_run(), {"method": method, "train.seed": seed, "train.eval_every": 1})
    run = TrainingRun(config)
    final_phase = run.method.phases()[-1].name
    rows = []
    while not run.finished:
        report = run.train_epoch()
        test = run.evaluate(run.test_loader, robust=True)  # never read by a rule: the study's outcome only
        m = report.metrics
        rows.append({
            "method": method, "seed": seed, "epoch": report.epoch, "phase": m["phase"],
            "final_phase": m["phase"] == final_phase, "density": m["density"], "compression": m["compression"],
            "val_clean": m["val_clean_acc"], "val_fgsm": m["val_fgsm_acc"], "val_pgd": m["val_pgd_acc"],
            "test_clean": test["clean"], "test_fgsm": test["fgsm"], "test_pgd": test["pgd"],
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------- the rules

Rule = Callable[[pd.DataFrame], int]


def _best(epochs: pd.DataFrame, keys: list[str], later_wins: bool) -> int:
    """The epoch with the lexicographically largest ``keys``; full ties to the later (or the earlier) epoch."""
    order = epochs.sort_values([*keys, "epoch"], ascending=[False] * len(keys) + [not later_wins], kind="mergesort")
    return int(order.iloc[0]["epoch"])


RULES: dict[str, tuple[str, Rule]] = {
    "old": ("first best val_clean, any epoch for DNR, final phase for baselines",
            lambda e: _best(e if e["method"].iloc[0] == "dnr" else e[e["final_phase"]], ["val_clean"], False)),
    "last": ("last epoch", lambda e: int(e["epoch"].max())),
    "clean": ("best val_clean, final phase, ties: val_pgd then later",
              lambda e: _best(e[e["final_phase"]], ["val_clean", "val_pgd"], True)),
    "pgd": ("best val_pgd, final phase, ties: val_clean then later",
            lambda e: _best(e[e["final_phase"]], ["val_pgd", "val_clean"], True)),
    "sum": ("best val_clean + val_pgd, final phase, ties: val_pgd then later",
            lambda e: _best(e[e["final_phase"]].assign(s=lambda d: d["val_clean"] + d["val_pgd"]), ["s", "val_pgd"],
                            True)),
}  # fmt: skip


def t_ci(values: np.ndarray) -> float:
    from scipy import stats

    n = len(values)
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def analyse(epochs: pd.DataFrame) -> str:
    """Markdown: per rule and method, test clean/PGD of the picked epochs, regret, picked epochs, ranking."""
    lines = ["| rule | method | picked epochs (per seed) | test clean | test PGD | PGD regret |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    ranking = []
    for rule, (_, pick) in RULES.items():
        means = {}
        for method in [m for m in METHODS if m in set(epochs["method"])]:
            picked, clean, pgd, regret = [], [], [], []
            for _, run in epochs[epochs["method"] == method].groupby("seed"):
                epoch = pick(run)
                row = run[run["epoch"] == epoch].iloc[0]
                picked.append(epoch)
                clean.append(row["test_clean"])
                pgd.append(row["test_pgd"])
                regret.append(run[run["final_phase"]]["test_pgd"].max() - row["test_pgd"])
            c, p, r = np.array(clean), np.array(pgd), np.array(regret)
            means[method] = (c.mean(), p.mean())
            lines.append(f"| {rule} | {method} | {', '.join(map(str, picked))} | {c.mean():.1f} ± {t_ci(c):.1f} | "
                         f"{p.mean():.1f} ± {t_ci(p):.1f} | {r.mean():.1f} |")  # fmt: skip
        order = sorted(means, key=lambda m: -means[m][1])
        ranking.append(f"| {rule} | {' > '.join(order)} | {RULES[rule][0]} |")
    return "\n".join([*lines, "", "| rule | PGD ranking (test means) | rule |", "|---|---|---|", *ranking])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="config override k=v")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the epoch rows as JSON here")
    parser.add_argument("--from", dest="source", type=Path, help="analyse recorded epoch rows only")
    args = parser.parse_args(argv)
    if args.source:
        rows = json.loads(args.source.read_text())
    else:
        jobs = [(m, s, args.config, args.overrides) for m in args.methods for s in args.seeds]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = [row for result in pool.map(train_one, *zip(*jobs, strict=True)) for row in result]
        if args.out:
            args.out.write_text(json.dumps(rows))
    print(analyse(pd.DataFrame(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
