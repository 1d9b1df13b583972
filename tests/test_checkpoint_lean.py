"""Lean checkpoints: the compact encoding is bit-exact, z is left out only when it equals the masked
weights, the selected weights live beside the checkpoints, and a resumed run continues bit for bit.

Bit-exactness is checked on the raw bit patterns (``-0.0`` differs from ``+0.0``, NaN payloads
count), against the original tensors, never against the codec's own output.
"""

from __future__ import annotations

import math

import pytest
import torch

from dnr_sweep.artifacts import checkpoint, state_codec
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import storage
from dnr_sweep.foundation.errors import InputFileError
from dnr_sweep.training.engine import Z_FROM_WEIGHTS, TrainingRun
from tests.test_engine import digits_config


def bits(t: torch.Tensor) -> list[int]:
    """The raw bit pattern of every element, as Python ints (an independent view of the tensor)."""
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.detach().contiguous().reshape(-1).view(ints).tolist()


def assert_bit_identical(a: torch.Tensor, b: torch.Tensor, name: str = "") -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, name
    if a.is_floating_point():
        assert bits(a) == bits(b), name
    else:
        assert torch.equal(a, b), name


def test_same_bits_tells_negative_zero_and_nan_payloads_apart():
    assert not state_codec.same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert torch.equal(torch.tensor([0.0]), torch.tensor([-0.0]))  # why `==` is not enough
    assert state_codec.same_bits(torch.tensor([1.0, -0.0]), torch.tensor([1.0, -0.0]))


def masked_weight(n: int, density: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=gen)
    mask = (torch.rand(n, generator=gen) < density).float()
    return w * mask, mask  # w * 0 is -0.0 where w < 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_masks_and_masked_weights_round_trip_bit_for_bit(dtype):
    weight, mask = masked_weight(64 * 64 * 3, 0.05)
    weight, mask = weight.to(dtype).reshape(64, 64, 3), mask.to(dtype).reshape(64, 64, 3)
    assert any(b < 0 for b, v in zip(bits(weight.float()), weight.float().reshape(-1).tolist(), strict=True)
               if v == 0)  # fmt: skip  # negative zeros are there to lose
    packed_mask, packed_weight = state_codec.encode_tensor(mask), state_codec.encode_tensor(weight)
    assert packed_mask[state_codec.TAG] == "binary"
    assert packed_mask["ones"].numel() == math.ceil(mask.numel() / 8)
    assert packed_weight[state_codec.TAG] == "sparse"
    assert packed_weight["values"].numel() == int((weight != 0).sum())
    assert_bit_identical(state_codec.decode_tensor(packed_mask), mask)
    assert_bit_identical(state_codec.decode_tensor(packed_weight), weight)


def test_special_values_dense_small_and_integer_tensors():
    weight, _ = masked_weight(10_000, 0.1, seed=1)
    weight[[3, 5, 7]] = torch.tensor([math.nan, math.inf, -math.inf])
    weight[11] = -0.0
    assert_bit_identical(state_codec.decode(state_codec.encode(weight)), weight)
    dense = torch.randn(10_000)
    small = torch.zeros(10)
    counts = torch.arange(10_000)
    state = {"a": [dense, (small, counts)], "b": {"c": 1.5, "d": None, "e": "text"}}
    encoded = state_codec.encode(state)
    assert encoded["a"][0] is dense and encoded["a"][1][0] is small and encoded["a"][1][1] is counts
    decoded = state_codec.decode(encoded)
    assert decoded["b"] == state["b"] and isinstance(decoded["a"][1], tuple)
    # an all-zero momentum buffer is "binary": one bit per element, still exact
    zeros = torch.zeros(8192)
    assert state_codec.encode_tensor(zeros)[state_codec.TAG] == "binary"
    assert_bit_identical(state_codec.decode_tensor(state_codec.encode_tensor(zeros)), zeros)


def test_unknown_packed_kind_is_refused():
    with pytest.raises(ValueError, match="unknown packed tensor kind 'rle'"):
        state_codec.decode_tensor({state_codec.TAG: "rle", "shape": [1], "dtype": "float32"})


# ------------------------------------------------------------------------------------------------
# The engine's state


