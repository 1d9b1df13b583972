"""Hostile input as a class: every user-caused failure is one message and exit code 2, never a
traceback; a config that validates can run; no run is ever lost (README, "Reliability and security").

- property-based fuzzing (Hypothesis) of configs, ``--set`` strings and command-line flags;
- a file-corruption matrix: every kind of file the tool reads, empty / truncated / random bytes /
  wrong kind / hostile;
- the dry preparation's refusals (each a config that used to validate and then fail);
- two writers on one folder; file modes under a umask; an unreachable ``--address``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import random
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dnr_sweep import cli
from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import RunConfig, SweepConfig, leaf_paths, load_sweep_config, to_yaml_dict
from dnr_sweep.foundation import files
from dnr_sweep.foundation import locks as folder_lock
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import DataRecoveryWarning, FolderBusyError, InputFileError, UserError
from dnr_sweep.models.architectures import get_model
from dnr_sweep.reports.load import load_run, rebuild_tables
from dnr_sweep.training import dry_run
from tests.synthetic_runs import synthetic_tables, write_synthetic_run
from tests.test_sweep import BASE

REPO = Path(__file__).resolve().parents[1]


def call(argv: list[str]) -> tuple[int | str, str]:
    """``dnr-sweep ARGV`` in this process: (exit code, stderr). An exception escaping ``main`` is a
    traceback for the user: it fails the test that sees it."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code: int | str = cli.main(argv)
        except SystemExit as exc:  # argparse: a bad flag prints usage and exits 2
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------
# The dry preparation: configs that validated, then failed in every trial (or after all training)

DRY_RUN_BAD = {
    "val_size above the training set": ({"data": {"val_size": 5000}}, ["data.val_size", "1437", "at most 1436"]),
    "float rule on an integer field": ({"search": {"train.epochs": {"uniform": [1, 3]}}},
                                       ["search.train.epochs.uniform", "use randint or grid"]),
    "report.y no trial reports": ({"report": {"y": ["robust_acc"]}}, ["report.y", "'robust_acc'", "clean_acc"]),
    "report.x no trial reports": ({"report": {"x": "speed"}}, ["report.x", "'speed'"]),
    "channel density below the dense stem": ({"dnr": {"pruning": "channel", "density": 0.01}},
                                             ["dnr.density", "minimum for channel pruning"]),
    "searched density below the minimum": ({"search": {"dnr.pruning": {"grid": ["irregular", "channel"]},
                                                       "dnr.density": {"grid": [0.01, 0.5]}}},
                                           ["dnr.density", "minimum for channel pruning", "[at search"]),
    "model too deep for the images": ({"model": {"arch": "vgg16", "width": 0.25}}, ["model.arch", "vgg16", "1x8x8"]),
    "last batch of one image": ({"model": {"arch": "resnet18", "width": 0.25},  # its last BatchNorm sees 1x1 maps
                                 "train": {**BASE["train"], "batch_size": 2}}, ["train.batch_size", "single image"]),
    "evaluate on an empty val split": ({"data": {"val_size": 0}, "train": {**BASE["train"], "select_on": "test"},
                                        "tune": {**BASE["tune"], "metric": None}, "evaluate": {"split": "val"}},
                                       ["evaluate.split", "val_size is 0"]),
    "cuda trial without a GPU": ({"train": {**BASE["train"], "device": "cuda"}},
                                 ["train.device", "resources_per_trial.gpu is 0"]),
    "bf16 on the CPU": ({"train": {**BASE["train"], "precision": "bf16"}}, ["train.precision", "CUDA only"]),
    "quniform bounds off the step": ({"search": {"dnr.density": {"quniform": [0.05, 1.0, 0.1]}}},
                                     ["search.dnr.density", "not a multiple of the step"]),
    "crop padding larger than the images": ({"data": {"dataset": "synthetic", "image_size": 4, "val_size": 16}},
                                            ["data.image_size", "random-crop"]),
    "channels an RGB set cannot give": ({"data": {"dataset": "cifar10", "channels": 1, "val_size": 5000}},
                                        ["data.channels", "not 1"]),
    "a true where a number goes": ({"train": {**BASE["train"], "epochs": True}}, ["train.epochs", "boolean true"]),
    "infinite learning rate": ({"train": {**BASE["train"], "lr": float("inf")}}, ["train.lr", "got inf"]),
    "a width that would fill the memory": ({"model": {"arch": "smallcnn", "width": 1000}}, ["model.width", "(0, 4]"]),
    "a million trials": ({"tune": {**BASE["tune"], "num_samples": 10**6}}, ["tune.num_samples", "100000"]),
    "ASHA grace period past the last epoch": ({"tune": {**BASE["tune"], "scheduler": {"asha": {"grace_period": 5}}}},
                                              ["tune.scheduler.asha.grace_period", "above max_t (2"]),
}  # fmt: skip


def _merged(blocks: dict) -> dict:
    data = json.loads(json.dumps(BASE))
    for key, value in blocks.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) and key != "search" else value
    return data


@pytest.mark.parametrize("case", sorted(DRY_RUN_BAD))
def test_config_that_cannot_run_fails_validate_and_run_before_ray(tmp_path, case, no_ray):
    blocks, fragments = DRY_RUN_BAD[case]
    path = write_yaml(tmp_path / "c.yaml", _merged(blocks))
    code, err = call(["validate", str(path)])
    assert code == 2, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert str(path) in err and "Traceback" not in err
    code, err = call(["run", str(path), "--storage", str(tmp_path / "runs")])
    assert code == 2 and fragments[0] in err, err
    assert not (tmp_path / "runs").exists()


