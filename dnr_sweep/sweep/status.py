"""``dnr-sweep status RUN_DIR``: where a sweep stands, from its run folder's files alone (no Ray, no torch,
nothing unpickled); ``--json`` prints :meth:`SweepStatus.to_json`. docs/WATCHING.md describes the screen.

Sources, all optional but ``config.yaml``: ``sweep.json`` (the ``--set`` overrides); Tune's newest
``experiment_state-*.json``, read as JSON (trials, Tune status, folders, sampled values; the driver rewrites
it about every 10 s, so its age says whether the sweep runs); each trial's ``result.json`` (through
:mod:`dnr_sweep.reports.trial_files`) and ``error.txt``; ``results.parquet`` and ``driver_end.json`` once
the driver ended (only that mark says so). A damaged part is left out with a note naming file and field.

Trial states: ``finished``, ``early_stopped``, ``errored``, ``running``, ``interrupted``, ``pending``, and
``not_started`` for grid trials still to come; phases: ``starting``, ``running``, ``finished``,
``interrupted``. A trial known only from ``results.parquet`` is finished as
:func:`dnr_sweep.reports.chooser.finished_mask` decides. "Best so far" reads validation figures only.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from dnr_sweep.config import RunConfig, SweepConfig, load_sweep_config
from dnr_sweep.config.load import run_config_from_flat
from dnr_sweep.foundation import reader
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import ConfigError, UserError
from dnr_sweep.foundation.schemas import DriverEnd, SweepFile
from dnr_sweep.foundation.tune_schemas import ExperimentState
from dnr_sweep.reports.chooser import finished_mask
from dnr_sweep.reports.trial_files import first_trial_id, read_params, read_result_lines

#: the driver rewrites Tune's experiment state about every 10 s; silence this long means it stopped
STALE_AFTER_S = 300.0
#: epoch time of a trial = mean of its last this many epochs (warm-up epochs are faster)
RECENT_EPOCHS = 3

#: the note :func:`read_tune_state` gives for a state file it cannot read
UNREADABLE_STATE = "unreadable Tune state"

TRIAL_STATES = ("running", "finished", "early_stopped", "errored", "interrupted", "pending")


@dataclass
class TrialStatus:
    """One trial as its files describe it; figures are its selected epoch's (validation)."""

    trial_id: str
    state: str
    params: dict[str, Any]
    pruning: str | None
    epochs_done: int
    epochs_total: int | None
    selected_epoch: int | None = None
    val_clean_acc: float | None = None
    val_pgd_acc: float | None = None
    density: float | None = None
    epoch_time_s: float | None = None  # mean of the recent epochs' this_epoch/epoch_time_s
    failures: int = 0
    error: str | None = None
    folder: str | None = None


@dataclass
class Best:
    value: float
    trial_id: str
    epoch: int | None


@dataclass
class SweepStatus:
    """The whole sweep; ``to_json()`` is what ``dnr-sweep status --json`` prints."""

    run_dir: str
    name: str | None
    phase: str
    live: bool
    started: float | None
    last_update: float | None
    elapsed_s: float | None
    trials_total: int | None
    counts: dict[str, int]
    trials: list[TrialStatus]
    best: dict[str, dict[str, Best | None]]  # pruning -> metric -> best
    eta_s: float | None
    eta: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    resume_command: str | None = None
    now: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("now")
        out["last_update_age_s"] = None if self.last_update is None else self.now - self.last_update
        return _json_safe(out)


# ------------------------------------------------------------------------------------------------
# Reading the files


def error_summary(text: str) -> str:
    """The first line of the exception in Tune's ``error.txt`` (the last failure's).

    The file is ``Failure # N (occurred at ...)`` and a Python traceback per failure; the exception
    line is the first unindented line after the traceback's last ``File "..."`` frame.
    """
    lines = text.splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.lstrip().startswith('File "')), default=None)
    if last_frame is not None:
        for line in lines[last_frame + 1 :]:
            if line.strip() and not line[:1].isspace():
                return line.strip()
    tail = [line.strip() for line in lines if line.strip() and not line.startswith("Failure #")]
    return tail[-1] if tail else "failed (error.txt is empty)"


