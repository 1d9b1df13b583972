"""Read a sweep's run directory into two tables, without Ray.

A run directory (Ray Tune's experiment folder) holds ``results.parquet`` (one row per trial at its
selected epoch) and ``epochs.parquet`` (one row per trial-epoch). When they are missing or unreadable
both are rebuilt from the trials' ``result.json`` lines (:func:`dnr_sweep.foundation.run_contract.tune_result`)
and their ``epochs.json`` records; Tune's files are read by :mod:`.trial_files`. Both sources pass
through one normalisation (rows sorted by ``trial_id`` and ``epoch``, columns in the contract's
order, fixed dtypes), so a rebuilt table equals the Parquet one.

A trial whose last line has ``final: true`` is ``TERMINATED``; any other is ``INCOMPLETE`` and kept
out of every Pareto set. What cannot be read is rebuilt or skipped with a
:class:`~dnr_sweep.foundation.errors.DataRecoveryWarning` naming it (an unreadable Parquet file is moved
aside to ``<name>.unreadable``, never deleted); only what cannot be rebuilt is refused, with an
:class:`~dnr_sweep.foundation.errors.InputFileError`. The recovery rules: docs/RELIABILITY_AND_SECURITY.md.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml

from dnr_sweep.config import SweepConfig, load_sweep_config
from dnr_sweep.config.load import run_config_from_flat
from dnr_sweep.foundation import reader, yaml_safe
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import ConfigError, DataRecoveryWarning, InputFileError, PathError, UserError
from dnr_sweep.foundation.files import atomic_write_handle, move
from dnr_sweep.foundation.run_contract import ATTACK_STRENGTH_FILE, CONFIG_FILE, EPOCHS_FILE, LAYER_PREFIX, RESULTS_FILE
from dnr_sweep.foundation.run_contract import TUNE_RESULT_FILE as TRIAL_RESULT_FILE
from dnr_sweep.foundation.schemas import AttackStrength, SweepFile
from dnr_sweep.reports import trial_files

__all__ = [
    "EPOCHS_FILE", "RESULTS_FILE", "LAYER_PREFIX", "Run", "extra_attack_columns", "flatten", "layer_columns",
    "load", "load_attack_strength", "load_epochs", "load_run", "rebuild_tables", "write_parquet_atomic",
]  # fmt: skip

ALWAYS_PARAMS = ("model.arch", "data.dataset")
RESULTS_HEAD = ("trial_id", "status", "early_stopped", "epochs_completed", "selected_epoch")
#: results.parquet metric columns in their canonical order (attack metrics are placed by name)
RESULT_METRICS = (
    *rc.TEST_METRICS, *rc.VAL_METRICS, *rc.TEST_SELECTION_METRICS, *rc.SPARSITY_METRICS,
    "selected_on", "select_metric", "epochs", "method", "pruning_type", *rc.COST_METRICS, *rc.METHOD_RUN_METRICS,
    *rc.POST_TRAINING_METRICS,
)  # fmt: skip
_TEXT_COLUMNS = ("selected_on", "select_metric", "phase", "method", "pruning_type")
STATUS_FINISHED = "TERMINATED"
STATUS_INCOMPLETE = "INCOMPLETE"


def is_param(column: str) -> bool:
    """Parameter columns are dotted config paths (``dnr.density``), never ``layer_density/...``."""
    return "." in column and not column.startswith(LAYER_PREFIX)


def is_test_accuracy(column: str) -> bool:
    """Test-split accuracies of the selected weights (``clean_acc``, ``pgd50x10_acc``)."""
    return column in rc.TEST_METRICS or (rc.is_attack_metric(column) and not column.startswith("val_"))


def extra_attack_columns(columns: Iterable[str]) -> list[str]:
    """Post-training attack accuracies (e.g. ``autoattack_acc``, ``val_pgd20_acc``), sorted by name."""
    return sorted(c for c in columns if rc.is_attack_metric(c))


def layer_columns(columns: Iterable[str]) -> list[str]:
    """The ``layer_density/<layer>`` columns, in the given (network) order."""
    return [c for c in columns if rc.is_layer_metric(c)]


def _ordered_params(columns: Iterable[str]) -> list[str]:
    params = [c for c in columns if is_param(c)]
    head = [p for p in ALWAYS_PARAMS if p in params]
    return head + sorted(p for p in params if p not in ALWAYS_PARAMS)


def _numeric(out: pd.DataFrame, columns: Iterable[str]) -> None:
    """Metric columns as float64; a value that is no number (a damaged line or table) is left empty, with a warning."""
    for c in columns:
        if c not in _TEXT_COLUMNS:
            converted = pd.to_numeric(out[c], errors="coerce")
            bad = converted.isna() & out[c].notna()
            if bad.any():
                _warn(f"{c}: {int(bad.sum())} value(s) that are no number (e.g. {out[c][bad].iloc[0]!r}) left empty")
            out[c] = converted.astype("float64")


def normalise_results(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical column order, dtypes and row order of a results table (see the module docstring)."""
    cols = list(df.columns)
    if "trial_id" not in cols:
        raise ValueError(f"results table lacks column 'trial_id'; it has {cols}")
    head = [c for c in RESULTS_HEAD if c in cols]
    params = _ordered_params(cols)
    attacks = extra_attack_columns(cols)
    metrics = [c for c in RESULT_METRICS[:3] if c in cols] + [c for c in attacks if not c.startswith("val_")]
    metrics += [c for c in RESULT_METRICS[3:] if c in cols] + [c for c in attacks if c.startswith("val_")]
    layers = layer_columns(cols)
    placed = set(head) | set(params) | set(metrics) | set(layers)
    rest = [c for c in cols if c not in placed]
    out = df[head + params + metrics + rest + layers].copy()
    out["trial_id"] = out["trial_id"].astype(str)
    if "status" in out:
        out["status"] = out["status"].astype(str)
    if "early_stopped" in out:
        out["early_stopped"] = out["early_stopped"].fillna(True).astype(bool)
    if "epochs_completed" in out:
        out["epochs_completed"] = out["epochs_completed"].astype("int64")
    if "selected_epoch" in out:
        out["selected_epoch"] = pd.to_numeric(out["selected_epoch"]).astype("Int64")
    _numeric(out, [c for c in metrics + layers if c != rc.MASKING_CHECKS_PASSED])
    return out.sort_values("trial_id", kind="mergesort").reset_index(drop=True)


