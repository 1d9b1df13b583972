"""A run's lifecycle on disk, written once for ``dnr-sweep train`` and every sweep trial.

:class:`RunLifecycle` owns the run (:class:`~dnr_sweep.training.engine.TrainingRun`), its epoch record
(one row per epoch, carried in every checkpoint), the selected epoch's weights kept beside the
checkpoints (:class:`~dnr_sweep.artifacts.checkpoint.SelectedWeights`), the state a checkpoint
holds and how it is loaded again, and the finish step (:func:`dnr_sweep.training.finish.finish_run`).
Each epoch: :meth:`RunLifecycle.train_epoch` (train, record) -> :meth:`RunLifecycle.save` (the
selected weights beside, when new; the checkpoint; the selected weights no checkpoint still needs
removed) -> after the last, :meth:`RunLifecycle.finish`.

Each caller keeps its own files around it: ``train`` its ``checkpoint.pt`` (with the config) and
``epochs.csv`` (:mod:`dnr_sweep.training.single_run`); a trial Tune's checkpoint folders and its
``epochs.json`` (:mod:`dnr_sweep.sweep.trainable`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import RunConfig
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import storage
from dnr_sweep.training.engine import EpochReport, TrainingRun
from dnr_sweep.training.finish import finish_run

Weights = dict[str, torch.Tensor]


class CheckpointWeights(NamedTuple):
    """The selected weights a checkpoint needs, read before the run changes (so a missing file changes nothing).

    ``selected``: the weights of the epoch it selects (``None`` when it holds them itself, or selects none yet);
    ``adopted``: another run folder's selected weights that it still names, to be kept in this one.
    """

    selected: Weights | None
    adopted: dict[int, Weights]


class RunLifecycle:
    """One run and what it keeps between epochs: its epoch record, checkpoints, selected weights, finish step.

    Args:
        config: the run's config; the run is built from it.
        folder: the run folder the selected weights live in, beside the checkpoints (``selected/``), written
            only when a checkpoint needs a selection not yet there; ``None`` keeps them inside each checkpoint.
        record_key: the checkpoint entry that holds the epoch record.
        kept: how many saved checkpoints may still be loaded after a save: 1 where each save replaces the
            last; more where older ones are dropped later (then each checkpoint names the selections that
            these may need, ``selected_refs``, and their weights stay).

    Example::

        life = RunLifecycle(config, storage.locate(out), record_key="rows")
        while not life.run.finished:
            life.train_epoch()
            life.save(out / "checkpoint.pt")
        result = life.finish(out)
    """

    def __init__(self, config: RunConfig, folder: storage.Location | None = None, *, record_key: str = "epochs",
                 kept: int = 1) -> None:  # fmt: skip
        if kept < 1:
            raise ValueError(f"kept must be at least 1 (the checkpoint just saved), got {kept!r}")
        self.run = TrainingRun(config)
        self.selected = checkpoint.SelectedWeights(folder) if folder is not None else None
        self.record_key = record_key
        self.kept = kept
        self.epochs: list[dict[str, Any]] = []  # the epoch record: one row per epoch trained
        self._refs: list[int | None] = []  # the selected epochs the newest `kept` checkpoints name
        self._on_disk: set[int] = set()  # the selected epochs written beside the checkpoints

    def train_epoch(self, progress: Callable[[int, int], None] | None = None) -> EpochReport:
        """Train one epoch and record it (an epoch trained again replaces its row and any later ones)."""
        report = self.run.train_epoch(progress)
        self.epochs = [e for e in self.epochs if e[rc.EPOCH_KEY] < report.epoch]
        self.epochs.append({rc.EPOCH_KEY: report.epoch, **report.metrics})
        return report

    # ----------------------------------------------------------------------------------------
    # Checkpoints

    def save(self, path: str | Path, **extra: Any) -> None:
        """Save a checkpoint of the run, with the epoch record and ``extra`` entries, to ``path`` (atomically).

        The selected weights go beside it first when they are not there yet; after it, those that no
        checkpoint which may still be loaded names are removed."""
        if self.selected is None:
            checkpoint.save({"run": self.run.state_dict(), self.record_key: self.epochs, **extra}, path)
            return
        epoch = self.run.selection.epoch  # None: a baseline before its final phase
        if epoch is not None and epoch not in self._on_disk:
            self.selected.write(epoch, self.run.selected_state_dict())
            self._on_disk.add(epoch)
        self._refs = [*self._refs, epoch][-self.kept :]
        refs = {"selected_refs": list(self._refs)} if self.kept > 1 else {}
        state = {"run": self.run.state_dict(selected_weights=False), **refs, self.record_key: self.epochs}
        checkpoint.save({**state, **extra}, path)
        needed = {e for e in self._refs if e is not None}
        self.selected.retain(needed)
        self._on_disk &= needed

    def read_weights(
        self, state: Mapping[str, Any], source: checkpoint.SelectedWeights | None = None
    ) -> CheckpointWeights:
        """The selected weights checkpoint ``state`` needs, from ``source`` (default: this run folder's).

        Raises:
            ValueError: the state keeps them beside it, and this lifecycle has no run folder.
            InputFileError: their file is missing or unreadable.
        """
        source = source if source is not None else self.selected
        run_state = state.get("run", state)  # an older trial checkpoint is the run's state itself
        epoch = run_state["selection"]["epoch"]
        selected = None
        if run_state.get("selected_state") is None and epoch is not None:
            if source is None:
                raise ValueError("this checkpoint keeps its selected weights beside it in its run folder; load it "
                                 "from there (a sweep trial's: restore it through Tune)")  # fmt: skip
            selected = source.read(epoch)
        adopted = {}
        if source is not self.selected:  # another run folder's: the selections it names move here, for later saves
            named = set(state.get("selected_refs", [])) & set(source.epochs())
            adopted = {e: source.read(e) for e in sorted(named)}
        return CheckpointWeights(selected, adopted)

    def load(self, state: Mapping[str, Any], weights: CheckpointWeights | None = None) -> None:
        """Continue from checkpoint ``state`` (:meth:`save`'s, or an older trial's: the run's state itself) with
        its selected ``weights`` (default: :meth:`read_weights` from this run folder)."""
        weights = weights if weights is not None else self.read_weights(state)
        run_state = state.get("run", state)
        self.run.load_state_dict(run_state, selected_state=weights.selected)
        self.epochs = list(state.get(self.record_key, []))  # an older trial checkpoint holds no record
        beside = [run_state["selection"]["epoch"]] if weights.selected is not None else []
        self._refs = list(state.get("selected_refs", beside))
        self._on_disk = {e for e in self._refs if e is not None}
        for epoch, adopted in weights.adopted.items():
            self.selected.write(epoch, adopted)  # type: ignore[union-attr]  # adopted only into a run folder

    # ----------------------------------------------------------------------------------------
    # The end

    def finish(self, folder: str | Path) -> dict[str, Any]:
        """The finish step into the local ``folder``: ``model.pt``, ``config.yaml``, ``metrics.json``; the result."""
        return finish_run(self.run, folder)
