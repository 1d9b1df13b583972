"""After ``Tuner.fit``: the sweep's ``results.parquet``/``epochs.parquet``, its summary and its report.

Tables are rebuilt from the trials' Tune results (:func:`reports.load.rebuild_tables`), then every
trial the experiment knows gets a row, even one that failed before its first epoch, with Tune's
status (``ERROR``, ``EARLY_STOPPED`` for trials a scheduler stopped) and its error's last line.
On remote storage (``s3://...``) the run folder's small files are staged in a local folder
(:func:`dnr_sweep.foundation.storage.staged`) and what is written there goes back through ``pyarrow.fs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnr_sweep.config import SweepConfig
from dnr_sweep.foundation import run_contract as rc


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
    import pandas as pd

    from dnr_sweep.reports.load import rebuild_tables

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


def summary_objectives(config: SweepConfig) -> dict[str, str]:
    """What the printed Pareto set is chosen on: the searcher's objectives, else the selection split's
    PGD accuracy and the compression. Never a test figure, unless the run selects on test."""
    from dnr_sweep.sweep.search import objectives

    goals = objectives(config)
    if len(goals) > 1:
        return goals
    pgd = rc.selection_metrics(config.train.select_on)[2]
    return {pgd: "max", "compression": "max"}


def finish_sweep(outcome: Any, config: SweepConfig, *, report: bool) -> SweepSummary:
    """Write the run's tables (atomically), summarise them and draw the report when asked."""
    from dnr_sweep.foundation import storage

    with storage.staged(outcome.run_dir) as folder:
        return _finish_in(folder, outcome, config, report=report)


def _finish_in(folder: Path, outcome: Any, config: SweepConfig, *, report: bool) -> SweepSummary:
    from dnr_sweep.reports.load import write_parquet_atomic
    from dnr_sweep.reports.pareto import pareto_front

    run_dir = outcome.run_dir  # as the user named it (printed); files go to `folder`
    results, epochs = assemble_tables(outcome, folder)
    write_parquet_atomic(results, folder / rc.RESULTS_FILE)
    if len(epochs):
        write_parquet_atomic(epochs, folder / rc.EPOCHS_FILE)
    _write_driver_end(folder, interrupted=bool(outcome.interrupted))

    summary = SweepSummary(
        [f"\nresults: {run_dir / rc.RESULTS_FILE} ({len(results)} trials), {run_dir / rc.EPOCHS_FILE}"]
    )
    finished = results[results["status"] == "TERMINATED"]
    split = config.train.select_on
    chosen = "validation" if split == "val" else "test (the paper's protocol)"
    if len(finished):
        metric, mode = config.tune.metric, config.tune.mode
        if metric is not None and metric in finished.columns:
            best = finished.sort_values(metric, ascending=mode == "min").iloc[0]
            summary.lines.append(f"best trial by {metric} ({mode}): {best['trial_id']}")
        goals = summary_objectives(config)
        front = pareto_front(finished, goals).rows
        columns = [c for c in config.search if c in results.columns]
        columns += [c for c in (*goals, *rc.TEST_METRICS) if c in results.columns and c not in columns]
        summary.lines.append(
            f"Pareto set over {', '.join(f'{k} ({v})' for k, v in goals.items())}, chosen on {chosen}; "
            "test accuracy shown (clean_acc, fgsm_acc, pgd_acc):"
        )
        summary.lines.append(front[["trial_id", *columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if report and len(finished):
        from dnr_sweep.reports.build import build_report

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
    import json
    import time

    from dnr_sweep.foundation.files import atomic_write_handle

    text = json.dumps({"ended": time.time(), "interrupted": interrupted})
    atomic_write_handle(folder / rc.DRIVER_END_FILE, lambda handle: handle.write(text.encode()))