def full_state(run: TrainingRun) -> dict[str, torch.Tensor]:
    """Every tensor that decides how the run continues, by name (not through state_dict)."""
    tensors = {f"model/{k}": v for k, v in run.model.state_dict().items()}
    for group in run.optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            buf = run.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"momentum/{i}"] = buf
    tensors.update({f"mask/{k}": v for k, v in run.masking.masks.items()})
    tensors.update({f"z/{k}": v for k, v in run.l2.z.items()})
    tensors.update({f"selected/{k}": v for k, v in (run.selected_state or {}).items()})
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/attack"] = run.attack_rng.get_state()
    return tensors


def test_z_is_left_out_between_epochs_and_kept_after_the_last(tmp_path):
    config = digits_config(train__epochs=2, train__warmup_epochs=0, model__width=2.0)  # layers >= MIN_NUMEL
    run = TrainingRun(config)
    assert run.state_dict()["l2"]["z"] == Z_FROM_WEIGHTS  # snapshotted at construction
    run.train_epoch()
    state = run.state_dict(selected_weights=False)
    assert state["l2"]["z"] == Z_FROM_WEIGHTS and state["selected_state"] is None
    big = [n for n, m in run.masking.masks.items() if m.numel() >= state_codec.MIN_NUMEL]
    assert big and all(state["masking"]["masks"][n][state_codec.TAG] == "binary" for n in big)
    assert all(state["model"][f"{n}.weight"][state_codec.TAG] == "sparse" for n in big)
    run.train_epoch()  # the last epoch: no rewiring, no snapshot, so z is no longer the weights
    last = run.state_dict()
    assert isinstance(last["l2"]["z"], dict)
    again = TrainingRun(config)
    checkpoint.save(last, tmp_path / "last.pt")
    again.load_state_dict(checkpoint.load(tmp_path / "last.pt"))
    expected, got = full_state(run), full_state(again)
    assert sorted(expected) == sorted(got)
    for name in expected:
        assert_bit_identical(got[name], expected[name], name)


def test_resume_with_selected_weights_beside_is_bit_identical(tmp_path):
    config = digits_config(train__epochs=4)
    straight = TrainingRun(config)
    for _ in range(4):
        straight.train_epoch()

    first = TrainingRun(config)
    first.train_epoch()
    first.train_epoch()
    store = checkpoint.SelectedWeights(storage.locate(tmp_path))
    store.write(first.selection.epoch, first.selected_state_dict())
    checkpoint.save(first.state_dict(selected_weights=False), tmp_path / "state.pt")
    midway = full_state(first)
    del first

    second = TrainingRun(config)
    state = checkpoint.load(tmp_path / "state.pt")
    with pytest.raises(ValueError, match="holds no selected weights"):
        TrainingRun(config).load_state_dict(state)
    second.load_state_dict(state, selected_state=store.read(state["selection"]["epoch"]))
    for name, value in midway.items():
        assert_bit_identical(full_state(second)[name], value, name)
    second.train_epoch()
    second.train_epoch()
    expected, got = full_state(straight), full_state(second)
    for name in expected:
        assert_bit_identical(got[name], expected[name], name)
    assert second.final_metrics() == straight.final_metrics()


def test_an_older_plain_state_still_loads():
    config = digits_config(train__epochs=2)
    run = TrainingRun(config)
    run.train_epoch()
    plain = state_codec.decode(run.state_dict())
    plain["l2"]["z"] = {k: v.clone() for k, v in run.l2.z.items()}  # the layout before lean checkpoints
    del plain["format"]
    again = TrainingRun(config)
    again.load_state_dict(plain)
    for name, value in full_state(run).items():
        assert_bit_identical(full_state(again)[name], value, name)


def test_selected_weights_files_are_named_by_epoch_and_retained_by_reference(tmp_path):
    store = checkpoint.SelectedWeights(storage.locate(tmp_path))
    weights = {"w": torch.tensor([1.0, -0.0, 0.0])}
    for epoch in (1, 3, 7):
        store.write(epoch, weights)
    assert store.epochs() == [1, 3, 7]
    assert (tmp_path / rc.selected_weights_file(7)).is_file()
    store.retain({3, 7})
    assert store.epochs() == [3, 7]
    assert_bit_identical(store.read(3)["w"], weights["w"])
    with pytest.raises(InputFileError, match="selected weights of epoch 1"):
        store.read(1)
    store.clear()
    assert store.epochs() == [] and not (tmp_path / rc.SELECTED_DIR).exists()


