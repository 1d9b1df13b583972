"""Saving and loading training state: atomic writes, ``weights_only`` loads.

A checkpoint is a plain dict of tensors and Python scalars/containers (no pickled classes), so it
loads with ``torch.load(..., weights_only=True)``: opening a checkpoint never runs code from it.
Writes go to a temporary file in the same folder and are moved into place with ``os.replace``,
so a crash while writing leaves the previous checkpoint intact, never a truncated one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


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