def normalise_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical column order, dtypes and row order of an epochs table."""
    cols = list(df.columns)
    for needed in ("trial_id", "epoch"):
        if needed not in cols:
            raise ValueError(f"epochs table lacks column {needed!r}; it has {cols}")
    known = [c for c in rc.EPOCH_METRICS if c in cols]
    params = _ordered_params(cols)
    layers = layer_columns(cols)
    placed = {"trial_id", "epoch"} | set(known) | set(params) | set(layers)
    rest = [c for c in cols if c not in placed]
    out = df[["trial_id", "epoch"] + known + rest + layers + params].copy()
    out["trial_id"] = out["trial_id"].astype(str)
    out["epoch"] = out["epoch"].astype("int64")
    _numeric(out, known + layers)
    return out.sort_values(["trial_id", "epoch"], kind="mergesort").reset_index(drop=True)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"dnr": {"density": 0.1}, "x.y": 1}`` -> ``{"dnr.density": 0.1, "x.y": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


class RunFolderError(PathError, FileNotFoundError):
    """The run folder is missing, or holds nothing a report can be made from."""


def _warn(message: str) -> None:
    warnings.warn(message, DataRecoveryWarning, stacklevel=3)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a dict; ``{}`` (with a warning) when it is absent or unreadable."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        loaded = yaml_safe.load(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        _warn(f"{path}: unreadable ({type(exc).__name__}); its report settings and constant columns are left out")
        return {}
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        _warn(f"{path}: not a YAML mapping ({type(loaded).__name__}); its report settings are left out")
        return {}
    return loaded


trial_dirs = trial_files.trial_folders


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON-object lines of a Tune ``result.json`` (:mod:`.trial_files`); each line or file that
    could not be read is skipped with a warning naming it."""
    lines, notes = trial_files.read_result_lines(path)
    for note in notes:
        _warn(note)
    return lines


