"""The contract between a method and its run: the methods use only what :class:`MethodRun` lists, and the
engine provides all of it."""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from torch import nn

from dnr_sweep.methods import MethodRun
from dnr_sweep.sparsity import DynamicL2, Masking
from dnr_sweep.training.engine import TrainingRun
from tests.test_engine import digits_config

METHODS = Path(__file__).resolve().parents[1] / "dnr_sweep" / "methods"


def used_run_attributes(path: Path) -> set[str]:
    """The attributes read of ``self.run`` or of a parameter named ``run`` in the module at ``path``."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if (isinstance(value, ast.Name) and value.id == "run") or (
            isinstance(value, ast.Attribute)
            and value.attr == "run"
            and isinstance(value.value, ast.Name)
            and value.value.id == "self"
        ):
            used.add(node.attr)
    return used


def test_methods_use_only_what_method_run_lists():
    listed = set(MethodRun.__annotations__)
    for path in sorted(METHODS.glob("*.py")):
        assert used_run_attributes(path) <= listed, path.name


def test_the_engine_provides_method_run():
    run = TrainingRun(digits_config())
    assert isinstance(run, MethodRun) and run.method.run is run
    assert isinstance(run.model, nn.Module) and isinstance(run.optimizer, torch.optim.Optimizer)
    assert isinstance(run.masking, Masking) and isinstance(run.l2, DynamicL2)
    assert isinstance(run.device, torch.device)