def test_empty_config_no_longer_validates(tmp_path):
    """Its defaults hold out 5,000 validation images of digits' 1,437: it gets its own message."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    code, err = call(["validate", str(path)])
    assert code == 2 and "the config is empty" in err and "val_size: 5000" not in err


def test_train_refuses_before_any_work(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", _merged({"data": {"val_size": 5000}}))
    code, err = call(["train", str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and "data.val_size" in err
    assert not (tmp_path / "out").exists()


def test_local_train_refuses_cuda_without_one(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = write_yaml(tmp_path / "c.yaml", _merged({"train": {**BASE["train"], "device": "cuda"}}))
    code, err = call(["train", str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and "train.device" in err and "no CUDA device" in err


def test_missing_optional_attack_package_is_refused_before_training(tmp_path, monkeypatch):
    real = dry_run.importlib.util.find_spec
    monkeypatch.setattr(
        dry_run.importlib.util, "find_spec", lambda name: None if name == "pyautoattack" else real(name)
    )
    path = write_yaml(tmp_path / "c.yaml", _merged({"evaluate": {"attacks": ["autoattack"]}}))
    code, err = call(["validate", str(path)])
    assert code == 2 and "evaluate.attacks" in err and "pyautoattack" in err


def test_set_accepts_dotted_search_dimensions(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", BASE)
    config = load_sweep_config(path, ["search.dnr.density.grid=[0.1, 0.5]", "search.train.seed={randint: [0, 3]}"])
    assert config.search["dnr.density"].grid == [0.1, 0.5] and config.search["train.seed"].randint == (0, 3)


@pytest.mark.slow
def test_every_shipped_search_space_survives_its_dry_preparation():
    for path in sorted((REPO / "search_spaces").glob("*.yaml")):
        dry_run.check_sweep(load_sweep_config(path), str(path))


# ------------------------------------------------------------------------------------------------
# Property-based fuzzing: configs, --set strings, flags -> exit 0 or exit 2 with a message

SWEEP_LEAVES = leaf_paths(SweepConfig)
RUN_LEAVES = leaf_paths(RunConfig)
WORDS = ["8/255", "1/0", "auto", "cuda", "cpu", "bf16", "channel", "irregular", "val", "test", "pgd20", "autoattack",
         "val_clean_acc", "clean_acc", "compression", "digits", "synthetic", "cifar10", "vgg16", "resnet18",
         "smallcnn", "max", "min", "nan", "-1", "1e-3", "../x", "", " ", "\x00"]  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.sampled_from(WORDS), st.text(max_size=8),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(WORDS + ["grid", "x"]), inner, max_size=3)),
    max_leaves=6,
)  # fmt: skip
RULES = ["grid", "choice", "uniform", "loguniform", "randint", "quniform", "grid_search", "eval", "normal"]
RULE_VALUES = st.one_of(
    VALUES, st.lists(st.one_of(st.integers(-5, 300), st.floats(-1, 2)), min_size=1, max_size=4),
    st.tuples(st.floats(0, 1), st.floats(0, 1)), st.tuples(st.integers(0, 50), st.integers(0, 50)),
)  # fmt: skip
#: values near each field's edges (valid and not), so that many fuzzed configs validate and get prepared
FIELD_VALUES = {
    "data.dataset": ["digits", "synthetic", "cifar10", "tinyimagenet", "mnist"],
    "data.val_size": [0, 1, 16, 100, 255, 256, 1000, 1436, 1437, 5000],
    "data.image_size": [None, 1, 4, 5, 8, 16, 32, 513], "data.channels": [None, 1, 3, 2],
    "model.arch": ["smallcnn", "vgg16", "resnet18"], "model.width": [0.01, 0.25, 0.5, 1, 4, 4.5],
    "train.epochs": [1, 2, 3, 10], "train.batch_size": [1, 2, 3, 7, 64, 1337, 10**6],
    "train.eval_batch_size": [None, 1, 3], "train.lr_milestones": [[], [1], [2, 1], [1, 2], [5]],
    "train.warmup_epochs": [0, 1, 2, 5], "train.select_on": ["val", "test"],
    "train.select_metric": [None, "val_pgd_acc", "test_clean_acc", "clean_acc"], "train.eval_subset": [None, 1, 10**6],
    "train.device": ["auto", "cpu", "cuda"], "train.precision": ["auto", "fp32", "bf16"],
    "dnr.pruning": ["irregular", "channel"], "dnr.density": [0.001, 0.01, 0.05, 0.2, 1.0, 1.5],
    "dnr.prune_linear": [True, False], "tune.metric": [None, "val_clean_acc", "pgd_acc"],
    "tune.resources_per_trial.gpu": [0, 0.5, 1], "evaluate": [None, {"attacks": ["pgd5x2"], "split": "val"}],
    "report.y": [["clean_acc"], ["pgd50x10_acc"], ["val_pgd_acc"], []], "report.x": ["compression", "dnr.density"],
}  # fmt: skip
NEAR_EDGES = st.sampled_from(sorted(FIELD_VALUES)).flatmap(
    lambda path: st.tuples(st.just("set"), st.just(path), st.sampled_from(FIELD_VALUES[path]))
)
MUTATION = st.one_of(
    NEAR_EDGES, NEAR_EDGES,
    st.tuples(st.just("set"), st.sampled_from(SWEEP_LEAVES + ["dnr.densty", "extra", "train.x.y"]), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(SWEEP_LEAVES + ["data", "train", "tune"]), st.none()),
    st.tuples(st.just("search"), st.sampled_from(RUN_LEAVES + ["dnr", "bogus.path"]),
              st.tuples(st.sampled_from(RULES), RULE_VALUES)),
)  # fmt: skip


def _mutate(data: dict, mutation: tuple) -> None:
    kind, path, value = mutation
    parts = path.split(".")
    if kind == "search":
        rule, rule_value = value
        data.setdefault("search", {})[path] = {rule: list(rule_value) if isinstance(rule_value, tuple) else rule_value}
        return
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            if kind == "delete":
                return
            node[part] = {}
        node = node[part]
    if kind == "delete":
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


SET_STRINGS = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(SWEEP_LEAVES + ["search.dnr.density.grid", "search.x", "a..b"]),
              st.one_of(st.sampled_from(WORDS + ["[1, 2]", "{a: 1}", "[", "'", "!!python/name:os.system"]), st.text(max_size=10))),
    st.text(max_size=15),
)  # fmt: skip


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4), overrides=st.lists(SET_STRINGS, max_size=2))
def test_fuzzed_configs_validate_or_fail_with_a_message(tmp_path_factory, mutations, overrides):
    data = json.loads(json.dumps(BASE))
    for mutation in mutations:
        _mutate(data, mutation)
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    try:
        write_yaml(path, data)
    except yaml.YAMLError:
        return
    argv = ["validate", str(path), *[part for item in overrides for part in ("--set", item)]]
    code, err = call(argv)
    event(f"exit {code}")
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.strip() and "Traceback" not in err
    else:  # it validated: its dry preparation passed too, so the loaded config prepares again
        config = load_sweep_config(path, overrides)
        dry_run.check_sweep(config, str(path))


class _ReachedExpensiveWork(Exception):
    """Every check passed and the command got to its expensive step (stopped here by the test)."""


def _stop(*_, **__):
    raise _ReachedExpensiveWork


@pytest.fixture
def fuzz_world(tmp_path_factory, monkeypatch):
    """Paths of every kind for the flag fuzzer, each command's usual arguments, and the expensive
    steps replaced by a stop."""
    from dnr_sweep.cli import evaluate
    from dnr_sweep.export import export_model  # noqa: F401 - imported so the patch below sticks
    from dnr_sweep.reports import build
    from dnr_sweep.sweep import cluster
    from dnr_sweep.training import single_run

    root = tmp_path_factory.mktemp("world")
    good = write_yaml(root / "good.yaml", BASE)
    bad = root / "bad.yaml"
    bad.write_text("dnr: {density: [")
    a_file = root / "a_file"
    a_file.write_text("x")
    empty_dir = root / "empty_dir"
    empty_dir.mkdir()
    model_dir = _model_folder(root / "model")
    run_dir = write_synthetic_run(root / "run")
    resumable = _run_folder(root / "resumable")
    paths = [str(p) for p in (good, bad, a_file, empty_dir, model_dir, run_dir, resumable, root / "missing")]
    paths += ["", " ", "rel/dir", "/", str(root / "new" / "deeper")]
    usual = {
        "validate": [str(good)], "train": [str(good), "--out", str(root / "out")], "run": [str(good)],
        "resume": [str(resumable)], "report": [str(run_dir)], "evaluate": [str(model_dir)],
        "export": [str(model_dir), "--out", str(root / "m.pt2")], "status": [str(run_dir)],
        "submit": [str(good), "--address", "http://127.0.0.1:1", "--storage", str(root / "runs")],
        "data": ["check", "cifar10", "--root", str(root / "nodata")],  # never `fetch`: no test reaches the internet
    }  # fmt: skip
    for target, name in ((single_run, "train_to_dir"), (cluster, "start_ray"), (evaluate, "_evaluate"),
                         (build, "build_report"), (sys.modules["dnr_sweep.export"], "export_model")):  # fmt: skip
        monkeypatch.setattr(target, name, _stop)
    return root, paths, usual


FLAG_VALUES = ["0", "-1", "1", "3", "nan", "1e9", "8/255", "2/0", "fgsm,pgd", "pgd20,zz", "autoattack", "cuda", "cpu",
               "auto", "x", "", "3,32,32", "3,x", "pdf,jpeg", "clean_acc,bogus", "pgd_acc:max", "pgd_acc:up",
               "127.0.0.1:1", "ray://127.0.0.1:1", "garbage:port", "[::1]:0", "0.0.0.0", "dnr.density=0.1", "a=b"]  # fmt: skip


def _flags_of(command: str) -> list[tuple[str, bool]]:
    """(option, takes a value) of one subcommand, from the parser itself."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    verbs = [v for a in sub._actions if a.dest == "verb" for v in a.choices.values()]  # `data fetch|check`
    actions = [*sub._actions, *(a for verb in verbs for a in verb._actions)]
    return list(dict.fromkeys((a.option_strings[-1], a.nargs != 0) for a in actions
                              if a.option_strings and a.dest != "help"))  # fmt: skip


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_fuzzed_command_lines_exit_0_or_2_with_a_message(fuzz_world, data):
    root, paths, usual = fuzz_world
    command = data.draw(st.sampled_from(sorted(cli.COMMANDS)))
    argv = [
        command,
        *data.draw(st.one_of(st.just(usual[command]), st.lists(st.sampled_from(paths), min_size=1, max_size=2))),
    ]
    for option, takes_value in data.draw(st.lists(st.sampled_from(_flags_of(command)), max_size=3, unique=True)):
        argv += [option, data.draw(st.sampled_from(paths + FLAG_VALUES))] if takes_value else [option]
    with contextlib.chdir(root):
        try:
            code, err = call(argv)
        except _ReachedExpensiveWork:
            event(f"{command}: reached its expensive step")
            return
    event(f"{command}: exit {code}")
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.strip() and "Traceback" not in err, (argv, err)