def _epoch_of(line: Mapping[str, Any], default: int) -> int | None:
    value = line.get(rc.EPOCH_KEY, line.get("training_iteration", default))
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def read_sweep(run_dir: Path) -> SweepConfig | None:
    """The sweep the run folder was started with (``config.yaml`` and the overrides ``sweep.json`` saved), or
    ``None`` with a warning when it cannot be told: then a trial's sampled values are checked for plain values
    only."""
    overrides: list[str] = []
    if (run_dir / rc.SWEEP_FILE).exists():
        unusable = "the trials' sampled values are checked for plain values only"
        saved, notes = reader.read_lenient(run_dir / rc.SWEEP_FILE, SweepFile, unusable=unusable)
        for note in notes:
            _warn(note)
        if saved is None:
            return None
        overrides = list(saved.overrides)
    try:
        return load_sweep_config(run_dir / CONFIG_FILE, overrides)
    except (UserError, OSError) as exc:
        _warn(f"{run_dir / CONFIG_FILE}: not the sweep's config ({str(exc).splitlines()[0][:200]}); the trials' "
              "sampled values are checked for plain values only")  # fmt: skip
        return None


def _params_problem(params: Mapping[str, Any], sweep: SweepConfig | None) -> str | None:
    """Why a trial's sampled values cannot place it in the sweep (a value that is no plain value, a searched
    value missing, a value the sweep's config refuses), or ``None``."""
    for key, value in params.items():
        if not (value is None or isinstance(value, str | int | float | bool)):
            return f"config value {key!r} is {reader.describe(value)}, expected a sampled value"
    if sweep is None or not sweep.search:
        return None
    sampled = {key: params.get(key) for key in sweep.search}
    missing = [key for key, value in sampled.items() if value is None]
    if missing:
        return f"config lacks the searched value {missing[0]!r}"
    try:
        run_config_from_flat(sweep.base_run(), sampled)
    except ConfigError as exc:
        return f"config holds a value the sweep's config refuses ({exc.messages[0]})"
    return None