def _newest_state(run_dir: Path) -> Path | None:
    # Tune names them by session start (experiment_state-<YYYY-mm-dd_HH-MM-SS>.json) and restores
    # from the greatest name; a resumed sweep has one per session
    found = sorted(run_dir.glob(rc.TUNE_STATE_GLOB))
    return found[-1] if found else None


@dataclass
class _TuneTrial:
    trial_id: str
    status: str
    folder: str | None
    config: dict[str, Any]
    failures: int
    start_time: float | None


def read_tune_state(path: Path) -> tuple[list[_TuneTrial], float | None, list[str]]:
    """Tune's experiment state as JSON (:class:`~dnr_sweep.foundation.tune_schemas.ExperimentState`): its
    trials, the session's start time, notes.

    Each ``trial_data`` entry is a pair of JSON texts (the trial, its run metadata); a field of the wrong type is
    left out (a trial without its id: the whole entry; its folder then lists it); fields Tune stored as
    hex-encoded pickles are never decoded.
    """
    unusable = f"{UNREADABLE_STATE}: trial states come from the trial folders"
    state, notes = reader.read_lenient(path, ExperimentState, unusable=unusable)
    if state is None:
        return [], None, notes
    trials = [
        _TuneTrial(
            trial_id=trial.trial_id,
            status=trial.status,
            folder=trial.relative_logdir,
            config=dict(trial.config),
            failures=meta.num_failures,
            start_time=meta.start_time,
        )  # fmt: skip
        for trial, meta in state.trial_data
    ]
    return trials, state.stats.start_time if state.stats is not None else None, notes


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _read_results_table(path: Path) -> list[dict[str, Any]]:
    """The driver's ``results.parquet`` rows, each with ``finished`` as the chooser decides it."""
    columns = ["trial_id", "status", "epochs_completed", "error"]
    table = pq.read_table(path)
    rows = table.select([c for c in columns if c in table.column_names]).to_pylist()
    flags = table.select([c for c in ("status", "early_stopped") if c in table.column_names]).to_pandas()
    finished = finished_mask(flags).tolist() if "status" in flags.columns else [False] * len(rows)
    return [{**row, "finished": done} for row, done in zip(rows, finished, strict=True)]


def _run_config(run_dir: Path, notes: list[str]) -> SweepConfig:
    """The sweep the folder was started with: ``config.yaml`` plus the ``--set`` overrides ``sweep.json`` saved
    (without them the sweep cannot be told: refused; its other fields, damaged, are a note)."""
    sweep_file = run_dir / rc.SWEEP_FILE
    overrides: list[str] = []
    if sweep_file.exists() or sweep_file.is_symlink():
        saved, file_notes = reader.read_lenient(sweep_file, SweepFile, unusable="the sweep cannot be told without it")
        if saved is None:
            problems = "; ".join(note.removeprefix(f"{sweep_file}: ") for note in file_notes)
            raise UserError(f"{sweep_file}: unreadable: {problems}. It should hold {{\"overrides\": [...]}} as "
                            '`dnr-sweep run` wrote it: restore it, or write {"overrides": []} there if the run used '
                            "no --set")  # fmt: skip
        notes += file_notes
        overrides = list(saved.overrides)
    return load_sweep_config(run_dir / rc.CONFIG_FILE, overrides)


# ------------------------------------------------------------------------------------------------
# From files to a status


