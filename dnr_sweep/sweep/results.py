"""After ``Tuner.fit``: the sweep's ``results.parquet``/``epochs.parquet``, its summary and its report.

The summary prints the report's own choice (:func:`dnr_sweep.reports.chooser.choose_run` on the run
folder's files, settings from its ``config.yaml``): the rows of ``report/pareto.csv``, Table 2's when
methods other than DNR ran, and the best configuration by ``tune.metric``.

Tables are rebuilt from the trials' Tune results (:func:`reports.load.rebuild_tables`), then every
trial the experiment knows gets a row, even one that failed before its first epoch, with Tune's
status (``ERROR``, ``EARLY_STOPPED`` for trials a scheduler stopped) and its error's last line.
On remote storage (``s3://...``) the run folder's small files are staged in a local folder
(:func:`dnr_sweep.foundation.storage.staged`) and what is written there goes back through ``pyarrow.fs``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dnr_sweep.config import SweepConfig
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import storage
from dnr_sweep.foundation.files import atomic_write_handle
from dnr_sweep.reports import methods as method_report
from dnr_sweep.reports.chooser import best_configuration, choose_run, finished_mask
from dnr_sweep.reports.load import load_run, rebuild_tables, write_parquet_atomic
from dnr_sweep.reports.tables import display_table, pareto_table


@dataclass
class SweepSummary:
    """What the command line prints after a sweep (one string per line)."""

    lines: list[str] = field(default_factory=list)


def assemble_tables(outcome: Any, folder: Path | None = None) -> tuple[Any, Any]:
    """``(results, epochs)`` of a sweep: one results row per trial the experiment knows, with Tune's
    status (``RUNNING``/``PENDING`` while it runs; ``ERROR``; ``EARLY_STOPPED`` for trials a
    scheduler stopped) and each failure's error line. ``outcome`` is a :class:`SweepOutcome` (or any
    object with ``run_dir``, ``statuses``, ``configs`` and ``errors``); ``folder``: a local copy of
    the run folder (default: the run folder, when it is local)."""
    try:
        results, epochs = rebuild_tables(folder if folder is not None else outcome.run_dir.local)
    except FileNotFoundError:  # no trial reported a single epoch
        results, epochs = pd.DataFrame(columns=["trial_id", "status", "early_stopped"]), pd.DataFrame()
    # a trial that failed (or waits) before its first epoch left no result.json: it still gets its row
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
        if status == "TERMINATED":  # Tune also marks the trials a Ctrl-C stopped TERMINATED
            stopped = "INTERRUPTED" if getattr(outcome, "interrupted", False) else "EARLY_STOPPED"
            results.loc[rows & results["early_stopped"], "status"] = stopped
        else:  # ERROR, and while the sweep runs: RUNNING, PENDING, PAUSED
            results.loc[rows, "status"] = status
    return results, epochs


def summary_lines(
    results: Any, epochs: Any, config: Mapping[str, Any], *, metric: str | None = None, mode: str = "max"
) -> list[str]:
    """What the terminal prints about a run's results: the chooser's fronts and dense baseline (the rows of
    ``report/pareto.csv``), Table 2's rows when methods other than DNR ran, and the best configuration by
    ``metric`` (``tune.metric``), all from :func:`dnr_sweep.reports.chooser.choose_run` with the run's
    ``config.yaml`` (``config``, as a mapping: its ``report:`` settings resolved as the report's are)."""
    if not finished_mask(results).any():
        return ["no trial finished: no Pareto set"]
    choice = choose_run(results, epochs, config)
    selection = choice.selection
    shown = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"Pareto set per pruning type ({rc.REPORT_DIR}/pareto.csv): {selection.protocol.chosen()} "
             f"(objectives: {selection.chosen_on_text}):",
             display_table(pareto_table(selection)).to_string(index=False, na_rep="-", float_format=shown)]  # fmt: skip
    if choice.methods is not None:
        table = method_report.display_table2(method_report.table2(choice.methods, choice.epochs))
        lines += [f"Table 2 ({rc.REPORT_DIR}/table2.csv): {method_report.caption(choice.methods)}",
                  table.to_string(index=False, na_rep="-", float_format=shown)]  # fmt: skip
    if metric is not None and mode in ("max", "min"):
        try:
            best = best_configuration(selection, metric, mode)  # type: ignore[arg-type]
        except ValueError:  # a figure of the other split: chosen on nothing here
            best = None
        if best is not None:
            seeds = f" ({int(best['n_seeds'])} seeds)" if best["n_seeds"] > 1 else ""
            lines.append(f"best configuration by {metric} ({mode}): {' '.join(best['trial_ids'])}{seeds}")
    return lines


def finish_sweep(outcome: Any, config: SweepConfig, *, report: bool) -> SweepSummary:
    """Write the run's tables (atomically), summarise them and draw the report when asked."""
    with storage.staged(outcome.run_dir) as folder:
        return _finish_in(folder, outcome, config, report=report)


def _finish_in(folder: Path, outcome: Any, config: SweepConfig, *, report: bool) -> SweepSummary:
    run_dir = outcome.run_dir  # as the user named it (printed); files go to `folder`
    results, epochs = assemble_tables(outcome, folder)
    write_parquet_atomic(results, folder / rc.RESULTS_FILE)
    if len(epochs):
        write_parquet_atomic(epochs, folder / rc.EPOCHS_FILE)
    _write_driver_end(folder, interrupted=bool(outcome.interrupted))

    summary = SweepSummary(
        [f"\nresults: {run_dir / rc.RESULTS_FILE} ({len(results)} trials), {run_dir / rc.EPOCHS_FILE}"]
    )
    finished = bool(finished_mask(results).any())
    if finished:
        try:  # the report's own choice, from the run folder's files as `dnr-sweep report` reads them
            run = load_run(folder)
            summary.lines += summary_lines(run.results, run.epochs, run.config, metric=config.tune.metric,
                                           mode=config.tune.mode)  # fmt: skip
        except (ValueError, FileNotFoundError) as exc:  # the results are safe; only the summary failed
            summary.lines.append(f"Pareto set: not chosen ({exc})")
    if report and finished:
        from dnr_sweep.reports.build import build_report  # lazy: matplotlib only when the report is drawn

        try:
            written = build_report(folder)
        except ValueError as exc:  # the results are safe; only the drawing failed
            summary.lines.append(f"report: not drawn ({exc}); the results are complete: fix the report settings "
                                 f"and draw it with `dnr-sweep report {run_dir}`")  # fmt: skip
        else:
            figure = next((p for p in written if p.suffix == ".png"), None)
            index = run_dir / rc.REPORT_DIR / "index.html"
            if figure is not None:
                figure = run_dir / figure.relative_to(folder).as_posix()
            summary.lines.append(f"report: {index}" + (f" (figure: {figure})" if figure else ""))
    return summary


def _write_driver_end(folder: Path, *, interrupted: bool) -> None:
    """``driver_end.json``: this session of the driver is over (``dnr-sweep status`` reads it, not the tables'
    age: the live report rewrites those while trials train)."""
    text = json.dumps({"ended": time.time(), "interrupted": interrupted})
    atomic_write_handle(folder / rc.DRIVER_END_FILE, lambda handle: handle.write(text.encode()))
