"""Table 2 of a finished run, and which differences between its methods are significant.

    python scripts/table2_significance.py RUN_DIR            # e.g. runs/digits_table2_...

Table 2's rows are the ones `dnr-sweep report` writes (the one chooser, `reports/chooser.py`:
validation chooses, matched compression, seeds aggregated). For every pair of methods and every
test accuracy, Welch's t-test over the chosen configurations' seeds (two-sided), with Holm's
correction over all the pairs and metrics of the table: a difference is called significant when
its corrected p-value is below 0.05. Prints Markdown (the table, the ordering, the tests).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from dnr_sweep.reports.chooser import choose_run  # noqa: E402
from dnr_sweep.reports.labels import METHOD_LABEL  # noqa: E402
from dnr_sweep.reports.load import load_run  # noqa: E402
from dnr_sweep.reports.methods import display_table2, table2  # noqa: E402
from dnr_sweep.reports.seeds import TRIAL_IDS  # noqa: E402

METRICS = {"clean_acc": "Clean", "fgsm_acc": "FGSM", "pgd_acc": "PGD"}
ALPHA = 0.05


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table of ``table``'s cells as text."""
    cells = table.astype(object).where(table.notna(), "-").astype(str)
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)])


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order."""
    order = sorted(range(len(pvalues)), key=lambda k: pvalues[k])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[k]))
        adjusted[k] = running
    return adjusted


def seed_values(run_dir: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Table 2 (as the report writes it) and, per method, its chosen configuration's trials."""
    run = load_run(run_dir)
    choice = choose_run(run.results, run.epochs, run.config)
    if choice.methods is None:
        raise SystemExit(f"{run_dir}: no method other than DNR finished; nothing to compare")
    trials = choice.selection.trials.set_index("trial_id")
    per_method = {str(row[METHOD_LABEL]): trials.loc[list(row[TRIAL_IDS])] for _, row in choice.methods.rows.iterrows()}
    return table2(choice.methods, choice.epochs), per_method


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    table, per_method = seed_values(args.run_dir)
    print(markdown(display_table2(table).drop(columns=["Configuration", "Trials"], errors="ignore")))
    print()
    for metric, name in METRICS.items():
        means = {label: rows[metric].mean() for label, rows in per_method.items()}
        order = sorted(means, key=lambda m: -means[m])
        print(f"- {name} ordering (test means): " + " > ".join(f"{m} {means[m]:.1f}" for m in order))
    tests = []
    for (a, rows_a), (b, rows_b) in itertools.combinations(per_method.items(), 2):
        for metric, name in METRICS.items():
            x, y = rows_a[metric].dropna().to_numpy(), rows_b[metric].dropna().to_numpy()
            p = float(stats.ttest_ind(x, y, equal_var=False).pvalue) if min(len(x), len(y)) > 1 else float("nan")
            tests.append((a, b, name, x.mean() - y.mean(), p))
    adjusted = holm([t[4] for t in tests])
    print(
        "\n| methods | metric | difference (points) | p (Welch) | p (Holm) | significant |\n|---|---|---|---|---|---|"
    )
    for (a, b, name, diff, p), q in zip(tests, adjusted, strict=True):
        print(f"| {a} vs {b} | {name} | {diff:+.1f} | {p:.3g} | {q:.3g} | {'yes' if q < ALPHA else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