def sweep_status(run_dir: str | Path, *, now: float | None = None, stale_after_s: float = STALE_AFTER_S) -> SweepStatus:
    """The status of the sweep in ``run_dir``; raises :class:`UserError` if it is not a run folder.

    ``now`` and ``stale_after_s`` (silence after which the driver counts as gone) are for tests.
    """
    run_dir = Path(run_dir).expanduser()
    now = time.time() if now is None else now
    state_path = _check_run_folder(run_dir)
    notes: list[str] = []
    config = _run_config(run_dir, notes)

    tune_trials: list[_TuneTrial] = []
    session_start = None
    state_time = None  # when the driver last saved a state we can read (a damaged file's age is no sign of life)
    if state_path is not None:
        tune_trials, session_start, state_notes = read_tune_state(state_path)
        notes += state_notes
        if not any(UNREADABLE_STATE in note for note in state_notes):
            state_time = _mtime(state_path)
    tune_trials += _unlisted_trials(run_dir, tune_trials, notes)
    results_path = run_dir / rc.RESULTS_FILE
    # the driver marks its end after Tune's last snapshot; a resumed sweep snapshots again (and drops the mark)
    ended = _driver_end(run_dir / rc.DRIVER_END_FILE, notes)
    driver_done = ended is not None and ended >= (state_time or -math.inf)
    results_written = _mtime(results_path) if driver_done else None
    results_rows: dict[str, dict[str, Any]] = {}
    if driver_done:
        try:
            results_rows = {str(r["trial_id"]): r for r in _read_results_table(results_path)}
        except Exception as exc:  # noqa: BLE001 - a damaged table must not hide the rest
            notes.append(f"{results_path}: unreadable ({type(exc).__name__}); statuses come from Tune's files")

    changed = [state_time, _mtime(run_dir / rc.CONFIG_FILE)]
    trial_lines: dict[str, list[dict[str, Any]]] = {}
    for trial in tune_trials:
        result_file = run_dir / trial.folder / rc.TUNE_RESULT_FILE if trial.folder else None
        if result_file is not None and result_file.exists():  # a folder in its place: a note
            changed.append(_mtime(result_file))
            trial_lines[trial.trial_id], line_notes = read_result_lines(result_file, tail=RECENT_EPOCHS)
            notes += line_notes
    last_update = max((t for t in changed if t is not None), default=None)
    live = not driver_done and last_update is not None and now - last_update <= stale_after_s

    trials = [_trial_status(t, trial_lines.get(t.trial_id, []), run_dir, config, live, results_rows.get(t.trial_id),
                            notes) for t in tune_trials]  # fmt: skip
    known = {t.trial_id for t in trials}
    trials += [
        _table_only_trial(trial_id, row, config) for trial_id, row in results_rows.items() if trial_id not in known
    ]
    trials.sort(key=lambda t: t.trial_id)

    counts = {state: sum(t.state == state for t in trials) for state in TRIAL_STATES}
    total = config.grid_size()
    counts["not_started"] = max(0, total - len(trials))
    phase, phase_notes = _phase(counts, live=live, snapshotted=state_path is not None or bool(trials),
                                silence=now - (last_update if last_update is not None else now))  # fmt: skip
    notes += phase_notes

    # `dnr-sweep run` copies config.yaml into the folder just before Tune starts
    starts = [session_start, *(t.start_time for t in tune_trials), _mtime(run_dir / rc.CONFIG_FILE)]
    started = min((s for s in starts if s is not None), default=None)
    end = now if live else ((ended if results_written is None else max(ended, results_written)) if driver_done
                            else last_update)  # fmt: skip
    elapsed = None if started is None or end is None else max(0.0, end - started)
    eta_s, eta = _eta(trials, counts["not_started"], config, live)
    return SweepStatus(
        run_dir=str(run_dir), name=config.name, phase=phase, live=live, started=started, last_update=last_update,
        elapsed_s=elapsed, trials_total=max(total, len(trials)), counts=counts, trials=trials,
        best=best_so_far(trials), eta_s=eta_s, eta=eta, notes=notes,
        resume_command=f"dnr-sweep resume {run_dir}" if phase == "interrupted" else None, now=now,
    )  # fmt: skip


