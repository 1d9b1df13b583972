"""Every shipped search space validates and carries the paper's settings (Section 4.1).

Checked through the validated config objects, not by reading the YAML text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dnr_sweep.config import load_sweep_config

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
ALL = sorted(p.name for p in SPACES.glob("*.yaml"))
#: the paper's experiments: its settings and its protocol (selection on clean test accuracy)
PAPER = ["ablation_dynamic_l2.yaml", "cifar100_resnet18_paper.yaml", "cifar10_table2.yaml", "cifar10_vgg16.yaml",
         "dnrc_clean.yaml", "dnrc_clean_cifar100.yaml", "pgd_strength.yaml", "tinyimagenet_vgg16.yaml"]  # fmt: skip
#: the headline config: the paper's settings, chosen on a held-out validation split
HEADLINE = ["cifar100_resnet18.yaml"]
#: searches over beta, rho and the pruning rate (validation chooses; issue #14)
SEARCHES = ["cifar10_resnet18_search.yaml", "digits_search.yaml"]
#: CPU configs on the embedded digits data
DIGITS = [
    "digits_channel_modes.yaml",
    "digits_quick.yaml",
    "digits_search_confirm.yaml",
    "digits_table2.yaml",
    "digits_trends.yaml",
]
EPOCHS = {"cifar10": 200, "cifar100": 170, "tinyimagenet": 60}
SEARCHED = {"dnr.beta": (0.2, 1.0), "dnr.rho": (1e-6, 1e-2), "dnr.prune_rate": (0.1, 0.9)}


def test_every_shipped_config_is_classified_and_validates():
    assert sorted(PAPER + HEADLINE + SEARCHES + DIGITS) == ALL, "classify a new search_spaces/*.yaml in this test"
    for name in ALL:
        load_sweep_config(SPACES / name)


def values(config, path: str, default):
    """The values a sweep gives a field: its grid/choice when searched, else the base value."""
    if path in config.search:
        kind, value = config.search[path].rule
        assert kind in ("grid", "choice"), f"{path} should be a list of values"
        return list(value)
    return [default]


@pytest.mark.parametrize("name", PAPER + HEADLINE)
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
    assert all(
        d in (0.01, 0.02, 0.05, 0.1, 0.18, 0.2, 0.35, 0.5, 0.7, 1.0) for d in values(config, "dnr.density", dnr.density)
    )
    header = (SPACES / name).read_text().split("\nname:")[0]
    assert "Paper" in header and "Compute" in header and "dnr-sweep run" in header


@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_use_the_papers_protocol_and_say_so(name):
    config = load_sweep_config(SPACES / name)
    assert (config.train.select_on, config.data.val_size) == ("test", 0)
    assert config.tune.metric is None and config.tune.search_alg is None and config.tune.scheduler is None
    header = (SPACES / name).read_text().split("\nname:")[0]
    assert "Protocol: the paper's" in header and "select_on: test" in header


@pytest.mark.parametrize("name", HEADLINE)
def test_the_headline_config_chooses_on_validation_and_names_its_paper_variant(name):
    config = load_sweep_config(SPACES / name)
    assert config.train.select_on == "val" and config.data.val_size == 5000
    assert config.train.resolved_select_metric == "val_pgd_acc"
    assert config.tune.metric is None or config.tune.metric.startswith("val_")
    paper = load_sweep_config(SPACES / name.replace(".yaml", "_paper.yaml"))
    assert paper.search == config.search and paper.dnr == config.dnr and paper.attack == config.attack
    header = (SPACES / name).read_text().split("\nname:")[0]
    assert "Protocol: validation chooses" in header and name.replace(".yaml", "_paper.yaml") in header


def test_table2_header_gives_the_densities_of_the_papers_compression():
    header = (SPACES / "cifar10_table2.yaml").read_text().split("\nname:")[0]
    for text in ("19.87x", "19.83x", "VGG16 0.0476 (20.86x)", "ResNet18 0.0459 (21.58x)"):
        assert text in header, text
    assert ">20x" not in header and "a little\n# over 20x" not in header


@pytest.mark.parametrize("name", SEARCHES)
def test_searches_choose_on_validation_over_the_issue_space(name):
    config = load_sweep_config(SPACES / name)
    assert config.train.select_on == "val" and config.data.val_size > 0
    assert config.data.val_size == (5000 if config.data.dataset == "cifar10" else config.data.val_size)
    assert config.search["dnr.density"].rule == ("choice", [0.05, 0.1, 0.2])
    assert config.search["dnr.pruning"].rule == ("choice", ["irregular", "channel"])
    for path, bounds in SEARCHED.items():
        assert tuple(config.search[path].rule[1]) == bounds, path
    assert config.search["dnr.rho"].rule[0] == "loguniform"
    alg = config.tune.search_alg.optuna
    assert alg.objectives == {"val_pgd_acc": "max", "compression": "max"} and alg.seed is not None
    # the benchmark's winner (benchmarks/RESULTS.md, bench_search_efficiency): TPE, nothing run first, no ASHA
    assert alg.sampler == "tpe" and config.tune.scheduler is None and not config.tune.points_to_evaluate
    header = (SPACES / name).read_text().split("\nname:")[0]
    assert "Compute" in header and "dnr-sweep run" in header


def test_the_cifar_search_packs_fractional_gpus_and_states_its_budget():
    config = load_sweep_config(SPACES / "cifar10_resnet18_search.yaml")
    assert config.model.arch == "resnet18" and config.data.dataset == "cifar10"
    assert 0 < config.tune.resources_per_trial.gpu < 1
    header = (SPACES / "cifar10_resnet18_search.yaml").read_text().split("\nname:")[0]
    assert "GPU-hours" in header and "trials" in header and "epochs" in header


def test_figure_3_sweeps_cover_the_density_range_and_both_pruning_types():
    for name in ("cifar10_vgg16.yaml", "cifar100_resnet18.yaml", "cifar100_resnet18_paper.yaml"):
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