RUN_FIELDS = [p for p in FIELD_VALUES if p.split(".")[0] in ("data", "train", "dnr") and p != "train.device"]


@settings(max_examples=16, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutations=st.lists(
        st.sampled_from(RUN_FIELDS).flatmap(
            lambda path: st.tuples(
                st.just("set"),
                st.just(path),
                st.sampled_from(["digits", "synthetic"] if path == "data.dataset" else FIELD_VALUES[path]),
            )
        ),
        min_size=1,
        max_size=3,
    )
)
def test_a_config_that_validates_trains_its_first_steps(tmp_path_factory, mutations):
    """The promise of the dry preparation: validated -> the run builds and trains (one batch of its first
    epoch, one validation batch), on the fields that decide whether it can."""
    from dnr_sweep.training.engine import TrainingRun

    data = json.loads(json.dumps(BASE))
    for mutation in mutations:
        _mutate(data, mutation)
    path = write_yaml(tmp_path_factory.mktemp("fuzz") / "c.yaml", data)
    code, err = call(["validate", str(path)])
    assert code in (0, 2), err
    event(f"exit {code}")
    if code == 2:
        return
    run = TrainingRun(load_sweep_config(path).base_run())

    def one_batch(done: int, total: int) -> None:
        raise _ReachedExpensiveWork

    with pytest.raises(_ReachedExpensiveWork):
        run.train_epoch(one_batch)
    if len(run.data.val):
        run.evaluate(run.val_loader, robust=False, limit=8)


