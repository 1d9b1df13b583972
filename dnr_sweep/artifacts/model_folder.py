"""Finding and loading a trained model: a ``dnr-sweep train --out`` folder or a sweep trial folder.

Both hold ``config.yaml`` (the resolved run config) and ``model.pt`` (the selected epoch's plain
``state_dict``, masks applied). A run folder (``dnr-sweep run``) holds one trial folder per trial;
``resolve_model_dir(RUN_DIR, trial="...")`` picks one by (a prefix of) its Tune trial id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from torch import nn

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import RunConfig, read_yaml, validation_messages
from dnr_sweep.config.load import LEFT_OUT_WHEN_DEFAULT
from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.data.loaders import DataSplits, build_datasets
from dnr_sweep.foundation import files
from dnr_sweep.foundation.errors import ConfigError, InputFileError, PathError
from dnr_sweep.foundation.run_contract import CONFIG_FILE, MODEL_FILE
from dnr_sweep.models.architectures import get_model

#: what to do about a trained model's files that cannot be used
_RETRAIN = "Train it again (or restore the folder from a backup); files in a trained folder are written by dnr-sweep"


@dataclass
class TrainedModel:
    folder: Path
    config: RunConfig
    model: nn.Module
    data: DataSplits


def trial_folders(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(run_dir).glob(f"*/{MODEL_FILE}"))


def resolve_model_dir(path: str | Path, trial: str | None = None) -> Path:
    """The folder holding model.pt: ``path`` itself (resolved where the user named it: files are written
    into it, never through a link below it), or the trial of run folder ``path`` named ``trial``."""
    if not str(path).strip():
        raise PathError(
            "MODEL '': an empty path; pass a `dnr-sweep train --out` folder, a trial folder or a run folder"
        )
    path = files.named_folder(path)
    if path.is_file():
        raise PathError(f"{path}: a file, not a folder; pass the folder that holds {MODEL_FILE} and {CONFIG_FILE}")
    if not path.is_dir():
        raise PathError(f"{path}: no such folder, so no {MODEL_FILE}; pass a `dnr-sweep train --out` folder, a trial "
                        "folder or a run folder")  # fmt: skip
    if (path / MODEL_FILE).is_file() and trial is None:
        return path
    candidates = trial_folders(path)
    if not candidates:
        raise PathError(
            f"{path}: no {MODEL_FILE} here nor in any trial folder; pass a `dnr-sweep train --out` folder, "
            "a trial folder, or a run folder with --trial"
        )
    if trial is None:
        names = ", ".join(p.name for p in candidates[:5])
        raise PathError(f"{path}: a run folder with {len(candidates)} trials; choose one with --trial ({names}, ...)")
    matches = [p for p in candidates if trial and trial in p.name]
    if len(matches) != 1:
        raise PathError(f"{path}: --trial {trial!r} matches {len(matches)} trial folders; give more of its id")
    return matches[0]


def load_run_config(folder: Path) -> RunConfig:
    """The resolved run config a trained folder holds (``config.yaml``, written by dnr-sweep)."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise InputFileError(config_path, "no such file", expected=f"the run's resolved config beside {MODEL_FILE}",
                             fix=_RETRAIN)  # fmt: skip
    raw = read_yaml(config_path)
    missing = [key for key in RunConfig.model_fields if key not in raw and key not in LEFT_OUT_WHEN_DEFAULT]
    if missing:  # dnr-sweep writes the resolved config: every section is there
        problem = "is empty" if not raw else f"lacks {', '.join(missing)} (cut short?)"
        raise InputFileError(config_path, problem, expected="the resolved run config dnr-sweep wrote (every section)",
                             fix=_RETRAIN)  # fmt: skip
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([*validation_messages(RunConfig, exc, str(config_path)),
                           f"{config_path}: not the run config dnr-sweep wrote there. {_RETRAIN}"]) from None  # fmt: skip


def load_trained(path: str | Path, trial: str | None = None, *, load_data: bool = True) -> TrainedModel:
    """The selected model of a train folder or trial, in eval mode on the CPU, with its data splits."""
    folder = resolve_model_dir(path, trial)
    config = load_run_config(folder)
    if load_data:  # a command on this machine (evaluate): fetched and verified here if missing, as `run` does
        data_fetch.prepare(config.data)
    data = build_datasets(
        config.data.dataset, root=config.data.root_path, download=config.data.download,
        val_size=config.data.val_size, seed=config.train.seed, image_size=config.data.image_size,
        channels=config.data.channels,
    ) if load_data else None  # fmt: skip
    model_path = folder / MODEL_FILE
    state = checkpoint.load_state_dict(model_path, fix=_RETRAIN)
    try:
        num_classes = state[next(k for k in reversed(state) if k.endswith("weight"))].shape[0]
        mean = state.get("normalize.mean")
        in_channels = mean.shape[1] if mean is not None and mean.dim() > 1 else 3
        model = get_model(config.model.arch, num_classes=num_classes, in_channels=in_channels,
                          width=config.model.width)  # fmt: skip
        model.load_state_dict(state)
    except (StopIteration, IndexError, RuntimeError, ValueError) as exc:  # shapes/keys of another model
        problem = f"does not fit the {config.model.arch} (width {config.model.width:g}) its {CONFIG_FILE} describes"
        detail = str(exc).splitlines()[0][:200]
        raise InputFileError(model_path, f"{problem} ({detail})", expected="that model's state_dict",
                             fix=_RETRAIN) from None  # fmt: skip
    model.eval()
    return TrainedModel(folder=folder, config=config, model=model, data=data)  # type: ignore[arg-type]
