"""Each method's declaration of the config fields it reads (``reads`` on its config block,
:mod:`dnr_sweep.config.reads`) is the truth, both ways:

- a method that reads a method-dependent field its block does not declare fails here: every method runs
  through all its phases on a config object that records each field read through it;
- changing a field a method does not declare changes nothing in its run (weights, masks and every
  epoch's figures bit for bit), so refusing a search or ``--set`` on it loses nothing;
- validation refuses a search dimension or ``--set`` that no method of the run reads, naming the method,
  and accepts one that some searched method reads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from pydantic import BaseModel, ValidationError
from torch.utils.data import Subset

from dnr_sweep import methods
from dnr_sweep.config import RunConfig, leaf_paths
from dnr_sweep.config.reads import METHOD_FIELDS, method_dependent
from dnr_sweep.config.run import method_reads
from dnr_sweep.data.loaders import build_datasets
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.models.architectures import get_model
from dnr_sweep.sparsity import prunable_layers
from tests.test_hostile import call, write_yaml


class Recorder:
    """A read-only view of a pydantic config that records the dotted path of every field read through it
    (a property runs on the view, so the fields it reads are recorded)."""

    def __init__(self, model: BaseModel, log: set[str], prefix: str = "") -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        model, log, prefix = self._model, self._log, self._prefix
        attribute = getattr(type(model), name, None)
        if isinstance(attribute, property):
            return attribute.fget(self)
        value = getattr(model, name)
        path = prefix + name
        if isinstance(value, BaseModel):
            return Recorder(value, log, path + ".")
        if name in type(model).model_fields:
            log.add(path)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a method may not change its config ({self._prefix}{name})")


def layer_names() -> list[str]:
    return [n for n, _ in prunable_layers(get_model("smallcnn", num_classes=10, in_channels=1, width=0.25), False)]


def base(method: str, **blocks: Any) -> dict[str, Any]:
    """A tiny run of ``method`` through all its phases, one epoch each (DNR: a warm-up and two hybrid epochs)."""
    data = {
        "data": {"dataset": "digits", "val_size": 40},
        "model": {"arch": "smallcnn", "width": 0.25},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.05, "lr_milestones": [2], "lr_gamma": 0.2,
                  "warmup_epochs": 1, "weight_decay": 5e-4, "device": "cpu", "num_threads": 1, "seed": 0},
        "dnr": {"pruning": "irregular", "density": 0.2, "beta": 0.5, "rho": 1e-3, "prune_rate": 0.5,
                "dynamic_l2": True, "prune_linear": False},
        "method": method,
        "admm": {"density": 0.2, "layer_ratios": "naive", "rho": 1e-3, "update_every": 1, "rho_growth": 1.3,
                 "beta": 0.0, "pretrain_epochs": 1, "admm_epochs": 1, "retrain_epochs": 1, "pretrain_lr": 0.05,
                 "admm_lr": 0.01, "retrain_lr": 0.01},
        "lasso": {"lam": 1e-4, "threshold": None, "density": 0.2, "beta": 0.0, "lasso_epochs": 1,
                  "retrain_epochs": 1, "lasso_lr": 0.05, "retrain_lr": 0.01},
        "hydra": {"density": 0.2, "loss": "trades", "trades_beta": 6.0, "beta": 0.0, "weight_decay": 1e-4,
                  "freeze_bn": False, "pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1,
                  "pretrain_lr": 0.05, "prune_lr": 0.1, "finetune_lr": 0.01},
        "attack": {"train": {"eps": 0.1, "alpha": 0.05, "steps": 1},
                   "eval": {"fgsm": {"eps": 0.1}, "pgd": {"eps": 0.1, "alpha": 0.05, "steps": 1}}},
    }  # fmt: skip
    for block, changes in blocks.items():
        data[block] = {**data[block], **changes}
    return data


#: each method's runs: every value of the fields its reads depend on (``only_when``)
VARIANTS = {
    "dnr": base("dnr"),
    "dnr, no dynamic L2": base("dnr", dnr={"dynamic_l2": False}),
    "admm": base("admm"),
    "admm, per-layer ratios": base("admm", admm={"layer_ratios": dict.fromkeys(layer_names(), 0.5)}),
    "lasso, to a density": base("lasso"),
    "lasso, fixed threshold": base("lasso", lasso={"density": None, "threshold": 0.02}),
    "hydra, trades": base("hydra"),
    "hydra, pgd": base("hydra", hydra={"loss": "pgd", "beta": 0.5}),
}

#: a valid value other than every variant's for each method-dependent field
CHANGED: dict[str, Any] = {
    "train.epochs": 5, "train.lr": 0.2, "train.lr_milestones": [1], "train.lr_gamma": 0.5, "train.warmup_epochs": 0,
    "train.weight_decay": 0.01,
    "dnr.pruning": "channel", "dnr.density": 0.5, "dnr.beta": 0.8, "dnr.rho": 0.05, "dnr.prune_rate": 0.2,
    "dnr.dynamic_l2": False, "dnr.prune_linear": True,
    "admm.density": 0.3, "admm.layer_ratios": "uniform", "admm.rho": 0.01, "admm.update_every": 2,
    "admm.rho_growth": 2.0, "admm.beta": 0.5, "admm.pretrain_epochs": 2, "admm.admm_epochs": 2,
    "admm.retrain_epochs": 2, "admm.pretrain_lr": 0.03, "admm.admm_lr": 0.03, "admm.retrain_lr": 0.03,
    "lasso.lam": 0.01, "lasso.threshold": 0.05, "lasso.density": 0.3, "lasso.beta": 0.5, "lasso.lasso_epochs": 2,
    "lasso.retrain_epochs": 2, "lasso.lasso_lr": 0.03, "lasso.retrain_lr": 0.03,
    "hydra.density": 0.3, "hydra.loss": "pgd", "hydra.trades_beta": 2.0, "hydra.beta": 0.5,
    "hydra.weight_decay": 0.01, "hydra.freeze_bn": True, "hydra.pretrain_epochs": 2, "hydra.prune_epochs": 2,
    "hydra.finetune_epochs": 2, "hydra.pretrain_lr": 0.03, "hydra.prune_lr": 0.03, "hydra.finetune_lr": 0.03,
}  # fmt: skip


@pytest.fixture(scope="module")
def data():
    """Digits, a few batches: enough for every phase to step, evaluate and prune."""
    splits = build_datasets("digits", root=".", val_size=40, seed=0, augment=False)
    return dataclasses.replace(splits, train=Subset(splits.train, range(64)), test=Subset(splits.test, range(32)))


def get(data: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        data = data[key]
    return data


def with_value(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = {block: dict(v) if isinstance(v, dict) else v for block, v in data.items()}
    node = changed
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    return changed


def reads_here(config: RunConfig, path: str) -> bool:
    """Whether ``config``'s method reads ``path`` under ``config``'s own values."""
    return method_reads(config.method).reads(path, lambda p: [get(config.model_dump(), p)])


def run_through(config: RunConfig, data, record: set[str] | None = None, monkeypatch=None) -> dict[str, Any]:
    """Every epoch of ``config``; what it leaves: final weights and masks, every epoch's figures (times left out)."""
    from dnr_sweep.training.engine import TrainingRun

    if record is not None:
        build = methods.build
        monkeypatch.setattr(methods, "build", lambda cfg: build(Recorder(cfg, record)))
    run = TrainingRun(config, data=data)
    if record is not None:
        type(run.method).check(Recorder(config, record), run.model)
    figures = []
    while not run.finished:
        report = run.train_epoch()
        figures.append({k: v for k, v in report.metrics.items() if not k.endswith("_time_s")})
    return {"weights": run.model.state_dict(), "masks": run.method.masks(), "figures": figures,
            "selected": run.selected()}  # fmt: skip


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    tensors = all(torch.equal(a[k][n], b[k][n]) for k in ("weights", "masks") for n in a[k]) and all(
        a[k].keys() == b[k].keys() for k in ("weights", "masks")
    )
    return tensors and repr(a["figures"]) == repr(b["figures"]) and repr(a["selected"]) == repr(b["selected"])


