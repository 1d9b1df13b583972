"""Hostile method configs (the style of test_hostile.py): each is one message naming the field and
the fix, exit code 2, no traceback, before anything trains."""

from __future__ import annotations

import pytest

from tests.test_hostile import call, write_yaml

BASE = {
    "data": {"dataset": "digits", "val_size": 180},
    "model": {"arch": "smallcnn", "width": 0.5},
    "train": {"batch_size": 64, "device": "cpu"},
}

CASES = [
    ({"method": "admn"}, "method: Input should be 'dnr', 'admm', 'lasso' or 'hydra'"),
    ({"method": 3}, "method:"),
    ({"method": "admm", "admm": {"rho": -1}}, "admm.rho: must be in (0, inf)"),
    ({"method": "admm", "admm": {"layer_ratios": "smart"}}, "admm.layer_ratios"),
    ({"method": "admm", "admm": {"layer_ratios": {"nope": 0.5}}}, "admm.layer_ratios: unknown layers ['nope']"),
    ({"method": "admm", "admm": {"density": 0.01}}, "admm.density: density 0.01 keeps"),
    ({"method": "admm", "admm": {"retrain_epochs": 0}}, "admm.retrain_epochs: must be in [1, 10000]"),
    ({"method": "lasso", "lasso": {"lam": True}}, "lasso.lam: expected a number, got the boolean true"),
    ({"method": "lasso", "lasso": {"gamma": 1}}, "lasso.gamma: unknown key 'gamma'; did you mean 'lam'?"),
    ({"method": "hydra", "hydra": {"density": 0}}, "hydra.density: must be in (0, 1]"),
    ({"method": "hydra", "train": {"epochs": 7, "batch_size": 64, "device": "cpu"}}, "train.epochs: method hydra"),
    ({"search": {"hydra.density": {"grid": [0.1, 0.2]}}}, "search.hydra.density: method dnr does not read"),
    ({"method": "hydra", "hydra": {"beta": 0.5}}, "hydra.beta: weighs the clean part of loss: pgd only"),
    ({"method": "hydra", "hydra": {"loss": "madry"}}, "hydra.loss: Input should be 'trades' or 'pgd'"),
    ({"method": "hydra", "attack": {"train": {"kind": "fgsm"}}}, "attack.train: hydra.loss trades runs TRADES'"),
    ({"method": "lasso", "search": {"method": {"grid": ["dnr", "pca"]}}}, "search.method.grid"),
    ({"search": {"method": {"grid": ["pca"]}, "hydra.beta": {"grid": [0.0]}}}, "search.method.grid"),
]


@pytest.mark.parametrize("changes,fragment", CASES, ids=[str(i) for i in range(len(CASES))])
def test_invalid_method_config_is_one_message_exit_2(tmp_path, changes, fragment):
    path = write_yaml(tmp_path / "bad.yaml", {**BASE, **changes})
    code, err = call(["validate", str(path)])
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert fragment in lines[0], err
    assert lines[0].startswith(str(path)), err


def test_a_grid_over_methods_validates(tmp_path):
    path = write_yaml(tmp_path / "ok.yaml", {**BASE, "search": {"method": {"grid": ["dnr", "admm", "lasso", "hydra"]}},
                                             "admm": {"pretrain_epochs": 1}, "hydra": {"density": 0.2}})  # fmt: skip
    code, err = call(["validate", str(path)])
    assert code == 0, err
