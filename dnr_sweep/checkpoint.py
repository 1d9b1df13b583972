"""Saving and loading training state: atomic writes, ``weights_only`` loads.

A checkpoint is a plain dict of tensors and Python scalars/containers (no pickled classes), so it
loads with ``torch.load(..., weights_only=True)``: opening a checkpoint never runs code from it.
Writes go to a temporary file in the same folder and are moved into place with ``os.replace``,
so a crash while writing leaves the previous checkpoint intact, never a truncated one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from dnr_sweep import run_contract as rc
from dnr_sweep import state_codec, storage


def atomic_write_bytes(path: str | Path, write) -> Path:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically."""
    return atomic_write_bytes(path, lambda handle: torch.save(obj, handle))


def load(path: str | Path, *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (never unpickles arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint there")
    return torch.load(path, map_location=map_location, weights_only=True)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically (NaN is written as null: JSON has no NaN)."""
    text = json.dumps(_nan_to_none(obj), indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------
# Anywhere a run's files live (a local folder or a pyarrow filesystem URI: dnr_sweep.storage)


def save_to(obj: Any, loc: storage.Location) -> storage.Location:
    """``torch.save`` to a :class:`~dnr_sweep.storage.Location` (atomically, or as one object)."""
    if loc.local is not None:
        save(obj, loc.local)
        return loc
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return storage.write_bytes(loc, buffer.getvalue())


def load_from(loc: storage.Location) -> Any:
    """``torch.load(weights_only=True)`` from a :class:`~dnr_sweep.storage.Location`."""
    if loc.local is not None:
        return load(loc.local)
    if not storage.is_file(loc):
        raise FileNotFoundError(f"{loc}: no checkpoint there")
    return torch.load(io.BytesIO(storage.read_bytes(loc)), map_location="cpu", weights_only=True)


class SelectedWeights:
    """The selected epoch's weights, kept beside a run's checkpoints instead of inside each one.

    One file per selected epoch (``selected/epoch_0007.pt``, compactly encoded), written only when a
    checkpoint needs an epoch that is not on disk yet; a checkpoint names the epoch it needs. Files
    no checkpoint that may still exist names are removed by :meth:`retain`. Naming the file by its
    epoch keeps a restore exact even when a crash came after a newer selection was written but
    before the checkpoint that names it.
    """

    def __init__(self, folder: storage.Location) -> None:
        self.folder = folder / rc.SELECTED_DIR

    def _file(self, epoch: int) -> storage.Location:
        return self.folder.parent / rc.selected_weights_file(epoch)

    def write(self, epoch: int, weights: dict[str, torch.Tensor]) -> None:
        save_to(state_codec.encode(weights), self._file(epoch))

    def read(self, epoch: int) -> dict[str, torch.Tensor]:
        path = self._file(epoch)
        try:
            return state_codec.decode(load_from(path))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: the selected weights of epoch {epoch}, which the checkpoint refers to, are "
                "missing; keep the run's folder whole (its selected/ folder) to resume"
            ) from None

    def epochs(self) -> list[int]:
        found = (rc.selected_weights_epoch(name) for name in storage.listdir(self.folder))
        return sorted(epoch for epoch in found if epoch is not None)

    def retain(self, epochs: set[int]) -> None:
        """Delete every selected-weights file whose epoch is not in ``epochs``."""
        for epoch in self.epochs():
            if epoch not in epochs:
                storage.delete(self._file(epoch))

    def clear(self) -> None:
        storage.delete(self.folder)
