"""The run lifecycle is one object: ``dnr-sweep train`` and a sweep trial keep the same epoch record, the same
checkpointed run state and the same result for the same config, and the selected weights beside the checkpoints
are written only when new and kept only while a checkpoint that may still be loaded names them."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from dnr_sweep.artifacts import checkpoint, state_codec
from dnr_sweep.config import to_yaml_dict
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import storage
from dnr_sweep.training.engine import TrainingRun
from dnr_sweep.training.lifecycle import RunLifecycle
from dnr_sweep.training.single_run import train_to_dir
from tests.test_engine import digits_config


def timeless(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its wall-clock figures (the only ones two identical runs may differ in)."""
    return {k: v for k, v in row.items() if not k.endswith("_time_s")}


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """``a`` and ``b`` hold the same values: tensors bit for bit, NaN equal to NaN."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and state_codec.same_bits(a, b), where
    elif isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def test_train_and_a_trial_keep_the_same_record_checkpoint_and_result(ray_session, tmp_path, monkeypatch):
    from ray import tune

    from dnr_sweep.sweep.trainable import SweepTrainable

    config = digits_config(train__epochs=3)
    out = tmp_path / "train"
    real = TrainingRun.train_epoch

    def stop_before_the_last(self, *args, **kwargs):  # noqa: ANN001, ANN202
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(TrainingRun, "train_epoch", stop_before_the_last)
        with pytest.raises(KeyboardInterrupt):
            train_to_dir(config, out, log=lambda _: None)
    saved = checkpoint.load(out / rc.CHECKPOINT_FILE)
    assert sorted(saved) == ["config", "rows", "run"]  # train's checkpoint.pt: the selected weights beside it
    run_state = state_codec.decode(saved["run"])
    selected_epoch = run_state["selection"]["epoch"]
    assert run_state["selected_state"] is None and selected_epoch is not None
    run_state["selected_state"] = checkpoint.SelectedWeights(storage.locate(out)).read(selected_epoch)

    trial = tune.with_parameters(SweepTrainable, base=to_yaml_dict(config))({})
    trial.train()
    trial.train()
    trial.save_checkpoint(str(tmp_path / "trial_checkpoint"))
    trial_state = checkpoint.load(tmp_path / "trial_checkpoint" / rc.TRIAL_STATE_FILE)
    assert sorted(trial_state) == ["epochs", "run"]  # a trial outside Tune: the selected weights inside
    assert_same(state_codec.decode(trial_state["run"]), run_state, "run")
    assert_same([timeless(r) for r in trial_state["epochs"]], [timeless(r) for r in saved["rows"]], "record")

    result = train_to_dir(config, out, resume=True, log=lambda _: None)
    final = trial.train()
    assert_same({key: final[key] for key in result}, result, "result")
    trial_dir = trial.trial_dir
    assert_same(checkpoint.load(trial_dir / rc.MODEL_FILE), checkpoint.load(out / rc.MODEL_FILE), "model.pt")
    assert (trial_dir / rc.METRICS_FILE).read_text() == (out / rc.METRICS_FILE).read_text()
    record = json.loads((trial_dir / rc.TRIAL_EPOCHS_FILE).read_text())
    rows = checkpoint.load(out / rc.CHECKPOINT_FILE)["rows"]
    assert_same([timeless(r) for r in record], json.loads(json.dumps([timeless(r) for r in rows])), "record")
    trial.stop()


def test_selected_weights_are_written_when_new_and_kept_while_a_loadable_checkpoint_names_them(tmp_path, monkeypatch):
    """With ``kept=2`` (Tune keeps one checkpoint and drops the older only after the newer persists) each
    checkpoint names the selections of the last two; a fresh lifecycle loads the newest exactly."""
    config = digits_config(train__epochs=4, train__warmup_epochs=0)
    life = RunLifecycle(config, storage.locate(tmp_path), kept=2)
    writes: list[int] = []
    real_write = checkpoint.SelectedWeights.write
    monkeypatch.setattr(
        checkpoint.SelectedWeights, "write", lambda self, e, w: (writes.append(e), real_write(self, e, w))
    )
    named: list[int | None] = []
    for n in range(3):
        life.train_epoch()
        life.save(tmp_path / f"state_{n}.pt")
        named.append(life.run.selection.epoch)
        state = checkpoint.load(tmp_path / f"state_{n}.pt")
        assert state["selected_refs"] == named[-2:]
        assert_same(state["epochs"], life.epochs, "record")
        assert life.selected.epochs() == sorted({e for e in named[-2:] if e is not None})
    assert writes == sorted(set(writes)) and set(writes) == {e for e in named if e is not None}  # each one once

    again = RunLifecycle(config, storage.locate(tmp_path), kept=2)
    again.load(checkpoint.load(tmp_path / "state_2.pt"))
    assert again.run.epoch == 3
    assert_same(again.epochs, life.epochs, "record")
    assert_same(state_codec.decode(again.run.state_dict()), state_codec.decode(life.run.state_dict()), "run")
    with pytest.raises(ValueError, match="keeps its selected weights beside it"):
        RunLifecycle(config).load(checkpoint.load(tmp_path / "state_2.pt"))
