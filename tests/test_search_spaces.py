"""Every shipped search space validates and carries the paper's settings (Section 4.1).

Checked through the validated config objects, not by reading the YAML text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dnr_sweep.config import load_sweep_config

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
PAPER = sorted(p.name for p in SPACES.glob("*.yaml") if not p.name.startswith("digits"))
EPOCHS = {"cifar10": 200, "cifar100": 170, "tinyimagenet": 60}


def values(config, path: str, default):
    """The values a sweep gives a field: its grid/choice when searched, else the base value."""
    if path in config.search:
        kind, value = config.search[path].rule
        assert kind in ("grid", "choice"), f"{path} should be a list of values"
        return list(value)
    return [default]


def test_the_expected_experiments_exist():
    expected = {"cifar10_vgg16.yaml", "cifar100_resnet18.yaml", "cifar10_table2.yaml", "tinyimagenet_vgg16.yaml",
                "dnrc_clean.yaml", "dnrc_clean_cifar100.yaml", "ablation_dynamic_l2.yaml", "pgd_strength.yaml"}
    assert expected <= set(PAPER)


@pytest.mark.parametrize("name", PAPER)
def test_paper_settings(name):
    config = load_sweep_config(SPACES / name)
    train, dnr, attack = config.train, config.dnr, config.attack
    assert train.epochs == EPOCHS[config.data.dataset]
    assert (train.lr, train.momentum, train.weight_decay, train.batch_size) == (0.1, 0.9, 5e-4, 128)
    if config.data.dataset == "tinyimagenet":
        assert train.lr_milestones == [30, 50]
    else:
        assert (train.lr_milestones, train.lr_gamma) == ([80, 120, 160], 0.2)
    assert train.warmup_epochs == 5
    assert values(config, "dnr.beta", dnr.beta) == ([1.0] if name.startswith("dnrc") else [0.5])
    assert (dnr.rho, dnr.prune_rate) == (1e-4, 0.5)
    assert (attack.train.kind, attack.train.eps, attack.train.alpha, attack.train.steps) == ("pgd", 8 / 255, 0.01, 7)
    assert (attack.eval.pgd.eps, attack.eval.pgd.alpha, attack.eval.pgd.steps) == (8 / 255, 0.01, 7)
    assert attack.eval.fgsm.eps == 8 / 255
    assert all(d in (0.01, 0.02, 0.05, 0.1, 0.18, 0.2, 0.35, 0.5, 0.7, 1.0) for d in values(config, "dnr.density", dnr.density))
    header = (SPACES / name).read_text().split("\nname:")[0]
    assert "Paper" in header and "Compute" in header and "dnr-sweep run" in header


def test_figure_3_sweeps_cover_the_density_range_and_both_pruning_types():
    for name in ("cifar10_vgg16.yaml", "cifar100_resnet18.yaml"):
        config = load_sweep_config(SPACES / name)
        densities = values(config, "dnr.density", config.dnr.density)
        assert min(densities) == 0.01 and max(densities) == 1.0 and len(densities) >= 6
        assert sorted(values(config, "dnr.pruning", config.dnr.pruning)) == ["channel", "irregular"]


def test_table_cells():
    table2 = load_sweep_config(SPACES / "cifar10_table2.yaml")
    assert values(table2, "model.arch", table2.model.arch) == ["vgg16", "resnet18"]
    assert (table2.dnr.pruning, table2.dnr.density) == ("irregular", 0.05)
    ablation = load_sweep_config(SPACES / "ablation_dynamic_l2.yaml")
    assert values(ablation, "dnr.dynamic_l2", True) == [False, True]
    assert {0.05, 0.5} <= set(values(ablation, "dnr.density", None))


def test_the_demo_includes_the_dense_baseline_and_both_pruning_types():
    demo = load_sweep_config(SPACES / "digits_quick.yaml")
    assert 1.0 in values(demo, "dnr.density", demo.dnr.density)
    assert sorted(values(demo, "dnr.pruning", demo.dnr.pruning)) == ["channel", "irregular"]
    assert demo.data.dataset == "digits" and demo.train.device == "cpu"
