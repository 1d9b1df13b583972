"""CPU mini-reproduction of the DNR paper's trends on digits (search_spaces/digits_trends.yaml).

    python scripts/digits_trends.py                 # run the sweep, print the table, record it
    python scripts/digits_trends.py --run-dir DIR   # analyse an existing run only

Prints a Markdown table (trend, evidence, holds?) and, with --record, appends it to
docs/REPRODUCE.md with the date and machine. A trend that does not hold is reported as such:
the table is evidence, not a target.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dnr_sweep.reports.load import load, load_epochs  # noqa: E402

CONFIG = REPO / "search_spaces" / "digits_trends.yaml"
TOLERANCE_PP = 1.0  # accuracy points allowed for sampling noise in the monotonicity checks


def run_sweep(storage: Path, name: str) -> Path:
    cmd = [sys.executable, "-m", "dnr_sweep.cli", "run", str(CONFIG), "--storage", str(storage), "--name", name,
           "--no-dashboard"]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "RAY_AIR_NEW_OUTPUT": "0"})
    return storage / name


def _mean(df: pd.DataFrame, by: list[str], column: str) -> pd.Series:
    return df.groupby(by)[column].mean()


def analyse(run_dir: Path) -> list[tuple[str, str, bool]]:
    results = load(run_dir)
    epochs = load_epochs(run_dir)
    done = results[results["status"] == "TERMINATED"].copy()
    rows: list[tuple[str, str, bool]] = []

    # 1. density met: the mask density at the selected epoch vs the target
    selected = epochs.merge(done[["trial_id", "selected_epoch"]], left_on=["trial_id", "epoch"],
                            right_on=["trial_id", "selected_epoch"])  # fmt: skip
    gaps = (selected["mask_density"] - selected["dnr.density"]).abs().groupby(selected["dnr.pruning"]).max()
    ok = bool(gaps.get("irregular", 0) < 1e-3 and gaps.get("channel", 0) < 0.02)
    rows.append(("1. target density met at every density (mask density at the selected epoch)",
                 ", ".join(f"{k}: max gap {v:.4f}" for k, v in gaps.items()), ok))  # fmt: skip

    # 2. irregular >= channel at equal (target) density, beta 0.5, mean over seeds
    hybrid = done[(done["dnr.beta"] == 0.5) & (done["dnr.density"] < 1.0)]
    table = hybrid.groupby(["dnr.density", "dnr.pruning"])[["compression", "clean_acc", "pgd_acc"]].mean().unstack()
    evidence, holds = [], True
    for density in table.index:
        irr_c, ch_c = table.loc[density, ("clean_acc", "irregular")], table.loc[density, ("clean_acc", "channel")]
        irr_p, ch_p = table.loc[density, ("pgd_acc", "irregular")], table.loc[density, ("pgd_acc", "channel")]
        comp = table.loc[density, ("compression", "irregular")], table.loc[density, ("compression", "channel")]
        evidence.append(f"d={density:g} ({comp[0]:.1f}x/{comp[1]:.1f}x): clean {irr_c:.1f} vs {ch_c:.1f}, "
                        f"PGD {irr_p:.1f} vs {ch_p:.1f}")  # fmt: skip
        holds &= bool(irr_c >= ch_c - TOLERANCE_PP and irr_p >= ch_p - TOLERANCE_PP)
    rows.append(("2. irregular >= channel at equal density (irregular vs channel, beta 0.5)",
                 "; ".join(evidence), holds))  # fmt: skip

    # 3. PGD accuracy falls with steps and eps (every trial's curves, within the tolerance)
    monotone_steps = monotone_eps = total = 0
    for folder in run_dir.glob("*/attack_strength.json"):
        curves = json.loads(folder.read_text())
        steps = [curves["steps"][k] for k in sorted(curves["steps"], key=int)]
        eps = [curves["eps"][k] for k in sorted(curves["eps"], key=float)]
        monotone_steps += all(b <= a + TOLERANCE_PP for a, b in zip(steps, steps[1:], strict=False))
        monotone_eps += all(b <= a + TOLERANCE_PP for a, b in zip(eps, eps[1:], strict=False))
        total += 1
    rows.append(("3. PGD accuracy falls as steps (1-50) and eps (0.025-0.3) grow",
                 f"non-increasing in steps for {monotone_steps}/{total} models, in eps for {monotone_eps}/{total}",
                 bool(total and monotone_steps == total and monotone_eps == total)))  # fmt: skip

    # 4a. dense >= most compressed (clean and PGD, beta 0.5, mean over seeds and pruning types)
    hybrid_all = done[done["dnr.beta"] == 0.5]
    dense = hybrid_all[hybrid_all["dnr.density"] == 1.0][["clean_acc", "pgd_acc"]].mean()
    sparsest = hybrid_all[hybrid_all["dnr.density"] == hybrid_all["dnr.density"].min()][["clean_acc", "pgd_acc"]].mean()
    rows.append(("4a. dense baseline >= most compressed models (beta 0.5)",
                 f"clean {dense['clean_acc']:.1f} vs {sparsest['clean_acc']:.1f}, "
                 f"PGD {dense['pgd_acc']:.1f} vs {sparsest['pgd_acc']:.1f}",
                 bool(dense["clean_acc"] >= sparsest["clean_acc"] and dense["pgd_acc"] >= sparsest["pgd_acc"])))  # fmt: skip

    # 4b. DNR (beta 0.5) more robust than DNR-C (beta 1) under PGD, per density and pruning type
    by_beta = done.groupby(["dnr.pruning", "dnr.density", "dnr.beta"])["pgd_acc"].mean().unstack()
    wins = int((by_beta[0.5] > by_beta[1.0]).sum())
    rows.append(("4b. PGD accuracy: DNR (beta 0.5) > DNR-C (beta 1)",
                 f"higher in {wins}/{len(by_beta)} (pruning, density) cells; mean {by_beta[0.5].mean():.1f} vs "
                 f"{by_beta[1.0].mean():.1f}", wins == len(by_beta)))  # fmt: skip
    return rows


def markdown(rows: list[tuple[str, str, bool]], run_dir: Path) -> str:
    lines = ["| trend | evidence (means over 3 seeds) | holds |", "|---|---|---|"]
    lines += [f"| {trend} | {evidence} | {'yes' if ok else '**no**'} |" for trend, evidence, ok in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="analyse this run folder instead of running the sweep")
    parser.add_argument("--storage", type=Path, default=REPO / "runs")
    parser.add_argument("--record", action="store_true", help="append the table to docs/REPRODUCE.md")
    args = parser.parse_args()
    run_dir = args.run_dir or run_sweep(args.storage, f"digits_trends_{datetime.datetime.now():%Y%m%d-%H%M%S}")
    rows = analyse(run_dir)
    table = markdown(rows, run_dir)
    print(table)
    if args.record:
        stamp = (f"\n### Recorded {datetime.date.today().isoformat()} on {platform.platform()}, "
                 f"{os.cpu_count()} CPU cores (run folder `{run_dir.name}`)\n\n")  # fmt: skip
        with open(REPO / "docs" / "REPRODUCE.md", "a") as handle:
            handle.write(stamp + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
