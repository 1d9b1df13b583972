"""Saving and loading training state: atomic writes, ``weights_only`` loads, clear refusals.

A checkpoint is a plain dict of tensors and Python scalars/containers (no pickled classes), so it
loads with ``torch.load(..., weights_only=True)``: opening a checkpoint never runs code from it.
Writes go through the one writer, :mod:`dnr_sweep.foundation.files` (a temporary file in the same folder moved
into place, with the mode the umask gives, never through a link), so a crash while writing leaves the previous
checkpoint intact, never a truncated one.

A file that cannot be loaded (missing, empty, truncated, random bytes, another kind of file, or a
pickle holding objects other than tensors and plain data) raises
:class:`~dnr_sweep.foundation.errors.InputFileError` naming the file, what it should be and what to do. torch's
own message is never passed on: for a refused pickle it advises ``weights_only=False``, which would
run whatever code the file holds.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from dnr_sweep.artifacts import state_codec
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import storage
from dnr_sweep.foundation.errors import InputFileError
from dnr_sweep.foundation.files import atomic_write_handle

#: what ``torch.load(weights_only=True)`` raises on a corrupt or hostile file (measured on empty,
#: truncated, bit-flipped, random and foreign files: ten builtin kinds; the call parses only the file)
_UNREADABLE = (
    pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError, KeyError, TypeError, IndexError,
    AttributeError, struct.error, zipfile.BadZipFile, RecursionError,
)  # fmt: skip

CHECKPOINT_KIND = "a checkpoint written by dnr-sweep (torch.save of tensors and plain data)"


def atomic_write_bytes(path: str | Path, write) -> Path:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it over ``path``."""
    return atomic_write_handle(path, write)


def save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically."""
    return atomic_write_handle(path, lambda handle: torch.save(obj, handle))


def load(path: str | Path, *, map_location: str | torch.device = "cpu", fix: str | None = None) -> Any:
    """``torch.load`` with ``weights_only=True`` (never unpickles arbitrary objects).

    Args:
        fix: what the user should do when the file cannot be loaded (default: re-create it by
            re-running what wrote it, and never load it from an untrusted source).

    Raises:
        InputFileError: the file is missing, unreadable, corrupt or not a dnr-sweep checkpoint.
    """
    path = Path(path)
    fix = fix or "Re-run what wrote it (e.g. delete the folder and train again), or restore it from a backup"
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "no such file"
        raise InputFileError(path, problem, expected=CHECKPOINT_KIND, fix=fix)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; torch reads from it
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror})", expected=CHECKPOINT_KIND,
                             fix="Check its permissions") from None  # fmt: skip
    with handle:
        return _torch_load(handle, path, map_location, fix)


def _torch_load(handle: Any, name: Any, map_location: str | torch.device, fix: str) -> Any:
    """``torch.load(handle, weights_only=True)``; a file it refuses becomes an :class:`InputFileError`
    naming ``name`` (torch's own advice, to disable ``weights_only``, is never passed on)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about pickle protocols of foreign files
        try:
            return torch.load(handle, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            problem = (
                "refused: it is not a checkpoint dnr-sweep wrote (it is corrupt, or a pickle that holds "
                "objects other than tensors and plain data, as a file from an untrusted source may)"
            )
        except _UNREADABLE:
            problem = "is corrupt or truncated (or not a torch checkpoint at all)"
    raise InputFileError(name, problem, expected=CHECKPOINT_KIND, fix=f"{fix}; never load it from an untrusted source")


def load_mapping(path: str | Path, *, keys: Iterable[str] = (), what: str, fix: str | None = None) -> dict[str, Any]:
    """:func:`load` a dict that must hold ``keys``; ``what`` says what the file should be."""
    state = load(path, fix=fix)
    missing = [key for key in keys if not isinstance(state, Mapping) or key not in state]
    if not isinstance(state, Mapping) or missing:
        found = (
            f"a dict without {', '.join(map(repr, missing))}" if isinstance(state, Mapping) else type(state).__name__
        )
        raise InputFileError(path, f"holds {found}", expected=what,
                             fix=fix or "Re-run what wrote it, or restore it from a backup")  # fmt: skip
    return dict(state)


def load_state_dict(path: str | Path, *, fix: str | None = None) -> dict[str, torch.Tensor]:
    """A plain ``state_dict`` file (``model.pt``): a dict of parameter names to tensors."""
    state = load(path, fix=fix)
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        kind = "an empty dict" if isinstance(state, Mapping) and not state else (
            "a dict that is not names -> tensors" if isinstance(state, Mapping) else type(state).__name__
        )  # fmt: skip
        raise InputFileError(path, f"holds {kind}", expected="a model state_dict (parameter names -> tensors)",
                             fix=fix or "Re-create it by training again, or restore it from a backup")  # fmt: skip
    return dict(state)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically (NaN is written as null: JSON has no NaN)."""
    text = json.dumps(_nan_to_none(obj), indent=2, sort_keys=False) + "\n"
    return atomic_write_handle(path, lambda handle: handle.write(text.encode()))


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------
# Anywhere a run's files live (a local folder or a pyarrow filesystem URI: dnr_sweep.foundation.storage)


def save_to(obj: Any, loc: storage.Location) -> storage.Location:
    """``torch.save`` to a :class:`~dnr_sweep.foundation.storage.Location` (atomically, or as one object)."""
    if loc.local is not None:
        save(obj, loc.local)
        return loc
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return storage.write_bytes(loc, buffer.getvalue())


def load_from(loc: storage.Location) -> Any:
    """``torch.load(weights_only=True)`` from a :class:`~dnr_sweep.foundation.storage.Location`."""
    if loc.local is not None:
        return load(loc.local)
    if not storage.is_file(loc):
        raise FileNotFoundError(f"{loc}: no checkpoint there")
    fix = "Re-run what wrote it, or restore it from a backup"
    return _torch_load(io.BytesIO(storage.read_bytes(loc)), loc, "cpu", fix)


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
        if not storage.is_file(path):
            raise InputFileError(path, f"is missing: the selected weights of epoch {epoch}, which the checkpoint "
                                 "refers to", expected="the file the run wrote beside its checkpoints",
                                 fix="Keep the run's folder whole (its selected/ folder) to resume")  # fmt: skip
        return state_codec.decode(load_from(path))

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