# ------------------------------------------------------------------------------------------------
# File corruption: every file kind the tool reads


class Hostile:
    """A pickle that, loaded unsafely, creates a marker folder: the proof it ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _corruptions(good: bytes, *, wrong_kind: bytes, hostile: bytes) -> dict[str, bytes]:
    rng = random.Random(0)
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "random bytes": bytes(rng.randrange(256) for _ in range(2048)),
        "wrong kind": wrong_kind,
        "hostile": hostile,
    }


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _model_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    config = RunConfig.model_validate({"data": {"dataset": "synthetic", "image_size": 8, "val_size": 16},
                                       "model": {"arch": "smallcnn", "width": 0.5}})  # fmt: skip
    write_yaml(folder / rc.CONFIG_FILE, to_yaml_dict(config))
    checkpoint.save(
        get_model("smallcnn", num_classes=10, in_channels=3, width=0.5).state_dict(), folder / rc.MODEL_FILE
    )
    return folder


def _run_folder(folder: Path) -> Path:
    """What `dnr-sweep run` leaves before Tune's first trial: config, sweep.json and Tune's state."""
    from dnr_sweep.sweep.run_folder import prepare_run_dir

    folder.mkdir(parents=True)
    source = write_yaml(folder.parent / f"{folder.name}_input.yaml", BASE)
    prepare_run_dir(folder, config_path=source, overrides=[])
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"_tune_config": None, "__trainable_name": "SweepTrainable"}))
    # one trial as Ray Tune 2.60 writes it (tests/fixtures: a real sweep's state, trimmed), so resume's screen passes
    state = (REPO / "tests" / "fixtures" / "experiment_state.json").read_bytes()
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_bytes(state)
    return folder


def _scenario(kind: str, tmp: Path) -> tuple[Path, list[str], bytes, bytes, bytes]:
    """(file to corrupt, command, its good bytes, a wrong-kind file, a hostile file)."""
    marker = tmp / "PWNED"
    if kind == "config.yaml (CONFIG)":
        path = tmp / "c.yaml"
        good = yaml.safe_dump(BASE, default_flow_style=True).encode()
        hostile = f"!!python/object/apply:os.mkdir [{marker}]\n".encode()
        return path, ["validate", str(path)], good, b"- a list\n- not a mapping\n", hostile
    if kind == "checkpoint.pt (train --resume)":
        out = tmp / "out"
        out.mkdir()
        config = write_yaml(tmp / "c.yaml", BASE)
        good = _torch_bytes({"config": to_yaml_dict(load_sweep_config(config).base_run()), "run": {}, "rows": []})
        return out / rc.CHECKPOINT_FILE, ["train", str(config), "--out", str(out), "--resume"], good, \
            _torch_bytes(torch.zeros(3)), pickle.dumps(Hostile(marker))  # fmt: skip
    if kind in ("model.pt (evaluate)", "model.pt (export)"):
        folder = _model_folder(tmp / "model")
        argv = (["evaluate", str(folder), "--attacks", "fgsm", "--no-checks"] if "evaluate" in kind
                else ["export", str(folder), "--out", str(tmp / "m.pt2"), "--repeats", "1"])  # fmt: skip
        good = (folder / rc.MODEL_FILE).read_bytes()
        return folder / rc.MODEL_FILE, argv, good, _torch_bytes({"weight": [1, 2]}), \
            _torch_bytes({"conv.weight": Hostile(marker)})  # fmt: skip
    if kind == "config.yaml (trained folder)":
        folder = _model_folder(tmp / "model")
        good = (folder / rc.CONFIG_FILE).read_bytes()
        return folder / rc.CONFIG_FILE, ["export", str(folder), "--out", str(tmp / "m.pt2")], good, \
            b"data: {dataset: imagenet}\n", f"!!python/object/apply:os.mkdir [{marker}]\n".encode()  # fmt: skip
    run_dir = _run_folder(tmp / "run")
    resume = ["resume", str(run_dir), "--no-dashboard"]
    nested = b"[" * 100_000 + b"]" * 100_000  # a JSON bomb: nested beyond the parser's recursion
    if kind == "sweep.json (resume)":
        return run_dir / rc.SWEEP_FILE, resume, (run_dir / rc.SWEEP_FILE).read_bytes(), b'{"overrides": 3}', nested
    if kind == "tuner.pkl (resume)":
        return run_dir / "tuner.pkl", resume, (run_dir / "tuner.pkl").read_bytes(), b'{"json": 1}', \
            pickle.dumps(Hostile(marker))  # fmt: skip
    if kind == "experiment state (resume)":
        path = next(run_dir.glob("experiment_state-*.json"))
        return path, resume, path.read_bytes(), b"[1, 2, 3]", nested
    if kind == "config.yaml (run folder)":
        return run_dir / rc.CONFIG_FILE, resume, (run_dir / rc.CONFIG_FILE).read_bytes(), b"- 1\n", \
            f"!!python/object/apply:os.mkdir [{marker}]\n".encode()  # fmt: skip
    raise AssertionError(kind)


REFUSED_KINDS = ["config.yaml (CONFIG)", "checkpoint.pt (train --resume)", "model.pt (evaluate)", "model.pt (export)",
                 "config.yaml (trained folder)", "sweep.json (resume)", "tuner.pkl (resume)",
                 "experiment state (resume)", "config.yaml (run folder)"]  # fmt: skip
CORRUPTIONS = ["empty", "truncated", "random bytes", "wrong kind", "hostile"]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("kind", REFUSED_KINDS)
def test_corrupt_file_is_refused_by_name_and_left_as_it_was(tmp_path, kind, corruption, no_ray):
    path, argv, good, wrong, hostile = _scenario(kind, tmp_path)
    bad = _corruptions(good, wrong_kind=wrong, hostile=hostile)[corruption]
    if kind == "config.yaml (CONFIG)" and corruption == "truncated":
        bad = good[:-5]  # inside the closing flow mappings: never a shorter valid config
    path.write_bytes(bad)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, err = call(argv)
    assert code == 2, err
    assert path.name in err, err
    assert "Traceback" not in err and "weights_only" not in err, err
    assert not (tmp_path / "PWNED").exists()  # the hostile file never ran
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written over, nothing added (not even a lock file)


class Eval:
    def __reduce__(self):
        return (eval, ("1",))


class Call:
    def __reduce__(self):
        return (subprocess.call, (["true"],))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_tune_state_screen_spots_hostile_pickles_in_every_protocol(tmp_path, protocol):
    import ray.cloudpickle

    from dnr_sweep.sweep.tune_state import problem_of_pickle

    for hostile in (Hostile(tmp_path / "PWNED"), Eval(), Call(), {"nested": [Hostile(tmp_path / "PWNED")]}):
        assert "imports" in problem_of_pickle(pickle.dumps(hostile, protocol=protocol))
    assert "imports" in problem_of_pickle(ray.cloudpickle.dumps({"x": Hostile(tmp_path / "PWNED")}))
    assert problem_of_pickle(pickle.dumps({"os": ["system", "eval"]}, protocol=protocol)) is None  # names as data


def test_hostile_pickle_embedded_in_tune_json_state_is_refused(tmp_path, no_ray):
    run_dir = _run_folder(tmp_path / "run")
    blob = {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps(Hostile(tmp_path / "PWNED")).hex()}
    state = {"runner_data": {}, "trial_data": [[json.dumps({"config": blob}), "{}"]]}
    path = next(run_dir.glob("experiment_state-*.json"))
    path.write_text(json.dumps(state))
    code, err = call(["resume", str(run_dir)])
    assert code == 2 and path.name in err and "embedded pickle that imports posix.mkdir" in err
    assert not (tmp_path / "PWNED").exists()


def test_checkpoint_load_refuses_every_corruption_without_torchs_advice(tmp_path):
    good = _torch_bytes({"run": {"w": torch.ones(3)}})
    for name, bad in _corruptions(good, wrong_kind=b"{}", hostile=pickle.dumps(Hostile(tmp_path / "PWNED"))).items():
        path = tmp_path / f"{name.replace(' ', '_')}.pt"
        path.write_bytes(bad)
        with pytest.raises(InputFileError) as info:
            checkpoint.load(path)
        assert str(path) in str(info.value) and "weights_only" not in str(info.value), name
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(InputFileError, match="no such file"):
        checkpoint.load(tmp_path / "none.pt")


# Report inputs: rebuilt or skipped with a warning where result.json allows, refused only otherwise


@pytest.fixture
def synthetic_run(tmp_path):
    return write_synthetic_run(tmp_path / "run")


@pytest.mark.parametrize("corruption", CORRUPTIONS[:4])
@pytest.mark.parametrize("name", [rc.RESULTS_FILE, rc.EPOCHS_FILE])
def test_unreadable_parquet_is_rebuilt_from_result_json_and_kept_aside(synthetic_run, name, corruption):
    reference = load_run(synthetic_run)
    good = (synthetic_run / name).read_bytes()
    wrong = (synthetic_run / (rc.EPOCHS_FILE if name == rc.RESULTS_FILE else rc.RESULTS_FILE)).read_bytes()
    bad = _corruptions(good, wrong_kind=wrong, hostile=b"")[corruption]
    (synthetic_run / name).write_bytes(bad)
    with pytest.warns(DataRecoveryWarning) as warned:
        run = load_run(synthetic_run)
    said = [str(w.message) for w in warned]
    assert any(name in m and "rebuilding" in m for m in said) and any(
        f"moved aside to {name}.unreadable" in m for m in said
    )
    assert run.rebuilt
    pd.testing.assert_frame_equal(run.results, reference.results, check_dtype=False)
    assert (synthetic_run / f"{name}.unreadable").read_bytes() == bad  # kept, never deleted
    assert not (synthetic_run / name).exists()  # the report writes the rebuilt table in its place


EPOCH_RECORD_DAMAGE = {
    **{name: None for name in CORRUPTIONS if name != "hostile"},  # filled from the good record in the test
    "nested": b"[" * 100_000,
    "another shape": b'{"epoch": 1, "loss": 0.5}',
    "epoch as text": b'[{"epoch": "1", "loss": 0.5}]',
    "epoch beyond any run": b'[{"epoch": 100000000000000000000, "loss": 0.5}]',
    "another trial's id": b'[{"epoch": 1, "trial_id": "someone_else", "loss": 0.5}]',
    "a metric as text": b'[{"epoch": 1, "loss": "low"}]',
    "an unknown phase": b'[{"epoch": 1, "phase": "<script>"}]',
}


@pytest.mark.parametrize("damage", sorted(EPOCH_RECORD_DAMAGE))
def test_a_damaged_epoch_record_is_named_and_the_report_uses_result_json(synthetic_run, damage):
    """A trial's epochs.json (its own record) that is not what a trial writes: one warning naming it, every
    trial and epoch still in the tables from result.json, the file left as it was."""
    reference = rebuild_tables(synthetic_run)[1]
    record = sorted(synthetic_run.glob(f"*/{rc.TUNE_RESULT_FILE}"))[0].parent / rc.TRIAL_EPOCHS_FILE
    good = json.dumps([{"epoch": 1, "loss": 0.5}]).encode()
    bad = EPOCH_RECORD_DAMAGE[damage]
    if bad is None:
        bad = _corruptions(good, wrong_kind=b'{"trial_id": "x"}', hostile=b"")[damage]
    record.write_bytes(bad)
    for name in (rc.RESULTS_FILE, rc.EPOCHS_FILE):
        (synthetic_run / name).unlink()
    code, err = call(["report", str(synthetic_run)])
    assert code == 0 and "Traceback" not in err, err
    assert f"{record.parent.name}/{rc.TRIAL_EPOCHS_FILE}" in err and "come from result.json alone" in err, err
    epochs = pd.read_parquet(synthetic_run / rc.EPOCHS_FILE)
    assert epochs[["trial_id", "epoch"]].values.tolist() == reference[["trial_id", "epoch"]].values.tolist()
    assert record.read_bytes() == bad


def test_a_result_json_metric_that_is_no_number_is_left_out_with_a_warning(synthetic_run):
    for name in (rc.RESULTS_FILE, rc.EPOCHS_FILE):
        (synthetic_run / name).unlink()
    lines_path = sorted(synthetic_run.glob(f"*/{rc.TUNE_RESULT_FILE}"))[0]
    lines = [json.loads(line) for line in lines_path.read_text().splitlines()]
    lines[0]["this_epoch/loss"] = "low"
    lines_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, err = call(["report", str(synthetic_run)])
    said = f"{lines_path.parent.name}/{rc.TUNE_RESULT_FILE}:1: this_epoch/loss is the text 'low', expected a finite"
    assert code == 0 and "Traceback" not in err and said in err and "; left out" in err, err
    epochs = pd.read_parquet(synthetic_run / rc.EPOCHS_FILE)
    first = epochs[(epochs["trial_id"] == lines[0]["trial_id"]) & (epochs["epoch"] == lines[0]["epoch"])]
    assert first["loss"].isna().all() and epochs["loss"].notna().sum() == len(epochs) - 1


def test_unreadable_parquet_without_result_json_is_refused_by_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / rc.RESULTS_FILE).write_bytes(b"PAR1 garbage")
    (run / rc.EPOCHS_FILE).write_bytes(b"")
    code, err = call(["report", str(run)])
    assert code == 2 and rc.RESULTS_FILE in err and "Restore it" in err and "Traceback" not in err
    assert (run / rc.RESULTS_FILE).read_bytes() == b"PAR1 garbage"


def test_truncated_result_json_line_is_skipped_and_the_report_goes_on(synthetic_run):
    for name in (rc.RESULTS_FILE, rc.EPOCHS_FILE):
        (synthetic_run / name).unlink()
    trial = sorted(synthetic_run.glob(f"*/{rc.TUNE_RESULT_FILE}"))[0]
    text = trial.read_text()
    trial.write_text(text[: len(text) - 40])  # the last line cut short by a crash
    with pytest.warns(DataRecoveryWarning, match=rf"{trial.parent.name}/{rc.TUNE_RESULT_FILE}:\d+ is not a complete"):
        run = load_run(synthetic_run)
    assert len(run.results) == len(synthetic_tables()[0])  # every trial still has its row


@pytest.mark.parametrize("content", [b"", b"{oops", b"\xff\xfe", b"[" * 100_000])
def test_corrupt_attack_strength_json_leaves_its_curve_out(synthetic_run, content):
    from dnr_sweep.reports.load import load_attack_strength

    path = sorted(synthetic_run.glob(f"*/{rc.ATTACK_STRENGTH_FILE}"))[0]
    path.write_bytes(content)
    with pytest.warns(DataRecoveryWarning, match=rc.ATTACK_STRENGTH_FILE):
        curves = load_attack_strength(synthetic_run)
    assert len(curves) == 3


@pytest.mark.slow
def test_report_command_recovers_and_says_so(synthetic_run):
    (synthetic_run / rc.RESULTS_FILE).write_bytes(b"\x00" * 100)
    code, err = call(["report", str(synthetic_run)])
    assert code == 0, err
    assert err.count("warning:") >= 1 and rc.RESULTS_FILE in err
    assert len(pd.read_parquet(synthetic_run / rc.RESULTS_FILE)) == len(synthetic_tables()[0])  # rebuilt in place
    assert (synthetic_run / f"{rc.RESULTS_FILE}.unreadable").read_bytes() == b"\x00" * 100


# ------------------------------------------------------------------------------------------------
# Paths and refusals before Ray


def test_degenerate_out_paths_are_refused(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", BASE)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    cases = {"": "an empty path", " ": "an empty path", "/": "filesystem root", str(tmp_path / "a_file"): "is a file",
             str(tmp_path / "a_file" / "sub"): "cannot be created", str(tmp_path / "full"): "holds other files"}  # fmt: skip
    for out, fragment in cases.items():
        code, err = call(["train", str(config), "--out", out])
        assert code == 2 and fragment in err, (out, err)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]  # refused: nothing added
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine" and (tmp_path / "a_file").read_text() == "x"


def test_unwritable_out_is_refused(tmp_path, monkeypatch):
    config = write_yaml(tmp_path / "c.yaml", BASE)
    (tmp_path / "locked").mkdir()
    real = os.access  # tests may run as root, who writes everywhere: the permission answer is faked
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p).name == "locked" else real(p, mode))
    code, err = call(["train", str(config), "--out", str(tmp_path / "locked" / "x")])
    assert code == 2 and "permission denied" in err and "locked" in err


def test_refusals_that_used_to_start_ray_happen_before_it(tmp_path, no_ray, monkeypatch):
    from dnr_sweep.sweep import cluster

    config = write_yaml(tmp_path / "c.yaml", BASE)
    (tmp_path / "storage_file").write_text("x")
    code, err = call(["run", str(config), "--storage", str(tmp_path / "storage_file")])
    assert code == 2 and "--storage" in err and "is a file" in err
    monkeypatch.setattr(cluster, "_local_cpus", lambda: 2.0)
    code, err = call(["run", str(config), "--storage", str(tmp_path / "r"), "--set", "tune.resources_per_trial.cpu=64"])
    assert code == 2 and "64 CPU" in err and "2 CPU" in err
    code, err = call(["run", str(config), "--storage", str(tmp_path / "r"), "--set", "tune.resources_per_trial.gpu=8"])
    assert code == 2 and "8 GPU" in err
    code, err = call(["run", str(config), "--storage", str(tmp_path / "r"), "--dashboard-host", "every interface"])
    assert code == 2 and "--dashboard-host" in err
    download = ["--set", "data.dataset=cifar10", "--set", "data.download=true", "--set", "data.val_size=5000",
                "--set", f"data.root={tmp_path / 'storage_file'}"]  # fmt: skip
    code, err = call(["run", str(config), "--storage", str(tmp_path / "r"), *download])
    assert code == 2 and "data.root" in err and "is a file" in err
    train_folder = tmp_path / "train_out"
    train_folder.mkdir()
    write_yaml(train_folder / rc.CONFIG_FILE, BASE)  # a `train --out` folder has a config.yaml, no Tune state
    code, err = call(["resume", str(train_folder)])
    assert code == 2 and "no Ray Tune experiment to resume" in err and "--resume" in err
    assert not (tmp_path / "r").exists()


def test_resume_commands_are_shell_quoted(tmp_path, no_ray):
    config = write_yaml(tmp_path / "c.yaml", BASE)
    storage = tmp_path / "my runs; rm -rf x"
    (storage / "taken").mkdir(parents=True)
    (storage / "taken" / rc.CONFIG_FILE).write_text("x")
    code, err = call(["run", str(config), "--storage", str(storage), "--name", "taken"])
    assert code == 2
    command = err.split("`")[1]
    assert shlex.split(command) == ["dnr-sweep", "resume", str(storage / "taken")]


# ------------------------------------------------------------------------------------------------
# Two writers on one folder


HOLD = textwrap.dedent("""
    import sys, time
    from dnr_sweep.foundation import locks as folder_lock
    with folder_lock.hold(sys.argv[1], purpose="test"):
        print("held", flush=True)
        time.sleep(600)