def _trial_tables(
    path: Path, search_keys: list[str] | None, defaults: Mapping[str, Any], sweep: SweepConfig | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    lines = _read_lines(path)
    if not lines:
        return None
    last = lines[-1]
    trial_id = str(last.get("trial_id", path.parent.name))
    config = last.get("config")
    flat_config = flatten(config if isinstance(config, Mapping) else {})
    if search_keys is not None:
        params = {k: flat_config.get(k) for k in search_keys}
    else:
        params = {k: v for k, v in flat_config.items() if "." in k}
    problem = _params_problem(params if search_keys is not None else flat_config, sweep)
    if problem:
        _warn(f"{path}:{len(lines)}: {problem}; its trial is left out (its sampled values say what it trained)")
        return None
    for key in ALWAYS_PARAMS:
        if params.get(key) is None:
            params[key] = flat_config.get(key, defaults.get(key))

    by_epoch: dict[int, dict[str, Any]] = {}
    for line in lines:
        epoch = _epoch_of(line, len(by_epoch) + 1)
        if epoch is None:
            _warn(f"{path}: a line with epoch {line.get(rc.EPOCH_KEY)!r} (not a number) is skipped")
            continue
        by_epoch[epoch] = rc.split_epoch_result(line)[0]  # a restored trial repeats epochs: the last line wins
    if not by_epoch:
        return None
    # the trial's own record holds the epochs a killed driver's result.json lost; where both hold an epoch,
    # the record (rewritten from the restored trial's checkpoint) is the one the trial continued from
    record, notes = trial_files.read_epoch_record(path.parent)
    for note in notes:
        _warn(note)
    by_epoch.update(record)
    # the row's own keys last: a figure named like them (a damaged line) cannot move the row to another trial
    epoch_rows = [{**by_epoch[epoch], **params, "trial_id": trial_id, "epoch": epoch} for epoch in sorted(by_epoch)]

    finished = bool(last.get(rc.FINAL_FLAG, False))
    result: dict[str, Any] = {
        "trial_id": trial_id,
        "status": STATUS_FINISHED if finished else STATUS_INCOMPLETE,
        "early_stopped": not finished,
        "epochs_completed": max(by_epoch),
        "selected_epoch": last.get("selected_epoch"),
        **params,
    }
    _, top = rc.split_epoch_result(last)
    result.update({k: v for k, v in top.items() if rc.is_run_metric(k) and k != "selected_epoch"})
    return result, epoch_rows


def rebuild_tables(run_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild ``(results, epochs)`` from the run's ``*/result.json`` files (see module docstring).

    Raises:
        RunFolderError: the run directory holds no ``*/result.json`` with a result (a
            ``FileNotFoundError``).
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    search = config.get("search")
    search_keys = list(search) if isinstance(search, Mapping) and search else None
    defaults = flatten({k: v for k, v in config.items() if k != "search"})
    sweep = read_sweep(run_dir) if (run_dir / CONFIG_FILE).is_file() else None
    results, epochs = [], []
    for folder in trial_dirs(run_dir):
        built = _trial_tables(folder / TRIAL_RESULT_FILE, search_keys, defaults, sweep)
        if built is not None:
            results.append(built[0])
            epochs.extend(built[1])
    if not results:
        raise RunFolderError(
            f"{run_dir} has neither {RESULTS_FILE} nor any <trial_dir>/{TRIAL_RESULT_FILE} with results; "
            "pass a Ray Tune experiment folder written by `dnr-sweep run`"
        )
    return normalise_results(pd.DataFrame(results)), normalise_epochs(pd.DataFrame(epochs))


@dataclass(frozen=True, eq=False)
class Run:
    """A loaded run directory: its two tables, its ``config.yaml`` and whether tables were rebuilt."""

    path: Path
    results: pd.DataFrame
    epochs: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    rebuilt: bool = False


def _check_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    path = Path(run_dir)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise RunFolderError(
            f"run directory {path} {what}; expected a Ray Tune experiment folder holding "
            f"{RESULTS_FILE} or <trial_dir>/{TRIAL_RESULT_FILE} files"
        )
    return path


#: what reading a damaged Parquet table raises (pyarrow's errors, a table of another kind)
_UNREADABLE_TABLE = (OSError, ValueError, TypeError, KeyError, pa.ArrowException)


def _read_table(path: Path, normalise) -> pd.DataFrame | None:
    """``normalise(read_parquet(path))``, or ``None`` (with a warning) when it cannot be read or is
    the other table (an epochs table has an ``epoch`` column, a results table never does)."""
    try:
        table = pd.read_parquet(path)
        if normalise is normalise_results and rc.EPOCH_KEY in table.columns:
            raise ValueError(f"an epochs table (it has an {rc.EPOCH_KEY!r} column), not the results")
        return normalise(table)
    except _UNREADABLE_TABLE as exc:
        _warn(f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
              f"rebuilding it from the trials' {TRIAL_RESULT_FILE}")  # fmt: skip
        return None


def _set_aside(path: Path) -> None:
    """Move an unreadable table to ``<name>.unreadable`` so a rebuilt one can take its place (kept, never
    deleted: it may be readable by another version)."""
    target = path.with_name(path.name + ".unreadable")
    try:
        move(path, target, replace=True)
    except OSError as exc:
        _warn(f"{path}: could not be moved aside ({exc.strerror}); it stays, the report uses the rebuilt table")
    else:
        _warn(f"{path}: moved aside to {target.name}; the rebuilt table takes its place")


def _cannot_rebuild(path: Path) -> InputFileError:
    return InputFileError(
        path, "is unreadable and no trial left a result.json to rebuild it from",
        expected=f"the Parquet table `dnr-sweep run` writes, or <trial_dir>/{TRIAL_RESULT_FILE} files",
        fix="Restore it from a backup; the run cannot be reported otherwise",
    )  # fmt: skip


def _rebuild_instead_of(path: Path, index: int) -> pd.DataFrame:
    try:
        return rebuild_tables(path.parent)[index]
    except RunFolderError:
        raise _cannot_rebuild(path) from None


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Read both tables from Parquet, or rebuild both from ``result.json`` when either is missing or
    unreadable (an unreadable one is moved aside: see the module docstring)."""
    path = _check_run_dir(run_dir)
    config = read_config(path)
    results_path, epochs_path = path / RESULTS_FILE, path / EPOCHS_FILE
    unreadable: list[Path] = []
    if results_path.is_file() and epochs_path.is_file():
        results = _read_table(results_path, normalise_results)
        epochs = _read_table(epochs_path, normalise_epochs)
        if results is not None and epochs is not None:
            return Run(path, results, epochs, config, rebuilt=False)
        unreadable = [p for p, table in ((results_path, results), (epochs_path, epochs)) if table is None]
    try:
        results, epochs = rebuild_tables(path)
    except RunFolderError:
        if unreadable:
            raise _cannot_rebuild(unreadable[0]) from None
        raise
    for item in unreadable:
        _set_aside(item)
    return Run(path, results, epochs, config, rebuilt=True)


def load(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The results table (one row per trial at its selected epoch) of a run directory."""
    path = _check_run_dir(run_dir)
    if (path / RESULTS_FILE).is_file():
        table = _read_table(path / RESULTS_FILE, normalise_results)
        return table if table is not None else _rebuild_instead_of(path / RESULTS_FILE, 0)
    return rebuild_tables(path)[0]


def load_epochs(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The epochs table (one row per trial-epoch) of a run directory."""
    path = _check_run_dir(run_dir)
    if (path / EPOCHS_FILE).is_file():
        table = _read_table(path / EPOCHS_FILE, normalise_epochs)
        return table if table is not None else _rebuild_instead_of(path / EPOCHS_FILE, 1)
    return rebuild_tables(path)[1]


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` via a temporary file in the same folder and ``os.replace``, with the
    mode the umask gives (:func:`dnr_sweep.foundation.files.atomic_write`)."""
    return atomic_write_handle(path, lambda handle: df.to_parquet(handle, index=False))


def load_attack_strength(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, dict[float, float]]]:
    """Fig. 4 curves found in ``<run_dir>/*/attack_strength.json`` (and ``<run_dir>/attack_strength.json``).

    Returns ``{label: {"steps": {steps: acc %}, "eps": {eps: acc %}}}`` with numeric keys; the label
    is the trial id from the folder's ``result.json`` when there is one, else the folder name.
    """
    run_dir = Path(run_dir)
    curves: dict[str, dict[str, dict[float, float]]] = {}
    paths = sorted(run_dir.glob(f"*/{ATTACK_STRENGTH_FILE}"))
    if (run_dir / ATTACK_STRENGTH_FILE).is_file():
        paths.insert(0, run_dir / ATTACK_STRENGTH_FILE)
    for path in paths:
        label = path.parent.name
        result_json = path.parent / TRIAL_RESULT_FILE
        if result_json.is_file():
            lines = _read_lines(result_json)
            if lines and "trial_id" in lines[-1]:
                label = str(lines[-1]["trial_id"])
        read, notes = reader.read_lenient(path, AttackStrength, unusable="its attack-strength curve is left out")
        for note in notes:
            _warn(note)
        if read is not None:
            curves[label] = read.curves()
    return curves
