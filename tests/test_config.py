"""The YAML schema: valid configs resolve as documented, bad ones fail with file, field and fix."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dnr_sweep import cli
from dnr_sweep.config import (
    RunConfig,
    apply_overrides,
    leaf_paths,
    load_run_config,
    load_sweep_config,
    run_config_from_flat,
)
from dnr_sweep.foundation.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_eps_accepts_fractions_and_floats(tmp_path):
    path = write(
        tmp_path,
        """
        attack:
          train: {eps: 8/255}
          eval: {fgsm: {eps: 0.1}, pgd: {eps: "16 / 255"}}
    """,
    )
    config = load_run_config(path)
    assert config.attack.train.eps == 8 / 255
    assert config.attack.eval.fgsm.eps == 0.1
    assert config.attack.eval.pgd.eps == 16 / 255


def test_defaults_are_the_papers_settings():
    config = RunConfig()
    assert (config.train.lr, config.train.momentum, config.train.weight_decay) == (0.1, 0.9, 5e-4)
    assert config.train.lr_milestones == [80, 120, 160] and config.train.lr_gamma == 0.2
    assert config.train.batch_size == 128 and config.train.warmup_epochs == 5
    assert (config.dnr.beta, config.dnr.rho, config.dnr.prune_rate) == (0.5, 1e-4, 0.5)
    train_attack = config.attack.train
    assert (train_attack.eps, train_attack.alpha, train_attack.steps) == (8 / 255, 0.01, 7)


def test_overrides_parse_values_as_yaml(tmp_path):
    path = write(tmp_path, "dnr: {density: 0.1}\n")
    config = load_run_config(path, ["dnr.density=0.2", "train.lr_milestones=[3, 5]", "dnr.dynamic_l2=false"])
    assert config.dnr.density == 0.2
    assert config.train.lr_milestones == [3, 5]
    assert config.dnr.dynamic_l2 is False
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


def test_numbers_in_exponent_notation_are_numbers_everywhere(tmp_path):
    """YAML 1.1 (PyYAML) reads 1e-4 and 1.0e6 as strings; a config means numbers (YAML 1.2)."""
    path = write(
        tmp_path,
        """
        data: {dataset: digits, val_size: 100}
        train: {epochs: 4, warmup_epochs: 1, lr_milestones: [], lr: 5e-2}
        dnr: {rho: 1e-4, density: 0.2}
        search:
          dnr.beta: {choice: [5e-1, 1E0]}
          dnr.rho: {loguniform: [1e-6, 1.0e-2]}
        tune: {num_samples: 2, points_to_evaluate: [{dnr.beta: 5.0e-1, dnr.rho: 1e-5}]}
    """,
    )
    config = load_sweep_config(path, ["train.weight_decay=1e-3", "search.dnr.prune_rate.grid=[3e-1, 5e-1]"])
    assert (config.train.lr, config.train.weight_decay, config.dnr.rho) == (0.05, 1e-3, 1e-4)
    assert config.search["dnr.beta"].rule == ("choice", [0.5, 1.0])
    assert config.search["dnr.prune_rate"].rule == ("grid", [0.3, 0.5])
    assert config.tune.points_to_evaluate == [{"dnr.beta": 0.5, "dnr.rho": 1e-5}]
    assert all(type(v) is float for v in (*config.search["dnr.beta"].rule[1], *config.search["dnr.prune_rate"].rule[1]))


def test_grid_choice_and_point_values_take_their_fields_type(tmp_path):
    """A quoted number in a grid would reach trials and the results table as text; it is the field's type."""
    path = write(
        tmp_path,
        """
        data: {dataset: digits, val_size: 100}
        train: {epochs: 4, warmup_epochs: 1, lr_milestones: []}
        search:
          dnr.beta: {choice: [0.5, "0.7"]}
          train.epochs: {grid: ["3", 4]}
        tune: {num_samples: 1, points_to_evaluate: [{dnr.beta: "0.7"}]}
    """,
    )
    config = load_sweep_config(path)
    assert config.search["dnr.beta"].rule == ("choice", [0.5, 0.7])
    assert config.search["train.epochs"].rule == ("grid", [3, 4])
    assert config.tune.points_to_evaluate == [{"dnr.beta": 0.7}]
    assert [type(v) for v in config.search["train.epochs"].rule[1]] == [int, int]


