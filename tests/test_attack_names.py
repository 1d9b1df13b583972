"""Tests for dnr_sweep.foundation.attack_names: the one grammar of attack names, shared by config validation,
``dnr-sweep evaluate --attacks``, the evaluator and the run contract's attack metrics."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from dnr_sweep.config import EvaluateConfig, validate_sweep
from dnr_sweep.foundation import run_contract
from dnr_sweep.foundation.attack_names import ATTACK_FORMS, ATTACK_NAME_RE, AttackSpec, parse_attack, parse_attacks
from dnr_sweep.foundation.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("clean", AttackSpec("clean", "clean")),
        ("FGSM", AttackSpec("fgsm", "fgsm")),
        ("pgd", AttackSpec("pgd", "pgd")),
        ("pgd20", AttackSpec("pgd20", "pgd", steps=20, restarts=1)),
        ("pgd50x10", AttackSpec("pgd50x10", "pgd", steps=50, restarts=10, random_start=True)),
        (" autoattack ", AttackSpec("autoattack", "autoattack")),
    ],
)
def test_parse_attack_forms(name, spec):
    assert parse_attack(name) == spec


@pytest.mark.parametrize("name", ["pgd0", "pgd7x0", "pgd-7", "cw", "pgdx5", "pgd7x", "apgd", "", "pgd07", "pgd\n7"])
def test_unknown_attack_lists_valid_forms(name):
    with pytest.raises(ValueError, match="valid forms") as info:
        parse_attack(name)
    assert repr(name) in str(info.value)
    for form in ATTACK_FORMS:
        assert form.split(" ")[0] in str(info.value)


def test_parse_attacks_splits_drops_duplicates_and_rejects_nothing():
    assert [s.name for s in parse_attacks("pgd20, PGD20,fgsm,,")] == ["pgd20", "fgsm"]
    with pytest.raises(ValueError, match="no attack given"):
        parse_attacks(" , ")


def test_name_pattern_matches_exactly_the_canonical_names():
    for name in ("clean", "fgsm", "pgd", "pgd7", "pgd50x10", "autoattack"):
        assert ATTACK_NAME_RE.fullmatch(name) and parse_attack(name).name == name
    for name in ("PGD7", " pgd7", "pgd07", "pgd7x0", "pgd7x", "cw"):
        assert not ATTACK_NAME_RE.fullmatch(name)


# Strings near the grammar: its pieces glued in any order, in any case, with whitespace around
_PIECES = ["clean", "fgsm", "pgd", "autoattack", "x", "0", "1", "7", "50", "10", " ", "\t", "\n", "-", "_acc", "val_"]
_near_names = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=5).map("".join)
_cased = _near_names.flatmap(
    lambda text: st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(text, upper, strict=True))
    )
)
_attack_strings = st.one_of(_near_names, _cased, st.text(max_size=12))


def _config_accepts(name: str) -> str | None:
    """The attack name the validated ``evaluate:`` block holds, or None when validation rejects it."""
    try:
        return EvaluateConfig.model_validate({"attacks": [name]}).attacks[0]
    except ValidationError:
        return None


@given(_attack_strings)
@example("pgd20\n")  # a '$'-anchored pattern would accept this one
@example("PGD50x10")
@example("pgd007")
def test_config_and_parse_attack_accept_the_same_strings(name):
    try:
        spec = parse_attack(name)
    except ValueError:
        spec = None
    held = _config_accepts(name)
    assert (held is None) == (spec is None)
    if spec is not None:
        # the config holds the canonical spelling, which every consumer of the grammar accepts
        assert held == spec.name
        assert ATTACK_NAME_RE.fullmatch(held)
        for split in ("test", "val"):
            assert run_contract.is_run_metric(run_contract.attack_metric(held, split))


def test_config_error_names_the_value_and_the_valid_forms():
    with pytest.raises(ConfigError) as info:
        validate_sweep({"evaluate": {"attacks": ["pgd20", "pgd7x0"]}}, "sweep.yaml")
    message = str(info.value)
    assert message.startswith("sweep.yaml: evaluate.attacks.1: unknown attack 'pgd7x0'; valid forms:")
    for form in ATTACK_FORMS:
        assert form in message


def test_grammar_run_contract_and_config_load_no_torch():
    code = (
        "import sys, dnr_sweep.foundation.attack_names, dnr_sweep.foundation.run_contract, dnr_sweep.config;"
        "heavy = [m for m in ('torch', 'torchvision', 'ray') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