def test_every_method_dependent_field_has_a_changed_value():
    fields = {p for p in leaf_paths(RunConfig) if method_dependent(p)}
    assert set(CHANGED) == fields
    assert {p.split(".")[0] for p in fields} == {"train", *rc.METHODS}
    assert {m for m in rc.METHODS} == set(methods.REGISTRY)
    for name, cls in methods.REGISTRY.items():
        assert cls.reads() is type(getattr(RunConfig(), name)).reads  # one declaration per method: its block's


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_method_reads_only_what_its_block_declares(variant, data, monkeypatch):
    config = RunConfig.model_validate(VARIANTS[variant])
    record: set[str] = set()
    run_through(config, data, record, monkeypatch)
    undeclared = sorted(p for p in record if method_dependent(p) and not reads_here(config, p))
    assert not undeclared, f"{config.method} reads {undeclared}: declare them in its block's `reads`"
    assert any(method_dependent(p) for p in record)  # the recorder saw the method's reads at all


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_changing_a_field_the_method_does_not_read_changes_nothing(variant, data):
    reference_data = VARIANTS[variant]
    reference = RunConfig.model_validate(reference_data)
    unread = [p for p in CHANGED if not reads_here(reference, p)]
    assert unread
    expected = run_through(reference, data)
    for path in unread:
        assert get(reference_data, path) != CHANGED[path], path
        try:
            config = RunConfig.model_validate(with_value(reference_data, path, CHANGED[path]))
        except ValidationError as exc:  # a value the config refuses cannot be silently ignored either
            assert path in str(exc) or path.split(".")[0] in str(exc), (path, exc)
            continue
        assert same(run_through(config, data), expected), f"{reference.method} reads {path}: declare it"