def test_search_block_and_trial_configs(tmp_path):
    path = write(
        tmp_path,
        """
        search:
          dnr.density: {grid: [0.05, 0.5, 1.0]}
          dnr.pruning: {grid: [irregular, channel]}
          dnr.beta: {uniform: [0.3, 0.7]}
          dnr.rho: {loguniform: [1.0e-5, 1.0e-3]}
          train.seed: {randint: [0, 10]}
        tune: {num_samples: 2}
    """,
    )
    sweep = load_sweep_config(path)
    assert sweep.grid_size() == 3 * 2 * 2
    trial = run_config_from_flat(sweep.base_run(), {"dnr.density": 0.5, "dnr.pruning": "channel"})
    assert trial.dnr.density == 0.5 and trial.dnr.pruning == "channel"
    assert "dnr.density" in leaf_paths() and "attack.train.eps" in leaf_paths()


# ------------------------------------------------------------------------------------------------
# The error matrix: each case is a YAML text and the fragments its message must contain.

BAD_CONFIGS = {
    "unknown key with suggestion": ("dnr: {densty: 0.1}", ["dnr.densty", "did you mean 'density'"]),
    "unknown top-level key": ("modle: {arch: vgg16}", ["modle", "did you mean 'model'"]),
    "wrong type": ("train: {epochs: many}", ["train.epochs", "valid integer", "'many'"]),
    "density above 1": ("dnr: {density: 1.5}", ["dnr.density", "must be in (0, 1], got 1.5"]),
    "density zero": ("dnr: {density: 0}", ["dnr.density", "must be in (0, 1], got 0"]),
    "beta outside [0, 1]": ("dnr: {beta: 1.2}", ["dnr.beta", "must be in [0, 1]"]),
    "negative rho": ("dnr: {rho: -0.1}", ["dnr.rho", "must be in [0, inf)"]),
    "prune_rate outside [0, 1]": ("dnr: {prune_rate: 2}", ["dnr.prune_rate", "must be in [0, 1]"]),
    "negative eps": ("attack: {train: {eps: -0.1}}", ["attack.train.eps", "must be in [0, 1]"]),
    "eps not a number": ("attack: {train: {eps: lots}}", ["attack.train.eps", "fraction like '8/255'"]),
    "unknown arch": ("model: {arch: resnet19}", ["model.arch", "'resnet18'", "'resnet19'"]),
    "unknown dataset": (
        "data: {dataset: mnist}",
        ["data.dataset", "unknown dataset 'mnist'", "valid: digits, cifar10"],
    ),
    "unknown sampler": (
        "search: {dnr.beta: {uniform: [0.1, 0.9]}}\ntune: {search_alg: {optuna: {sampler: cmaes}}}",
        ["tune.search_alg.optuna.sampler", "'nsga2'"],
    ),
    "unknown scheduler": ("tune: {scheduler: {hyperband: {}}}", ["tune.scheduler.hyperband", "valid keys: asha"]),
    "objective no trial reports": (
        "search: {dnr.beta: {uniform: [0.1, 0.9]}}\ntune: {search_alg: {optuna: {objectives: {robustness: max}}}}",
        ["robustness", "no trial reports", "pgd_acc"],
    ),
    "empty grid": ("search: {dnr.density: {grid: []}}", ["search.dnr.density", "at least one value"]),
    "search path not in schema": (
        "search: {dnr.densty: {grid: [0.1]}}",
        ["search.dnr.densty", "did you mean 'dnr.density'"],
    ),
    "search value out of range": ("search: {dnr.density: {grid: [0.1, 1.5]}}", ["search.dnr.density.grid", "got 1.5"]),
    "search range end out of range": (
        "search: {dnr.beta: {uniform: [0.5, 1.5]}}",
        ["search.dnr.beta.uniform", "got 1.5"],
    ),
    "raw eval key": ("search: {dnr.density: {eval: 'import os'}}", ["search.dnr.density", "raw Ray Tune key 'eval'"]),
    "raw grid_search key": ("search: {dnr.density: {grid_search: [0.1]}}", ["raw Ray Tune key 'grid_search'"]),
    "grid with optuna": (
        "search: {dnr.density: {grid: [0.1, 0.5]}}\ntune: {search_alg: {optuna: {sampler: tpe}}}",
        ["search.dnr.density", "Optuna cannot take grid", "choice"],
    ),
    "population_size without nsga2": (
        "search: {dnr.beta: {uniform: [0.1, 0.9]}}\ntune: {search_alg: {optuna: {sampler: tpe, population_size: 8}}}",
        ["tune.search_alg.optuna", "population_size is an NSGA-II setting", "sampler: nsga2"],
    ),
    "asha group_by not searched": (
        "search: {dnr.beta: {uniform: [0.1, 0.9]}}\ntune: {scheduler: {asha: {group_by: [dnr.density]}}}",
        ["tune.scheduler.asha.group_by", "'dnr.density' is not a search path", "dnr.beta"],
    ),
    "point outside its rule": (
        "search: {dnr.beta: {uniform: [0.3, 0.9]}}\ntune: {num_samples: 2, points_to_evaluate: [{dnr.beta: 0.2}]}",
        ["tune.points_to_evaluate[0].dnr.beta", "0.2 is outside its search rule uniform: [0.3, 0.9]"],
    ),
    "point on an unsearched path": (
        "search: {dnr.beta: {uniform: [0.3, 0.9]}}\ntune: {points_to_evaluate: [{dnr.rho: 0.001}]}",
        ["tune.points_to_evaluate[0].dnr.rho", "not a search path", "dnr.beta"],
    ),
    "point on a grid dimension": (
        "search: {train.seed: {grid: [0, 1]}, dnr.beta: {uniform: [0.3, 0.9]}}\n"
        "tune: {points_to_evaluate: [{train.seed: 1, dnr.beta: 0.5}]}",
        ["tune.points_to_evaluate[0].train.seed", "a grid dimension", "leave it out"],
    ),
    "more points than samples": (
        "search: {dnr.beta: {uniform: [0.3, 0.9]}}\n"
        "tune: {num_samples: 1, points_to_evaluate: [{dnr.beta: 0.5}, {dnr.beta: 0.6}]}",
        ["tune.points_to_evaluate", "2 points but tune.num_samples is 1", "at least 2"],
    ),
    "name escaping storage": ("name: ../x", ["name", "no '/' or '..'"]),
    "malformed yaml": ("dnr:\n  density: [0.1\nmodel: {}", ["line 3", "malformed YAML"]),
    "not a mapping": ("- a\n- b", ["top level must be a mapping"]),
    # only validation chooses: test figures are refused wherever something is chosen, with the val twin
    "test metric as tune.metric": (
        "tune: {metric: pgd_acc}",
        ["tune.metric", "only validation chooses", "'val_pgd_acc'"],
    ),
    "test metric as objective": (
        "search: {dnr.beta: {uniform: [0.1, 0.9]}}\n"
        "tune: {search_alg: {optuna: {objectives: {pgd_acc: max, compression: max}}}}",
        ["tune.search_alg.optuna.objectives.pgd_acc", "'val_pgd_acc'"],
    ),
    "test metric for ASHA": (
        "tune: {scheduler: {asha: {metric: clean_acc}}}",
        ["tune.scheduler.asha.metric", "'val_clean_acc'"],
    ),
    "select_metric of the test split": (
        "train: {select_metric: pgd_acc}",
        ["train", "select_metric 'pgd_acc'", "valid: val_clean_acc"],
    ),
    "validation metric without validation figures": (
        "data: {val_size: 0}\ntrain: {select_on: test}\ntune: {metric: val_clean_acc}",
        ["tune.metric", "select_on is 'test'", "tune.metric: null"],
    ),
    "no validation split to select on": ("data: {val_size: 0}", ["val_size is 0", "select_on: test"]),
    "unknown evaluate attack": (
        "evaluate: {attacks: [pgd, cw]}",
        ["evaluate.attacks.1", "unknown attack 'cw'", "pgdKxR"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_names_file_field_and_fix(tmp_path, case, capsys):
    text, fragments = BAD_CONFIGS[case]
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        load_sweep_config(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # through the command line: exit code 2, the message, no traceback
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragments[0] in err and "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml: cannot read config"):
        load_sweep_config(missing)
    assert cli.main(["validate", str(missing)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_validate_json_prints_the_resolved_base_config(capsys):
    assert cli.main(["validate", "--json", str(REPO / "search_spaces" / "digits_quick.yaml")]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert set(resolved) == {"name", "data", "model", "train", "dnr", "attack", "evaluate", "export"}
    assert resolved["data"]["dataset"] == "digits"


def test_every_shipped_search_space_validates():
    paths = sorted((REPO / "search_spaces").glob("*.yaml"))
    assert paths
    for path in paths:
        load_sweep_config(path)


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys; from dnr_sweep import cli; cli.build_parser().format_help();"
        "heavy = [m for m in ('torch', 'ray', 'matplotlib', 'pandas') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_core_never_imports_ray():
    """Only the Ray Tune side (``dnr_sweep/sweep``) and the command line on top of it import Ray."""
    ray_side = (REPO / "dnr_sweep" / "cli", REPO / "dnr_sweep" / "sweep")
    for path in (REPO / "dnr_sweep").rglob("*.py"):
        if any(folder in path.parents for folder in ray_side):
            continue
        text = path.read_text()
        for forbidden in ("import ray", "from ray"):
            assert forbidden not in text, f"{path} contains {forbidden!r}"
