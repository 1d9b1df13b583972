"""The run folder ``storage/name``: Ray Tune's experiment folder plus ``config.yaml`` (the input as given) and
``sweep.json`` (the ``--set`` overrides), which is all ``dnr-sweep resume`` needs. ``storage`` is a local folder
(shared storage on a cluster) or any filesystem URI Ray Tune accepts (``s3://``, ``gs://``, ``file://``, ...); the
run folder is a :class:`~dnr_sweep.foundation.storage.Location`.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from pathlib import Path
from typing import Any

from dnr_sweep.config import SweepConfig, check_name, load_sweep_config
from dnr_sweep.foundation import files, reader
from dnr_sweep.foundation import storage as storage_
from dnr_sweep.foundation.errors import InputFileError, PathError
from dnr_sweep.foundation.run_contract import CONFIG_FILE, LOCK_FILE, SWEEP_FILE
from dnr_sweep.foundation.schemas import SweepFile
from dnr_sweep.sweep.outcome import SweepError

# ------------------------------------------------------------------------------------------------
# Running and resuming


def default_run_name(config: SweepConfig) -> str:
    """The config's name and the local time: ``digits_quick_20260101-120000``."""
    return f"{config.name}_{time.strftime('%Y%m%d-%H%M%S')}"


def plan_run_dir(config: SweepConfig, *, storage: str | Path, name: str | None) -> storage_.Location:
    """``storage/name`` (name defaults to the config's name and a timestamp); refuses to reuse a run.

    ``storage`` is a local folder or a filesystem URI (``s3://bucket/runs``, ``file:///shared/runs``)."""
    if name is None:
        name = default_run_name(config)
    try:
        check_name(name)
    except ValueError as exc:
        raise SweepError(f"--name: {exc}") from None
    location = storage_.locate(storage, what="--storage")
    if location.local is not None:  # a local folder (or file://): checked like every output folder
        local = files.output_folder(location.local, "--storage").resolve()
        run_dir = storage_.locate(str(local), what="--storage") / name
        check_run_dir_unused(run_dir.local)
        return run_dir
    run_dir = location / name
    try:
        taken = bool(storage_.listdir(run_dir))
    except OSError as exc:
        raise SweepError(f"--storage {storage}: cannot be read ({exc}); check the path, the URI's options and "
                         "the credentials") from None  # fmt: skip
    if taken:
        raise SweepError(f"{run_dir}: already holds a run; continue it with "
                         f"`{shlex.join(['dnr-sweep', 'resume', str(run_dir)])}` or choose another --name")  # fmt: skip
    return run_dir


def check_run_dir_unused(run_dir: Path) -> None:
    """Refuse a run folder that holds anything but a lock file (call again once its lock is held)."""
    if run_dir.is_file():
        raise PathError(f"{run_dir}: a file is in the way of the run folder; choose another --name")
    if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise SweepError(f"{run_dir}: already holds a run; continue it with "
                         f"`{shlex.join(['dnr-sweep', 'resume', str(run_dir)])}` or choose another --name")  # fmt: skip


def prepare_run_dir(run_dir: storage_.Location, *, config_path: Path, overrides: list[str]) -> storage_.Location:
    """Create the run folder with the input config as given, the ``--set`` overrides and the config's
    SHA-256 (``resume`` checks the config is unchanged)."""
    text = Path(config_path).read_bytes()
    storage_.write_bytes(run_dir / CONFIG_FILE, text)
    state = json.dumps({"overrides": list(overrides), "config_source": str(config_path),
                        "config_sha256": hashlib.sha256(text).hexdigest()})  # fmt: skip
    storage_.write_text(run_dir / SWEEP_FILE, state)
    return run_dir


def load_run_dir_config(run_dir: storage_.Location) -> SweepConfig:
    """The sweep config a run folder was started with (its config.yaml plus the saved overrides)."""
    if run_dir.local is None:  # remote storage: the two small files, read through pyarrow.fs
        with storage_.staged(run_dir, include=lambda name: name in (CONFIG_FILE, SWEEP_FILE)) as local:
            return _load_run_dir_config(local, shown=run_dir)
    return _load_run_dir_config(run_dir.local, shown=run_dir)


def _load_run_dir_config(run_dir: Path, *, shown: Any) -> SweepConfig:
    """``run_dir``: the run folder or a local copy of its two files; ``shown``: how messages name it."""
    if not run_dir.is_dir():
        what = "a file" if run_dir.exists() else "no such folder"
        raise PathError(f"{shown}: {what}; pass the run folder `dnr-sweep run` printed")
    if not (run_dir / CONFIG_FILE).is_file():
        raise SweepError(f"{shown}: not a dnr-sweep run folder (no {CONFIG_FILE}); pass the folder "
                         "`dnr-sweep run` printed")  # fmt: skip
    overrides: list[str] = []
    sweep_file = run_dir / SWEEP_FILE
    if sweep_file.exists() or sweep_file.is_symlink():
        expected = 'the JSON object `dnr-sweep run` wrote: {"overrides": ["key=value", ...], ...}'
        fix = ("Restore it, or write {\"overrides\": []} there if the run used no --set (or the --set values it "
               "used, as a list)")  # fmt: skip
        saved = reader.read_strict(sweep_file, SweepFile, expected=expected, fix=fix)
        overrides = list(saved.overrides)
        digest = saved.config_sha256
        if digest is not None and hashlib.sha256((run_dir / CONFIG_FILE).read_bytes()).hexdigest() != digest:
            raise InputFileError(run_dir / CONFIG_FILE, "changed since the sweep started (its SHA-256 differs from "
                                 f"the one {SWEEP_FILE} recorded)", expected="the config the sweep started with",
                                 fix="Restore it (the trials were sampled from it); to change the sweep, start a "
                                     "new one with `dnr-sweep run`")  # fmt: skip
    return load_sweep_config(run_dir / CONFIG_FILE, overrides)