# ------------------------------------------------------------------------------------------------
# The refusal: a search dimension or --set that no method of the run reads

CONFIG = {"data": {"dataset": "digits", "val_size": 180}, "model": {"arch": "smallcnn", "width": 0.5},
          "train": {"batch_size": 64, "device": "cpu"}}  # fmt: skip

REFUSED = [
    ({"method": "admm", "search": {"train.epochs": {"grid": [2, 4]}}}, [],
     "search.train.epochs: method admm does not read train.epochs (ADMM trains its phases"),
    ({"search": {"train.epochs": {"grid": [2, 4]}}}, ["method=admm"], "search.train.epochs: method admm"),
    ({"method": "lasso", "search": {"train.lr": {"choice": [0.1, 0.2]}}}, [], "search.train.lr: method lasso"),
    ({"method": "hydra", "search": {"train.lr_milestones": {"grid": [[1], [2]]}}}, [],
     "search.train.lr_milestones: method hydra does not read"),
    ({"method": "admm", "search": {"train.warmup_epochs": {"grid": [0, 1]}}}, [], "search.train.warmup_epochs"),
    ({"method": "hydra", "search": {"train.weight_decay": {"grid": [0.0, 1e-4]}}}, [],
     "search.train.weight_decay: method hydra does not read train.weight_decay"),
    ({"method": "admm", "search": {"dnr.density": {"grid": [0.1, 0.2]}}}, [],
     "search.dnr.density: method admm does not read dnr.density (a setting of method dnr"),
    ({"search": {"admm.rho": {"grid": [1e-3, 1e-2]}}}, [], "search.admm.rho: method dnr does not read admm.rho"),
    ({"search": {"hydra.density": {"grid": [0.1, 0.2]}}}, [], "search.hydra.density: method dnr does not read"),
    ({"method": "hydra", "search": {"hydra.beta": {"grid": [0.0]}}}, [],
     "search.hydra.beta: method hydra does not read hydra.beta (it reads hydra.beta only with hydra.loss: pgd)"),
    ({"method": "hydra", "hydra": {"loss": "pgd"}, "search": {"hydra.trades_beta": {"grid": [1.0, 6.0]}}}, [],
     "only with hydra.loss: trades"),
    ({"search": {"dnr.rho": {"grid": [1e-4, 1e-3]}}, "dnr": {"dynamic_l2": False}}, [],
     "search.dnr.rho: method dnr does not read dnr.rho (it reads dnr.rho only with dnr.dynamic_l2: true)"),
    ({"method": "admm", "admm": {"layer_ratios": "uniform", "pretrain_epochs": 1}}, ["train.lr=0.2"],
     "--set train.lr: method admm does not read train.lr"),
    ({}, ["method=lasso", "dnr.density=0.1"], "--set dnr.density: method lasso does not read dnr.density"),
    ({}, ["lasso={lam: 0.1}"], "--set lasso.lam: method dnr does not read lasso.lam"),
    ({"method": "admm"}, ["train.epochs=3"], "--set train.epochs: method admm does not read train.epochs"),
    ({"search": {"method": {"grid": ["admm", "lasso"]}, "train.lr": {"grid": [0.1, 0.2]}}}, [],
     "search.train.lr: none of the searched methods (admm, lasso) reads train.lr"),
]  # fmt: skip


