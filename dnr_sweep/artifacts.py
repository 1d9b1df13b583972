"""Finding and loading a trained model: a ``dnr-sweep train --out`` folder or a sweep trial folder.

Both hold ``config.yaml`` (the resolved run config) and ``model.pt`` (the selected epoch's plain
``state_dict``, masks applied). A run folder (``dnr-sweep run``) holds one trial folder per trial;
``resolve_model_dir(RUN_DIR, trial="...")`` picks one by (a prefix of) its Tune trial id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from torch import nn

from dnr_sweep import checkpoint
from dnr_sweep.config import RunConfig
from dnr_sweep.data import DataSplits, build_datasets
from dnr_sweep.models import get_model

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"


@dataclass
class TrainedModel:
    folder: Path
    config: RunConfig
    model: nn.Module
    data: DataSplits


def trial_folders(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(run_dir).glob(f"*/{MODEL_FILE}"))


def resolve_model_dir(path: str | Path, trial: str | None = None) -> Path:
    """The folder holding model.pt: ``path`` itself, or the trial of run folder ``path`` named ``trial``."""
    path = Path(path)
    if (path / MODEL_FILE).is_file() and trial is None:
        return path
    candidates = trial_folders(path)
    if not candidates:
        raise FileNotFoundError(
            f"{path}: no {MODEL_FILE} here nor in any trial folder; pass a `dnr-sweep train --out` folder, "
            "a trial folder, or a run folder with --trial"
        )
    if trial is None:
        names = ", ".join(p.name for p in candidates[:5])
        raise FileNotFoundError(f"{path}: a run folder with {len(candidates)} trials; choose one with --trial ({names}, ...)")
    matches = [p for p in candidates if trial in p.name]
    if len(matches) != 1:
        raise FileNotFoundError(f"{path}: --trial {trial!r} matches {len(matches)} trial folders; give more of its id")
    return matches[0]


def load_run_config(folder: Path) -> RunConfig:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE} beside {MODEL_FILE}")
    return RunConfig.model_validate(yaml.safe_load(config_path.read_text()))


def load_trained(path: str | Path, trial: str | None = None, *, load_data: bool = True) -> TrainedModel:
    """The selected model of a train folder or trial, in eval mode on the CPU, with its data splits."""
    folder = resolve_model_dir(path, trial)
    config = load_run_config(folder)
    data = build_datasets(
        config.data.dataset, root=config.data.root_path, download=config.data.download,
        val_size=config.data.val_size, seed=config.train.seed, image_size=config.data.image_size,
        channels=config.data.channels,
    ) if load_data else None  # fmt: skip
    state = checkpoint.load(folder / MODEL_FILE)
    num_classes = state[next(k for k in reversed(state) if k.endswith("weight"))].shape[0]
    in_channels = state["normalize.mean"].shape[1] if "normalize.mean" in state else 3
    model = get_model(config.model.arch, num_classes=num_classes, in_channels=in_channels, width=config.model.width)
    model.load_state_dict(state)
    model.eval()
    return TrainedModel(folder=folder, config=config, model=model, data=data)  # type: ignore[arg-type]