# ------------------------------------------------------------------------------------------------
# How often a trial checkpoints


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "often"])
def test_checkpoint_every_is_auto_or_a_positive_whole_number(value):
    from dnr_sweep.config import TuneConfig
    from dnr_sweep.foundation.errors import ConfigError

    assert TuneConfig().checkpoint_every == "auto" and TuneConfig(checkpoint_every=4).checkpoint_every == 4
    with pytest.raises((ConfigError, ValueError), match="must be 'auto' or a whole number of epochs >= 1"):
        TuneConfig(checkpoint_every=value)


def test_trial_asks_for_checkpoints_every_n_epochs_or_by_measured_cost(ray_session):
    from ray import tune
    from ray.tune.result import SHOULD_CHECKPOINT

    from dnr_sweep.config import to_yaml_dict
    from dnr_sweep.sweep.trainable import AUTO_CHECKPOINT_BUDGET, SweepTrainable

    base = to_yaml_dict(digits_config(train__epochs=4))
    every2 = tune.with_parameters(SweepTrainable, base=base)
    every2.checkpoint_every = 2
    every2 = every2({})
    assert [every2.train().get(SHOULD_CHECKPOINT) for _ in range(4)] == [False, True, False, None]  # the last: at end
    every2.stop()

    auto = tune.with_parameters(SweepTrainable, base=base)({})
    assert auto.checkpoint_every == "auto"
    first = auto.train()
    assert first[SHOULD_CHECKPOINT] is True  # the first checkpoint measures what saving costs
    auto.save()
    assert auto._save_seconds is not None and auto._save_seconds > 0
    assert auto._trained_since_save == 0.0
    second = auto.train()
    trained = second["this_epoch/epoch_time_s"]
    assert auto._trained_since_save == trained
    # due once the training since the last checkpoint is 1 / budget times the measured save cost
    assert second[SHOULD_CHECKPOINT] == (trained * AUTO_CHECKPOINT_BUDGET >= auto._save_seconds)
    auto._save_seconds = 1e9
    assert auto.train()[SHOULD_CHECKPOINT] is False
    auto.stop()


def test_trial_rewrites_its_epoch_record_every_epoch_and_carries_it_in_checkpoints(ray_session):
    """The record survives what Tune's driver-staged result.json does not: a restore from a checkpoint
    older than the last reported epoch (tests/test_reports_load.py reads the record into the tables)."""
    import json
    from pathlib import Path

    from ray import tune

    from dnr_sweep.config import to_yaml_dict
    from dnr_sweep.sweep.trainable import SweepTrainable

    trainable = tune.with_parameters(SweepTrainable, base=to_yaml_dict(digits_config(train__epochs=3)))
    first = trainable({})
    results = [first.train()]
    saved = first.save()  # the epoch-1 checkpoint
    results += [first.train(), first.train()]
    record = json.loads((Path(first.logdir) / rc.TRIAL_EPOCHS_FILE).read_text())
    assert [entry["epoch"] for entry in record] == [1, 2, 3]
    for entry, result in zip(record, results, strict=True):  # every figure the trial reported to Tune
        assert entry == {"epoch": result["epoch"], **rc.split_epoch_result(result)[0]}
    first.stop()

    restored = trainable({})  # another trial folder: only the checkpoint carries epoch 1
    restored.restore(saved)
    assert (Path(restored.logdir) / rc.TRIAL_EPOCHS_FILE).exists() is False
    restored.train()
    again = json.loads((Path(restored.logdir) / rc.TRIAL_EPOCHS_FILE).read_text())
    assert [entry["epoch"] for entry in again] == [1, 2]
    assert again[0] == record[0]  # epoch 1 as the checkpoint recorded it, not trained again
    assert again[1]["val_clean_acc"] == record[1]["val_clean_acc"]  # epoch 2 trained again, the same
    restored.stop()
