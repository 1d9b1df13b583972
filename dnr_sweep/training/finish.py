"""The one finish step of a training run, shared by ``dnr-sweep train`` and every sweep trial.

After the last epoch, with the run's folder (a ``train --out`` folder or a trial folder):

1. the selected epoch's weights -> ``model.pt`` (plain ``state_dict``, masks applied) and the
   resolved run config -> ``config.yaml``;
2. the run's result (:meth:`TrainingRun.final_metrics`: the selected epoch's validation and sparsity
   figures, and the full test split evaluated once on those weights);
3. the configured post-training actions on that ``model.pt`` (``evaluate:``/``export:``,
   :mod:`dnr_sweep.training.post_training`), whose metrics join the result;
4. the result -> ``metrics.json`` (:func:`dnr_sweep.foundation.run_contract.metrics_json`).

The returned dict is exactly what ``metrics.json`` holds (flat), what the trial reports to Tune on
its last epoch and what its ``results.parquet`` row holds: all of it describes the same ``model.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import to_yaml_dict
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.training.engine import TrainingRun
from dnr_sweep.training.post_training import after_training


def write_config(config: Any, folder: Path) -> Path:
    """The resolved run config as ``config.yaml`` (atomically)."""
    text = yaml.safe_dump(to_yaml_dict(config), sort_keys=False)
    return checkpoint.atomic_write_bytes(Path(folder) / rc.CONFIG_FILE, lambda handle: handle.write(text.encode()))


def finish_run(run: TrainingRun, folder: str | Path) -> dict[str, Any]:
    """Write the finished ``run``'s selected model, config and metrics into ``folder``; its result."""
    folder = Path(folder)
    result = run.final_metrics()
    checkpoint.save(run.selected_state_dict(), folder / rc.MODEL_FILE)
    write_config(run.config, folder)
    result.update(after_training(run, folder))
    checkpoint.write_json(rc.metrics_json(result), folder / rc.METRICS_FILE)
    return result
