"""Hostile and careless input, second round, as matrices over classes (issue 27), not single cases:

- every count a config or flag takes has a bound torch/NumPy/Optuna accept, named in the message;
- no message contradicts itself (an infinite end written as if it were in the range);
- YAML keys given twice are refused, wherever they are, naming the key and both lines;
- outputs are kept or refused, never silently replaced (export, evaluate, attack-strength curves);
- ``status`` tells running, interrupted and finished runs apart from their files (hand-made run folders).

Tune-state pickles: tests/test_tune_state.py. The helpers are tests/test_hostile.py's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dnr_sweep.config import MAX_TRIALS, validate_sweep
from dnr_sweep.foundation import bounds
from dnr_sweep.foundation.errors import ConfigError
from tests.test_hostile import _merged, _model_folder, call, write_yaml
from tests.test_sweep import BASE

#: every integer count of the config, with its bound
COUNT_FIELDS = {
    "train.seed": bounds.MAX_SEED, "train.epochs": bounds.MAX_EPOCHS, "train.batch_size": bounds.MAX_BATCH_SIZE,
    "train.eval_batch_size": bounds.MAX_BATCH_SIZE, "train.warmup_epochs": bounds.MAX_EPOCHS,
    "train.eval_every": bounds.MAX_EPOCHS, "train.eval_subset": bounds.MAX_IMAGES,
    "attack.train.steps": bounds.MAX_ATTACK_STEPS, "attack.eval.pgd.steps": bounds.MAX_ATTACK_STEPS,
    "attack.eval.pgd.restarts": bounds.MAX_RESTARTS, "tune.keep_checkpoints": bounds.MAX_CHECKPOINTS,
    "tune.checkpoint_every": bounds.MAX_EPOCHS, "evaluate.limit": bounds.MAX_IMAGES,
    "tune.max_concurrent_trials": MAX_TRIALS, "tune.num_samples": MAX_TRIALS, "tune.max_failures": bounds.MAX_FAILURES,
}  # fmt: skip
ABSURD = [2**64, 10**22, 2**63, -(2**63) - 1]


def _with(path: str, value: object) -> dict:
    data = json.loads(json.dumps(BASE))
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return data


@pytest.mark.parametrize("value", ABSURD)
@pytest.mark.parametrize("path", sorted(COUNT_FIELDS))
def test_absurd_counts_are_refused_with_the_bound_named(tmp_path, path, value):
    config = write_yaml(tmp_path / "c.yaml", _with(path, value))
    code, err = call(["validate", str(config)])
    assert code == 2 and "Traceback" not in err, err
    assert path in err, err
    if value > 0:
        assert str(COUNT_FIELDS[path]) in err, err


@pytest.mark.parametrize("path", sorted(COUNT_FIELDS))
def test_the_bound_itself_validates_where_nothing_else_forbids_it(path):
    """The bounds are not off by one: the largest value allowed is accepted by the field (other checks,
    e.g. warmup <= epochs, may still refuse the combination; those messages name another field)."""
    try:
        validate_sweep(_with(path, COUNT_FIELDS[path]))
    except ConfigError as exc:
        assert f"{path}: must be in" not in str(exc), str(exc)


@pytest.mark.parametrize("seed", [0, 1, bounds.MAX_SEED])
def test_every_seed_that_validates_is_one_torch_numpy_and_optuna_take(seed):
    config = validate_sweep(_with("train.seed", seed))
    torch.manual_seed(config.train.seed)
    np.random.RandomState(config.train.seed)
    import optuna

    optuna.samplers.TPESampler(seed=config.train.seed)


@pytest.mark.parametrize("rule", [{"grid": [0, 2**64]}, {"choice": [1, 10**22]}, {"randint": [0, 2**70]}])
def test_an_absurd_seed_in_a_search_rule_is_refused(tmp_path, rule):
    config = write_yaml(tmp_path / "c.yaml", {**BASE, "search": {"train.seed": rule}})
    code, err = call(["validate", str(config)])
    assert code == 2 and "train.seed" in err and "Traceback" not in err, err


FLOAT_FIELDS = ["train.lr", "train.momentum", "train.weight_decay", "dnr.rho", "dnr.beta"]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("path", FLOAT_FIELDS)
def test_no_range_message_contradicts_its_value(tmp_path, path, value):
    """'must be in [0, inf], got inf' said inf was allowed: an infinite end is written open."""
    config = write_yaml(tmp_path / "c.yaml", _with(path, value))
    code, err = call(["validate", str(config)])
    assert code == 2 and path in err, err
    assert "inf]" not in err and "[-inf" not in err, err


@pytest.mark.parametrize(
    "attacks",
    [",", " , ", "pgd99999999999999999999", "pgd5x99999999", f"pgd{bounds.MAX_ATTACK_STEPS + 1}", "pgd" + "9" * 5000],
)
def test_evaluate_attack_lists_that_mean_nothing_or_forever_are_refused(tmp_path, attacks):
    model = _model_folder(tmp_path / "model")
    before = sorted(p.name for p in model.iterdir())
    code, err = call(["evaluate", str(model), "--attacks", attacks])
    assert code == 2 and "--attacks" in err and "Traceback" not in err, err
    assert sorted(p.name for p in model.iterdir()) == before


@pytest.mark.parametrize("flag,value", [("--seed", str(2**64)), ("--seed", "-1"), ("--limit", str(10**12)),
                                        ("--batch-size", str(2**40))])  # fmt: skip
def test_evaluate_count_flags_are_bounded(tmp_path, flag, value):
    code, err = call(["evaluate", str(_model_folder(tmp_path / "model")), flag, value])
    assert code == 2 and flag in err and "Traceback" not in err, err


@pytest.mark.parametrize("attack", ["pgd99999999999999999999", "pgd20x99999"])
def test_absurd_attack_names_in_the_config_are_refused(tmp_path, attack):
    config = write_yaml(tmp_path / "c.yaml", _merged({"evaluate": {"attacks": [attack]}}))
    code, err = call(["validate", str(config)])
    assert code == 2 and "evaluate.attacks" in err and "above the bound" in err, err


# ------------------------------------------------------------------------------------------------
# YAML keys given twice

DUPLICATES = {
    "a second top-level block": ("train: {epochs: 2}\nmodel: {arch: smallcnn}\ntrain: {lr: 0.1}\n", "train", 1, 3),
    "a key twice in a block": ("data:\n  dataset: digits\n  val_size: 100\n  val_size: 200\n", "val_size", 3, 4),
    "twice in a flow mapping": ("dnr: {density: 0.2, density: 0.5}\n", "density", 1, 1),
    "twice in a search rule": ("search:\n  dnr.density:\n    grid: [0.1]\n    grid: [0.2]\n", "grid", 3, 4),
}


@pytest.mark.parametrize("case", sorted(DUPLICATES))
def test_duplicate_yaml_keys_are_refused_naming_the_key_and_lines(tmp_path, case):
    text, key, first, second = DUPLICATES[case]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, err = call(["validate", str(path)])
    assert code == 2 and "Traceback" not in err, err
    assert f"duplicate key '{key}'" in err and f"first at line {first}" in err and f"line {second}," in err, err


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    from dnr_sweep.foundation import yaml_safe

    assert yaml_safe.load("a: &x {k: 1, j: 2}\nb:\n  <<: *x\n  k: 3\n") == {
        "a": {"k": 1, "j": 2},
        "b": {"k": 3, "j": 2},
    }


# ------------------------------------------------------------------------------------------------
# Outputs are kept or refused


def test_export_refuses_an_existing_out_without_force(tmp_path):
    model = _model_folder(tmp_path / "model")
    for name in ("m.pt2", "m.json"):
        out = tmp_path / name
        out.write_bytes(b"an earlier export")
        code, err = call(["export", str(model), "--out", str(tmp_path / "m.pt2")])
        assert code == 2 and "--force" in err and name in err, err
        assert out.read_bytes() == b"an earlier export"
        out.unlink()


def test_evaluation_json_is_merged_by_attack(tmp_path):
    from dnr_sweep.evaluation import write_evaluation

    first = {"clean": 90.0, "fgsm": 40.0, "checks": [], "settings": {"eps": 0.1}}
    second = {"clean": 91.0, "checks": [], "settings": {"eps": 0.2}}
    path = write_evaluation(first, tmp_path)
    write_evaluation(second, tmp_path)
    merged = json.loads(path.read_text())
    assert merged["clean"] == 91.0 and merged["settings"] == {"eps": 0.2}  # measured again: the new figure
    assert merged["fgsm"] == 40.0 and merged["earlier"]["fgsm"] == {"accuracy": 40.0, "settings": {"eps": 0.1}}
    write_evaluation({"fgsm": 41.0, "checks": [], "settings": {"eps": 0.3}}, tmp_path)
    again = json.loads(path.read_text())
    assert again["fgsm"] == 41.0 and again["clean"] == 91.0 and "fgsm" not in again["earlier"]


def test_an_unreadable_evaluation_json_is_kept_aside(tmp_path):
    from dnr_sweep.evaluation import write_evaluation
    from dnr_sweep.foundation.errors import DataRecoveryWarning

    (tmp_path / "evaluation.json").write_bytes(b"{oops")
    with pytest.warns(DataRecoveryWarning, match="moved aside"):
        write_evaluation({"clean": 1.0, "checks": []}, tmp_path)
    assert (tmp_path / "evaluation.json.unreadable").read_bytes() == b"{oops"


def test_attack_strength_curves_are_kept_never_replaced(tmp_path):
    from dnr_sweep.evaluation import write_strength_curves

    first = {"steps": {"1": 50.0}, "eps": {"0.1": 40.0}}
    second = {"steps": {"1": 45.0}, "eps": {"0.2": 30.0}}
    path = write_strength_curves(first, tmp_path)
    write_strength_curves(first, tmp_path)  # the same curves again: nothing to keep
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attack_strength.json"]
    write_strength_curves(second, tmp_path)
    write_strength_curves({"steps": {"2": 1.0}, "eps": {}}, tmp_path)
    assert json.loads(path.read_text()) == {"steps": {"2": 1.0}, "eps": {}}
    assert json.loads((tmp_path / "attack_strength.earlier-1.json").read_text()) == first
    assert json.loads((tmp_path / "attack_strength.earlier-2.json").read_text()) == second
    (tmp_path / "attack_strength.json").write_bytes(b"{oops")  # an unreadable one is kept too
    write_strength_curves(first, tmp_path)
    assert (tmp_path / "attack_strength.earlier-3.json").read_bytes() == b"{oops"


def test_evaluate_curves_twice_keeps_the_first_curves(tmp_path):
    """Through the command: a second ``evaluate --curves`` under another eps keeps the first file whole."""
    from tests.test_outside_world import TINY_RUN

    model = tmp_path / "model"
    assert call(["train", str(write_yaml(tmp_path / "c.yaml", TINY_RUN)), "--out", str(model)])[0] == 0
    for eps in ("0.1", "0.2"):
        code, err = call(["evaluate", str(model), "--curves", "--curve-eps", eps, "--limit", "8", "--eps", eps,
                          "--no-checks", "--device", "cpu"])  # fmt: skip
        assert code == 0, err
    earlier = json.loads((model / "attack_strength.earlier-1.json").read_text())
    assert list(earlier["eps"]) == ["0.1"]
    assert list(json.loads((model / "attack_strength.json").read_text())["eps"]) == ["0.2"]


# ------------------------------------------------------------------------------------------------
# `status` tells what the files say: hand-made run folders of each situation


def _status_run(folder, *, epochs_done, tune_status, end=None, parquet=False, state=None):  # noqa: ANN001, ANN202
    """A run folder of 2 trials x 2 epochs: Tune's state (or ``state`` bytes, damaged), trial folders with
    ``epochs_done`` result lines each, the live report's ``results.parquet`` when ``parquet``, and the
    driver's end mark (``end``: "finished" or "interrupted") when given. Written in that order, as the driver
    does, each file a second newer than the one before."""
    import os
    import time

    import pandas as pd
    import yaml

    from dnr_sweep.foundation import run_contract as rc

    folder.mkdir()
    clock = [time.time() - 60]

    def written(path):  # noqa: ANN001, ANN202
        clock[0] += 1
        os.utime(path, (clock[0], clock[0]))

    config = {**BASE, "train": {**BASE["train"], "epochs": 2}, "search": {"dnr.density": {"grid": [0.1, 0.5]}}}
    (folder / rc.CONFIG_FILE).write_text(yaml.safe_dump(config))
    (folder / rc.SWEEP_FILE).write_text(json.dumps({"overrides": [], "config_source": "x.yaml"}))
    written(folder / rc.CONFIG_FILE)
    trials = []
    for i, density in enumerate((0.1, 0.5)):
        trial_id, name = f"t{i}", f"DNRTrainable_t{i}"
        (folder / name).mkdir()
        (folder / name / rc.TUNE_PARAMS_FILE).write_text(json.dumps({"dnr.density": density}))
        lines = [
            {"trial_id": trial_id, **rc.tune_result(e, {"epoch_time_s": 1.0}, {"selected_epoch": e, "val_clean_acc": 50.0},
                                                  {"epochs": 2} if e == 2 else None)}
            for e in range(1, epochs_done + 1)
        ]  # fmt: skip
        (folder / name / rc.TUNE_RESULT_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
        written(folder / name / rc.TUNE_RESULT_FILE)
        trials.append([json.dumps({"trial_id": trial_id, "status": tune_status, "relative_logdir": name,
                                   "config": {"dnr.density": density}}), json.dumps({"num_failures": 0})])  # fmt: skip
    state_path = folder / "experiment_state-2026-01-01_00-00-00.json"
    state_path.write_bytes(state if state is not None else json.dumps({"trial_data": trials}).encode())
    written(state_path)
    if parquet:
        table = pd.DataFrame({"trial_id": ["t0", "t1"], "epochs_completed": [epochs_done] * 2,
                              "status": ["TERMINATED" if end == "finished" else "RUNNING"] * 2})  # fmt: skip
        table.to_parquet(folder / rc.RESULTS_FILE)
        written(folder / rc.RESULTS_FILE)
    if end is not None:
        (folder / rc.DRIVER_END_FILE).write_text(json.dumps({"ended": clock[0], "interrupted": end == "interrupted"}))
        written(folder / rc.DRIVER_END_FILE)
    return folder


DAMAGED_STATES = {"empty": b"", "truncated": b'{"trial_data": [["{\\"trial_id', "garbage": b"\x00\xff" * 40,
                  "a list": b"[]", "no trials": b'{"stats": {}}'}  # fmt: skip


def test_status_says_running_while_the_live_report_rewrites_the_tables(tmp_path):
    """Seen twice: "interrupted, 0 running" mid-sweep, because the live report's results.parquet was newer
    than Tune's last snapshot and counted as the driver's end."""
    from dnr_sweep.sweep.status import sweep_status

    run = _status_run(tmp_path / "run", epochs_done=1, tune_status="RUNNING", parquet=True)
    status = sweep_status(run)
    assert status.phase == "running" and status.live, status.notes
    assert status.counts["running"] == 2 and status.counts["interrupted"] == 0


@pytest.mark.parametrize("damage", sorted(DAMAGED_STATES))
def test_status_of_a_finished_run_with_a_damaged_state_is_finished(tmp_path, damage):
    from dnr_sweep.sweep.status import sweep_status

    run = _status_run(tmp_path / "run", epochs_done=2, tune_status="TERMINATED", end="finished", parquet=True)
    state = next(run.glob("experiment_state-*.json"))
    state.write_bytes(DAMAGED_STATES[damage])  # damaged after the end: now the newest file of the folder
    status = sweep_status(run)
    assert status.phase == "finished" and not status.live, (damage, status.phase, status.notes)
    assert status.counts["finished"] == 2 and status.counts["running"] == 0
    if damage != "no trials":
        assert any("unreadable Tune state" in note for note in status.notes)


@pytest.mark.parametrize(
    ("situation", "build", "phase", "counts"),
    [
        (
            "finished",
            {"epochs_done": 2, "tune_status": "TERMINATED", "end": "finished", "parquet": True},
            "finished",
            {"finished": 2},
        ),
        (
            "interrupted by Ctrl-C",
            {"epochs_done": 1, "tune_status": "RUNNING", "end": "interrupted", "parquet": True},
            "interrupted",
            {"interrupted": 2, "running": 0},
        ),
        (
            "killed driver, live tables left",
            {"epochs_done": 1, "tune_status": "RUNNING", "parquet": True},
            "interrupted",
            {"interrupted": 2, "running": 0},
        ),
        ("training, no tables yet", {"epochs_done": 1, "tune_status": "RUNNING"}, "running", {"running": 2}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_status_phase_matrix(tmp_path, situation, build, phase, counts):
    import time

    from dnr_sweep.sweep.status import sweep_status

    run = _status_run(tmp_path / "run", **build)
    # a driver killed an hour ago has written nothing since; the others are read at once
    later = time.time() + (3600 if situation.startswith("killed") else 0)
    status = sweep_status(run, now=later)
    assert status.phase == phase, (situation, status.phase, status.notes)
    for state, count in counts.items():
        assert status.counts[state] == count, (situation, state, status.counts)


def test_status_of_a_resumed_run_is_running_again(tmp_path):
    """A resumed session saves Tune's state again, after the last session's end mark: running."""
    import os
    import time

    from dnr_sweep.sweep.status import sweep_status

    run = _status_run(tmp_path / "run", epochs_done=1, tune_status="RUNNING", end="interrupted", parquet=True)
    state = next(run.glob("experiment_state-*.json"))
    os.utime(state, (time.time(), time.time()))
    status = sweep_status(run)
    assert status.phase == "running" and status.counts["running"] == 2, status.notes


# ------------------------------------------------------------------------------------------------
# Unknown keys: every block names what it takes (never an empty list)


@pytest.mark.parametrize("prefix", ["", "data", "model", "train", "dnr", "attack.train", "attack.eval.pgd", "tune",
                                    "tune.scheduler.asha", "tune.search_alg.optuna", "search.dnr.density",
                                    "tune.resources_per_trial", "evaluate", "report"])  # fmt: skip
def test_an_unknown_key_in_any_block_lists_the_valid_ones(prefix):
    data = json.loads(json.dumps(BASE))
    data["search"] = {"dnr.density": {"grid": [0.1]}}
    data["tune"] = {**data["tune"], "scheduler": {"asha": {}}, "search_alg": {"optuna": {}}}
    node = data
    for part in ("search", "dnr.density") if prefix.startswith("search") else [p for p in prefix.split(".") if p]:
        node = node.setdefault(part, {})
    node["zzz_unknown"] = 1
    with pytest.raises(ConfigError) as info:
        validate_sweep(data)
    line = next(m for m in info.value.messages if "zzz_unknown" in m)
    listed = "valid keys: " in line or "expected exactly one of grid, choice" in line  # a search rule names its kinds
    assert listed and not line.rstrip().endswith(("valid keys:", "one of")), line