def _check_run_folder(run_dir: Path) -> Path | None:
    """Refuse anything but a run folder (naming what was passed instead); Tune's newest state file."""
    if not run_dir.is_dir():
        what = "not a folder" if run_dir.exists() else "no such folder"
        raise UserError(f"{run_dir}: {what}; pass the run folder `dnr-sweep run` printed "
                        "(storage/name, e.g. runs/digits_quick_20260101-120000)")  # fmt: skip
    if (run_dir / rc.TUNE_RESULT_FILE).is_file() or (run_dir / rc.TUNE_PARAMS_FILE).is_file():
        raise UserError(f"{run_dir}: one trial's folder; pass the run folder it is in: {run_dir.parent}")
    state_path = _newest_state(run_dir)
    if state_path is None and ((run_dir / rc.CHECKPOINT_FILE).is_file() or (run_dir / rc.EPOCHS_CSV).is_file()):
        raise UserError(f"{run_dir}: a `dnr-sweep train` folder (one run, no sweep); its result is in "
                        f"{rc.METRICS_FILE} and {rc.EPOCHS_CSV}")  # fmt: skip
    if not (run_dir / rc.CONFIG_FILE).is_file():
        what = "a Ray Tune experiment, but not one `dnr-sweep run` started" if state_path else "not a run folder"
        raise UserError(f"{run_dir}: {what} (no {rc.CONFIG_FILE}); pass the run folder `dnr-sweep run` printed "
                        "(storage/name), not a trial folder or the storage folder")  # fmt: skip
    return state_path


def _unlisted_trials(run_dir: Path, listed: list[_TuneTrial], notes: list[str]) -> list[_TuneTrial]:
    """Trial folders Tune's last snapshot does not list (created in the last few seconds, or its entry unreadable)."""
    known = {t.folder for t in listed if t.folder}
    ids = {t.trial_id for t in listed}
    found = []
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name not in known):
        if (folder / rc.TUNE_RESULT_FILE).is_file() and (folder / rc.TUNE_PARAMS_FILE).is_file():
            trial_id = _folder_trial_id(folder)
            if trial_id in ids:  # listed, its folder field left out as unreadable
                continue
            params, param_notes = read_params(folder)
            notes += param_notes
            found.append(_TuneTrial(trial_id, "", folder.name, params, 0, None))
    return found


def _driver_end(path: Path, notes: list[str]) -> float | None:
    """When the driver marked its end (the mark's time), or None: no mark, or one that is not the driver's."""
    mark, mark_notes = reader.read_lenient(path, DriverEnd, unusable="the driver's end is told from the other files")
    notes += mark_notes
    return _mtime(path) if mark is not None else None


def _table_only_trial(trial_id: str, row: Mapping[str, Any], config: SweepConfig) -> TrialStatus:
    """A trial results.parquet has but Tune's state does not (its state file was lost)."""
    stopped = {"TERMINATED": "early_stopped", "EARLY_STOPPED": "early_stopped", "ERROR": "errored"}
    state = "finished" if row.get("finished") else stopped.get(str(row.get("status")), "interrupted")
    return TrialStatus(trial_id, state, {}, config.dnr.pruning, int(row.get("epochs_completed") or 0),
                       config.train.epochs, error=_text(row.get("error")))  # fmt: skip


def _phase(counts: Mapping[str, int], *, live: bool, snapshotted: bool, silence: float) -> tuple[str, list[str]]:
    """``starting``, ``running``, ``finished`` or ``interrupted``, and a note saying why when it is not plain."""
    if not snapshotted:
        if live:
            return "starting", ["Tune has saved no experiment state yet"]
        return "interrupted", ["Tune never saved its experiment state and the folder has not changed for "
                               f"{_duration(silence)}: the sweep did not get going"]  # fmt: skip
    if live:
        return "running", []
    if any(counts[state] for state in ("running", "interrupted", "pending", "not_started")):
        return "interrupted", [f"nothing in the run folder changed for {_duration(silence)}: the driver is not "
                               "running (interrupted, killed, or its machine went away)"]  # fmt: skip
    return "finished", []


def _mtime(path: Path | None) -> float | None:
    """Modification time, or None for no file (Tune replaces some files while a reader looks)."""
    if path is None:
        return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _folder_trial_id(folder: Path) -> str:
    return first_trial_id(folder) or folder.name


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _trial_run(trial: _TuneTrial, config: SweepConfig, notes: list[str]) -> RunConfig:
    """The trial's run config: the sweep's base with its sampled values (values of the wrong kind: the base's)."""
    try:
        return run_config_from_flat(config.base_run(), trial.config)
    except ConfigError as exc:
        notes.append(f"trial {trial.trial_id}: its sampled values do not fit the sweep ({exc.messages[0]}); shown with "
                     "the sweep's own settings")  # fmt: skip
        return config.base_run()


