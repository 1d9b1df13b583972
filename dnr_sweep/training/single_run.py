"""One training run (DNR or a baseline) without Ray, written to a folder: the work behind ``dnr-sweep train``.

Files in ``out`` (names from :mod:`dnr_sweep.foundation.run_contract`)::

    config.yaml      the resolved run config
    checkpoint.pt    everything to continue (model, masks, z, optimizer, LR schedule, epoch, RNG,
                     the epoch rows), compactly encoded; rewritten atomically after every epoch
    selected/        the selected epoch's weights that checkpoint.pt refers to (rewritten only when
                     the selection changes)
    epochs.csv       one row per epoch (this epoch's own figures)
    model.pt         plain state_dict of the selected epoch's model (masks applied)
    metrics.json     the run's result: the selected epoch's figures and the test figures of model.pt

``resume=True`` continues from ``checkpoint.pt``; the config must be the one the run started with.
The epochs, checkpoints, selected weights and finish step are the lifecycle every sweep trial shares
(:class:`dnr_sweep.training.lifecycle.RunLifecycle`); this module adds train's own files around it.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import RunConfig, to_yaml_dict
from dnr_sweep.foundation import files, storage
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import ConfigError, InputFileError, PathError
from dnr_sweep.training.engine import EpochReport
from dnr_sweep.training.finish import write_config
from dnr_sweep.training.lifecycle import RunLifecycle


def epoch_line(report: EpochReport, total: int) -> str:
    """One human line per epoch: this epoch's figures on the selection split."""
    metrics = report.metrics
    clean, fgsm, pgd = (metrics[name] for name in rc.selection_metrics(report.selected["selected_on"]))

    def fmt(value: Any) -> str:
        return "  -  " if value != value else f"{value:5.1f}"

    return (
        f"epoch {report.epoch:>3}/{total} [{metrics['phase']:>6}] loss {metrics['loss']:.4f}  "
        f"{report.selected['selected_on']} clean {fmt(clean)} fgsm {fmt(fgsm)} pgd {fmt(pgd)}  "
        f"density {metrics['density']:.4f} ({metrics['compression']:.2f}x)  {metrics['epoch_time_s']:.1f}s"
        f"  [selected: epoch {report.selected['selected_epoch']}]"
    )


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    checkpoint.atomic_write_bytes(path, lambda handle: handle.write(buffer.getvalue().encode()))


def _progress_bar(stream) -> Callable[[int, int], None] | None:
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        stream.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} batches")
        if done == total:
            stream.write("\r" + " " * (width + 30) + "\r")
        stream.flush()

    return show


def _same_config(saved: Any, config: RunConfig) -> bool:
    """Whether a checkpoint's config is ``config`` (as saved, or with blocks it left at their defaults)."""
    if saved == to_yaml_dict(config):
        return True
    try:
        return RunConfig.model_validate(saved).model_dump() == config.model_dump()
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        return False


def train_to_dir(config: RunConfig, out: str | Path, *, resume: bool = False,
                 log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Run every remaining epoch of ``config``, writing the files above; return the run's result."""
    out = Path(out)
    ckpt_path = out / rc.CHECKPOINT_FILE
    resolved = to_yaml_dict(config)
    state: dict[str, Any] | None = None
    fix = "Train into a new --out folder (this one's model.pt and metrics.json, if any, stay as they are)"
    if resume:  # the checkpoint is read (and refused) before the data and the model are built
        if not ckpt_path.is_file():
            raise PathError(f"{ckpt_path}: nothing to resume (run without --resume to start)")
        state = checkpoint.load_mapping(ckpt_path, keys=("config", "run", "rows"), fix=fix,
                                        what="the checkpoint `dnr-sweep train` writes (config, run, rows)")  # fmt: skip
        if not _same_config(state["config"], config):
            raise ConfigError(
                f"{ckpt_path}: the run was started with a different config; resume with the same CONFIG "
                "and --set values, or train into a new --out folder"
            )
    life = RunLifecycle(config, storage.locate(out), record_key="rows")  # one checkpoint, replaced each epoch
    if state is not None:
        try:
            life.load(state)
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError):  # another run's (or a damaged) state
            raise InputFileError(ckpt_path, "holds a training state that does not fit this config's model and masks",
                                 expected="the checkpoint of this run", fix=fix) from None  # fmt: skip
        log(f"resuming {out} after epoch {life.run.epoch}")
    elif ckpt_path.exists():
        raise PathError(f"{out}: already holds a run ({rc.CHECKPOINT_FILE}); pass --resume or choose another --out")
    files.make_folder(out)
    write_config(config, out)

    progress = _progress_bar(sys.stderr)
    while not life.run.finished:
        report = life.train_epoch(progress)
        log(epoch_line(report, config.train.epochs))
        life.save(ckpt_path, config=resolved)
        write_csv(life.epochs, out / rc.EPOCHS_CSV)
    return life.finish(out)
