"""One DNR run without Ray, written to a folder: the work behind ``dnr-sweep train``.

Files in ``out``::

    config.yaml      the resolved run config
    checkpoint.pt    everything to continue (model, masks, z, optimizer, LR schedule, epoch, RNG,
                     best weights, the epoch rows); rewritten atomically after every epoch
    epochs.csv       one row per epoch
    model.pt         plain state_dict of the selected epoch's model (masks applied)
    metrics.json     the final metrics (test split, selected epoch) plus ``selected_epoch``

``resume=True`` continues from ``checkpoint.pt``; the config must be the one the run started with.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dnr_sweep import checkpoint
from dnr_sweep.config import RunConfig, to_yaml_dict
from dnr_sweep.engine import DNRRun
from dnr_sweep.post_training import after_training

SUMMARY_KEYS = ("epoch", "phase", "loss", "train_acc", "val_clean_acc", "val_fgsm_acc", "val_pgd_acc", "density",
                "compression", "epoch_time_s")  # fmt: skip


def epoch_line(metrics: dict[str, Any], total: int) -> str:
    """One human line per epoch."""

    def fmt(value: Any) -> str:
        return "  -  " if value != value else f"{value:5.1f}"

    return (
        f"epoch {metrics['epoch']:>3}/{total} [{metrics['phase']:>6}] loss {metrics['loss']:.4f}  "
        f"acc clean {fmt(metrics['val_clean_acc'])} fgsm {fmt(metrics['val_fgsm_acc'])} "
        f"pgd {fmt(metrics['val_pgd_acc'])}  density {metrics['density']:.4f} "
        f"({metrics['compression']:.2f}x)  {metrics['epoch_time_s']:.1f}s"
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


def train_to_dir(config: RunConfig, out: str | Path, *, resume: bool = False,
                 log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Run every remaining epoch of ``config``, writing the files above; return the final metrics."""
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    resolved = to_yaml_dict(config)
    run = DNRRun(config)
    rows: list[dict[str, Any]] = []
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume (run without --resume to start)")
        state = checkpoint.load(ckpt_path)
        if state["config"] != resolved:
            raise ValueError(
                f"{ckpt_path}: the run was started with a different config; resume with the same CONFIG "
                "and --set values, or train into a new --out folder"
            )
        run.load_state_dict(state["run"])
        rows = list(state["rows"])
        log(f"resuming {out} after epoch {run.epoch}")
    elif ckpt_path.exists():
        raise FileExistsError(f"{out}: already holds a run (checkpoint.pt); pass --resume or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_bytes(out / "config.yaml", lambda h: h.write(yaml.safe_dump(resolved, sort_keys=False).encode()))

    progress = _progress_bar(sys.stderr)
    while not run.finished:
        metrics = run.train_epoch(progress)
        rows.append(metrics)
        log(epoch_line(metrics, config.train.epochs))
        checkpoint.save({"config": resolved, "run": run.state_dict(), "rows": rows}, ckpt_path)
        write_csv(rows, out / "epochs.csv")

    final = run.finish()
    checkpoint.save(run.selected_state_dict(), out / "model.pt")
    summary = {key: final[key] for key in ("clean_acc", "fgsm_acc", "pgd_acc", "compression", "density",
                                           "channels_present", "selected_epoch")}  # fmt: skip
    summary.update(after_training(run, out))  # evaluate: / export: results, when configured
    summary["mask_density"] = rows[-1]["mask_density"]
    summary["epochs"] = run.epoch
    summary["layer_density"] = {k.split("/", 1)[1]: v for k, v in rows[summary["selected_epoch"] - 1].items()
                                if k.startswith("layer_density/")}  # fmt: skip
    checkpoint.write_json(summary, out / "metrics.json")
    return summary