def _trial_status(trial: _TuneTrial, lines: list[dict[str, Any]], run_dir: Path, config: SweepConfig, live: bool,
                  row: Mapping[str, Any] | None, notes: list[str]) -> TrialStatus:  # fmt: skip
    last = lines[-1] if lines else {}
    run = _trial_run(trial, config, notes)
    epochs_total = run.train.epochs
    if last.get(rc.FINAL_FLAG) and isinstance(last.get("epochs"), int):
        epochs_total = last["epochs"]
    folder = run_dir / trial.folder if trial.folder else None
    error = None
    error_file = folder / rc.TUNE_ERROR_FILE if folder is not None else None
    if error_file is not None and error_file.is_file():
        error = error_summary(error_file.read_text(errors="replace"))
    elif row is not None:
        error = _text(row.get("error"))

    # a trial Tune's state does not list (unreadable, or too new): its row in the finished driver's table says
    status = trial.status or (str(row.get("status") or "") if row is not None else "")
    if status == "ERROR":
        state = "errored"
    elif last.get(rc.FINAL_FLAG):
        state = "finished"
    elif status in ("TERMINATED", "EARLY_STOPPED"):
        state = "early_stopped"
    elif not lines and status != "RUNNING":
        state = "pending"
    else:  # RUNNING (also after a Ctrl-C: Tune saves its state before marking them), or it reported epochs
        # since Tune's last snapshot (which still says PENDING)
        state = "running" if live else "interrupted"

    times = [_finite(line.get(rc.epoch_key("epoch_time_s"))) for line in lines[-RECENT_EPOCHS:]]
    times = [t for t in times if t is not None]
    swept = {k: trial.config[k] for k in config.search if k in trial.config}
    return TrialStatus(
        trial_id=trial.trial_id, state=state, params=swept,
        pruning=run.dnr.pruning,
        epochs_done=int(last.get(rc.EPOCH_KEY) or 0), epochs_total=int(epochs_total),
        selected_epoch=last.get("selected_epoch"), val_clean_acc=_finite(last.get("val_clean_acc")),
        val_pgd_acc=_finite(last.get("val_pgd_acc")), density=_finite(last.get("density")),
        epoch_time_s=statistics.fmean(times) if times else None, failures=trial.failures, error=error,
        folder=str(folder) if folder is not None else None,
    )  # fmt: skip


def best_so_far(trials: Iterable[TrialStatus]) -> dict[str, dict[str, Best | None]]:
    """Per pruning type, the best selected-epoch validation accuracies (clean, PGD) and whose they are."""
    best: dict[str, dict[str, Best | None]] = {}
    for trial in trials:
        entry = best.setdefault(str(trial.pruning), {"val_clean_acc": None, "val_pgd_acc": None})
        for metric in entry:
            value = getattr(trial, metric)
            if value is not None and (entry[metric] is None or value > entry[metric].value):
                entry[metric] = Best(value, trial.trial_id, trial.selected_epoch)
    return {k: best[k] for k in sorted(best) if any(v is not None for v in best[k].values())}


def _eta(trials: list[TrialStatus], not_started: int, config: SweepConfig, live: bool) -> tuple[float | None, dict]:
    """Remaining epochs x measured time per epoch / trials at a time.

    Time per epoch: each running trial's own recent epochs; for trials still to run, the median of
    every trial's. Trials at a time: those running now (a live sweep shows what fits), else
    ``tune.max_concurrent_trials`` (or 1). With a scheduler the figure is an upper bound.
    """
    measured = [t.epoch_time_s for t in trials if t.epoch_time_s is not None]
    typical = statistics.median(measured) if measured else None
    to_run = [t for t in trials if t.state in ("running", "interrupted", "pending")]
    epochs_left = sum(max(0, (t.epochs_total or 0) - t.epochs_done) for t in to_run) + not_started * config.train.epochs
    running = sum(t.state == "running" for t in trials)
    concurrency = running if live and running else (config.tune.max_concurrent_trials or 1)
    info = {"epochs_left": epochs_left, "epoch_time_s": typical, "concurrency": concurrency,
            "upper_bound": config.tune.scheduler is not None}  # fmt: skip
    if epochs_left == 0:
        return 0.0, info
    if typical is None:
        return None, info
    work = sum(max(0, (t.epochs_total or 0) - t.epochs_done) * (t.epoch_time_s or typical) for t in to_run)
    work += not_started * config.train.epochs * typical
    return work / concurrency, info