@pytest.mark.parametrize("changes,sets,fragment", REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_a_field_no_method_of_the_run_reads_is_refused(tmp_path, changes, sets, fragment):
    path = write_yaml(tmp_path / "c.yaml", {**CONFIG, **changes})
    code, err = call(["validate", str(path), *[f"--set={s}" for s in sets]])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert fragment in lines[0] and lines[0].startswith(str(path)) and "Traceback" not in err, err


ACCEPTED = [
    ({"search": {"method": {"grid": ["dnr", "admm"]}, "dnr.density": {"grid": [0.1, 0.2]}}}, []),
    ({"search": {"method": {"grid": ["dnr", "hydra"]}, "train.epochs": {"grid": [2, 3]}}}, []),
    ({"search": {"method": {"grid": ["admm", "hydra"]}, "train.weight_decay": {"grid": [0.0, 1e-4]}}}, []),
    ({"method": "admm", "search": {"dnr.prune_linear": {"grid": [True, False]}}}, ["train.weight_decay=0.001"]),
    ({"method": "hydra", "search": {"hydra.loss": {"grid": ["trades", "pgd"]}, "hydra.trades_beta": {"grid": [1, 6]}}},
     []),
    ({"search": {"dnr.dynamic_l2": {"grid": [True, False]}, "dnr.rho": {"grid": [1e-4, 1e-3]}}}, []),
    ({"method": "lasso", "lasso": {"density": None}}, ["lasso.threshold=0.01"]),
    ({"method": "admm", "train": {"batch_size": 64, "device": "cpu", "lr": 0.3}}, []),  # written: allowed
    ({}, ["train.lr=0.1", "dnr.density=0.5", "train.batch_size=32"]),
]  # fmt: skip


@pytest.mark.parametrize("changes,sets", ACCEPTED, ids=[str(i) for i in range(len(ACCEPTED))])
def test_a_field_some_method_of_the_run_reads_is_accepted(tmp_path, changes, sets):
    path = write_yaml(tmp_path / "c.yaml", {**CONFIG, **changes})
    code, err = call(["validate", str(path), *[f"--set={s}" for s in sets]])
    assert code == 0, err


def test_method_fields_are_what_the_blocks_declare_from():
    declared = {f for name in rc.METHODS for f in method_reads(name).fields}
    assert declared <= {p for p in leaf_paths(RunConfig) if method_dependent(p)} | set(METHOD_FIELDS)
