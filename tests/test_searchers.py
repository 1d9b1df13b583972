"""The searcher registry (dnr_sweep.config.searchers) and its builders (dnr_sweep.sweep.searchers) agree,
the config's allowed names come from it, and the config layer loads neither Ray nor Optuna."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dnr_sweep.config import searchers, validate_sweep
from dnr_sweep.foundation.errors import ConfigError
from dnr_sweep.sweep.searchers import BUILDERS, import_path

BASE = {"data": {"dataset": "digits"}, "search": {"dnr.beta": {"uniform": [0.1, 0.9]}}}


def test_every_searcher_has_a_builder_and_every_builder_a_searcher():
    assert set(BUILDERS) == set(searchers.SEARCHERS)


def test_every_optuna_sampler_names_an_optuna_sampler_class():
    import optuna

    for name, sampler in searchers.OPTUNA_SAMPLERS.items():
        cls = import_path(sampler.cls)
        assert issubclass(cls, optuna.samplers.BaseSampler), name
        for option in sampler.options:
            assert option in searchers.OptunaConfig.model_fields, (name, option)


def test_the_allowed_sampler_names_are_the_registry_names():
    for name in searchers.OPTUNA_SAMPLERS:
        config = validate_sweep({**BASE, "tune": {"search_alg": {"optuna": {"sampler": name}}}})
        assert config.tune.search_alg.optuna.sampler == name
    with pytest.raises(ConfigError, match="'tpe'"):
        validate_sweep({**BASE, "tune": {"search_alg": {"optuna": {"sampler": "cmaes"}}}})


@pytest.mark.parametrize(
    ("block", "expected"),
    [({"hyperopt": {}}, "unknown searcher 'hyperopt'; valid: optuna"), ({}, "exactly one searcher of optuna")],
)
def test_an_unknown_or_missing_searcher_is_refused_listing_the_valid_names(block, expected):
    with pytest.raises(ConfigError, match=expected):
        validate_sweep({**BASE, "tune": {"search_alg": block}})


def test_get_fails_loudly_listing_the_valid_names():
    assert searchers.get("optuna").label == "Optuna"
    with pytest.raises(ValueError, match="unknown searcher 'nope'; valid: optuna"):
        searchers.get("nope")


def test_the_config_layer_imports_neither_ray_nor_optuna():
    code = (
        "import sys, dnr_sweep.config, dnr_sweep.config.searchers\n"
        "print(sorted(m for m in ('ray', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("sampler", list(searchers.OPTUNA_SAMPLERS))
def test_every_searcher_survives_the_pickling_tune_does_when_a_sweep_starts(sampler):
    """Tune pickles the searcher with the Tuner's state; Optuna 5's NSGA-II holds a threading.Lock."""
    from ray import cloudpickle

    from dnr_sweep.sweep.search import build_search_alg

    goals = {"val_pgd_acc": "max", "compression": "max"}
    config = validate_sweep({**BASE, "tune": {"search_alg": {"optuna": {"sampler": sampler, "objectives": goals}}}})
    searcher = build_search_alg(config)
    copy = cloudpickle.loads(cloudpickle.dumps(searcher))
    assert type(copy._sampler) is type(searcher._sampler)