# ------------------------------------------------------------------------------------------------
# One screen


def format_status(status: SweepStatus) -> str:
    """The status as text for a terminal (about one screen for any sweep size)."""
    c = status.counts
    age = "" if status.last_update is None else f", last update {_duration(status.now - status.last_update)} ago"
    out = [f"{status.run_dir}  ({status.name})", f"  {status.phase}{age}"]
    out.append(
        f"  {status.trials_total} trials: {c['running']} running, {c['finished']} finished, "
        f"{c['early_stopped']} early-stopped, {c['errored']} errored, {c['interrupted']} interrupted, "
        f"{c['pending'] + c['not_started']} pending/not started"
    )
    times = [f"elapsed {_duration(status.elapsed_s)}" if status.elapsed_s is not None else "elapsed ?"]
    if status.phase != "finished":
        e = status.eta
        label = "ETA" if status.live else "training left once resumed:"
        if status.eta_s is None:
            times.append(f"{label} unknown until an epoch is measured ({e['epochs_left']} epochs left)")
        elif e["epoch_time_s"] is None:  # nothing left to train, and no epoch measured (trials without results)
            times.append(f"{label} {_duration(status.eta_s)} ({e['epochs_left']} epochs left)")
        else:
            bound = "at most " if e["upper_bound"] else ""
            times.append(f"{label} {bound}{_duration(status.eta_s)} ({e['epochs_left']} epochs left at "
                         f"{e['epoch_time_s']:.3g} s/epoch, {e['concurrency']} trial(s) at a time)")  # fmt: skip
    out.append("  " + ", ".join(times))

    active = [t for t in status.trials if t.state in ("running", "interrupted")]
    if active:
        out.append(f"\n{'running' if status.live else 'stopped mid-training'}:")
        for t in active:
            figures = _figures(t)
            out.append(f"  {t.trial_id}  {_params_text(t)}  epoch {t.epochs_done}/{t.epochs_total}"
                       + (f"  {figures}" if figures else ""))  # fmt: skip
    if status.best:
        out.append("\nbest so far (validation, selected epoch):")
        for pruning, metrics in status.best.items():
            parts = []
            for metric, label in (("val_clean_acc", "clean"), ("val_pgd_acc", "PGD")):
                b = metrics.get(metric)
                parts.append(f"{label} {b.value:.2f}% ({b.trial_id}, epoch {b.epoch})" if b else f"{label} -")
            out.append(f"  {pruning:<10}  " + "   ".join(parts))
    errors = [t for t in status.trials if t.error and t.state == "errored"]
    retried = [t for t in status.trials if t.error and t.state != "errored"]
    if errors or retried:
        out.append("\nerrors:")
        for t in errors[:10]:
            out.append(f"  {t.trial_id}  {_params_text(t)}: {t.error}")
        if len(errors) > 10:
            out.append(f"  ... and {len(errors) - 10} more (--json lists them all)")
        for t in retried[:10]:
            out.append(f"  {t.trial_id}  failed {t.failures} time(s), restarted from its last checkpoint "
                       f"(now {t.state.replace('_', ' ')}); last error: {t.error}")  # fmt: skip
    if status.notes:
        out.append("\nnotes:")
        out += [f"  {note}" for note in status.notes[:10]]
    if status.resume_command:
        out.append(f"\ncontinue it with: {status.resume_command}")
    return "\n".join(out)


def _figures(t: TrialStatus) -> str:
    if t.selected_epoch is None:
        return ""
    pgd = f" / PGD {t.val_pgd_acc:.2f}%" if t.val_pgd_acc is not None else ""
    clean = f"{t.val_clean_acc:.2f}%" if t.val_clean_acc is not None else "-"
    return f"val clean {clean}{pgd} (selected epoch {t.selected_epoch})"


def _params_text(t: TrialStatus) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in t.params.items()) or "-"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value  # JSON has no NaN