""")


@contextlib.contextmanager
def held_by_another_process(folder: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, cwd=REPO, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_lock_names_its_holder_and_dies_with_it(tmp_path):
    folder = tmp_path / "f"
    with held_by_another_process(folder) as holder:
        with pytest.raises(FolderBusyError, match=rf"pid {holder.pid} on {socket.gethostname()}"):
            with folder_lock.hold(folder, purpose="train"):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with folder_lock.hold(folder, purpose="train"):  # a dead holder's lock never blocks
            assert folder.is_dir()


def test_second_run_or_resume_into_a_held_folder_is_refused_before_ray(tmp_path, no_ray):
    config = write_yaml(tmp_path / "c.yaml", BASE)
    with held_by_another_process(tmp_path / "runs" / "same") as holder:
        code, err = call(["run", str(config), "--storage", str(tmp_path / "runs"), "--name", "same"])
        assert code == 2 and "in use" in err and f"pid {holder.pid}" in err
    run_dir = _run_folder(tmp_path / "resumable")
    with held_by_another_process(run_dir) as holder:
        code, err = call(["resume", str(run_dir)])
        assert code == 2 and f"pid {holder.pid}" in err


@pytest.mark.slow
def test_two_trains_into_one_folder_one_refused_the_other_complete(tmp_path):
    data = _merged({"train": {**BASE["train"], "epochs": 3}})
    config = write_yaml(tmp_path / "c.yaml", data)
    out = tmp_path / "same"
    old = os.umask(0o022)
    try:
        first = subprocess.Popen([sys.executable, "-m", "dnr_sweep.cli", "train", str(config), "--out", str(out)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    finally:
        os.umask(old)
    deadline = time.monotonic() + 120
    while first.poll() is None and time.monotonic() < deadline:  # until the first one holds the folder
        if (out / rc.LOCK_FILE).is_file() and (out / rc.LOCK_FILE).read_text():
            break
        time.sleep(0.1)
    code, err = call(["train", str(config), "--out", str(out)])
    assert code == 2 and "in use" in err and f"pid {first.pid}" in err
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    metrics = json.loads((out / rc.METRICS_FILE).read_text())
    assert metrics["epochs"] == 3 and metrics["selected_epoch"] in (1, 2, 3)
    assert len(checkpoint.load_state_dict(out / rc.MODEL_FILE)) > 0
    for name in (rc.METRICS_FILE, rc.MODEL_FILE, rc.CHECKPOINT_FILE, rc.CONFIG_FILE, rc.EPOCHS_CSV):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name  # written under umask 022


# ------------------------------------------------------------------------------------------------
# File modes: what a plain open() would give, also for the atomic writes


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
    from dnr_sweep.reports.load import write_parquet_atomic

    old = os.umask(umask)
    try:
        written = [
            checkpoint.save({"a": torch.ones(1)}, tmp_path / rc.MODEL_FILE),
            checkpoint.write_json({"a": 1}, tmp_path / rc.METRICS_FILE),
            write_parquet_atomic(pd.DataFrame({"a": [1]}), tmp_path / rc.RESULTS_FILE),
            files.atomic_write(tmp_path / rc.SWEEP_FILE, lambda tmp: tmp.write_text("{}")),
        ]
    finally:
        os.umask(old)
    for path in written:
        assert path.stat().st_mode & 0o777 == mode, path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temp file left


# ------------------------------------------------------------------------------------------------
# An unreachable cluster


def _within(seconds: float, argv: list[str]) -> tuple[int | str, str]:
    """Run ``argv`` in a thread; it must have returned after ``seconds`` (a deadline, not a benchmark)."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(call(argv)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"{argv} still running after {seconds} s"
    return outcome[0]


def test_closed_address_fails_within_30_s_before_ray(tmp_path, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda **_: pytest.fail("ray.init must not be called"))
    config = write_yaml(tmp_path / "c.yaml", BASE)
    code, err = _within(30, ["run", str(config), "--storage", str(tmp_path / "r"), "--address", "127.0.0.1:1"])
    assert code == 2, err
    assert "127.0.0.1:1" in err and "TCP connection" in err and "ray status" in err
    assert not (tmp_path / "r").exists()


def test_address_that_is_not_a_ray_cluster_fails_within_30_s(tmp_path, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda **_: pytest.fail("ray.init must not be called"))
    server = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks gRPC
    port = server.getsockname()[1]
    try:
        code, err = _within(30, ["resume", str(_run_folder(tmp_path / "run")), "--address", f"127.0.0.1:{port}"])
    finally:
        server.close()
    assert code == 2 and "not a Ray GCS" in err and "ray status" in err, err


@pytest.mark.parametrize("address", ["garbage", "host:port", "10.0.0.1:99999", "ray://"])
def test_malformed_address_is_refused(address):
    from dnr_sweep.sweep import cluster

    with pytest.raises(UserError, match="expected host:port"):
        cluster.check_cluster_address(address)


def test_report_group_by_default_may_be_absent_but_a_named_one_must_exist(synthetic_run):
    """The default colouring column (dnr.pruning) is optional; a group_by the user names is checked."""
    from dnr_sweep.cli.report import check_settings

    config = yaml.safe_load((synthetic_run / rc.CONFIG_FILE).read_text())
    config["report"].pop("group_by")
    config["search"].pop("dnr.pruning")
    write_yaml(synthetic_run / rc.CONFIG_FILE, config)
    results = pd.read_parquet(synthetic_run / rc.RESULTS_FILE)
    results.drop(columns=["dnr.pruning"]).to_parquet(synthetic_run / rc.RESULTS_FILE, index=False)
    check_settings(synthetic_run)  # no group_by named, none in the run: the report is drawn ungrouped
    with pytest.raises(UserError, match=r"group_by: 'dnr.prunning' is neither a column nor a config field"):
        check_settings(synthetic_run, group_by="dnr.prunning")
