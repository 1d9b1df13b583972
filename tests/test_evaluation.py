"""Tests for dnr_sweep.evaluation: attack names, ordering and masking checks on a real small model, the CLI.

The model: smallcnn (width 0.5) trained for a few epochs on scikit-learn's digits with a hybrid
clean + PGD loss at eps 0.15 (digits are coarse: at 8/255 every model is robust, see DESIGN.md), so the
attacks have something to find. About 5-10 s of training on 2 CPU cores, shared by the whole module.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import TensorDataset

from dnr_sweep import cli
from dnr_sweep.attacks.gradient import pgd
from dnr_sweep.config import RunConfig
from dnr_sweep.data.loaders import build_datasets
from dnr_sweep.evaluation import (
    CURVE_EPS,
    CURVE_STEPS,
    CheckResult,
    Evaluator,
    all_passed,
    autoattack_flags_check,
    autoattack_vs_pgd_check,
    check_entries,
    eps_growth_check,
    evaluate_model,
    fgsm_vs_pgd_check,
    gradient_masking_checks,
    steps_restarts_check,
    strength_curves,
    write_strength_curves,
    zero_gradients_check,
)
from dnr_sweep.models.architectures import get_model

EPS, ALPHA, STEPS = 0.15, 0.0375, 7
LIMIT = 120  # test images per evaluation (of 360)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny 8x8 convolutions: one thread is as fast alone and ~30x faster on a busy 2-core machine
    (two OpenMP threads wait on each other while other processes hold the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return build_datasets("digits", root=tmp_path_factory.mktemp("data"), val_size=100)


@pytest.fixture(scope="module")
def trained(splits) -> nn.Module:
    """Hybrid (0.5 clean + 0.5 PGD-3) training at eps 0.15 after 2 clean epochs; eval mode."""
    torch.manual_seed(0)
    model = get_model("smallcnn", num_classes=10, in_channels=1, width=0.5, mean=splits.mean, std=splits.std)
    loader = torch.utils.data.DataLoader(splits.train, batch_size=64, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(8):
        model.train()
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            if epoch >= 2:
                adv = pgd(model, images, labels, eps=EPS, alpha=ALPHA, steps=3, random_start=True)
                loss = 0.5 * loss + 0.5 * F.cross_entropy(model(adv), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


class RoundedInput(nn.Module):
    """Gradient masking by design: rounds the input to 5 grey levels. ``round`` has a zero derivative,
    so the input gradient is exactly zero and gradient attacks only move by their random start."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)


def make_evaluator(model: nn.Module, dataset, **changes) -> Evaluator:
    settings = dict(eps=EPS, pgd_alpha=ALPHA, pgd_steps=STEPS, limit=LIMIT, seed=0) | changes
    return Evaluator(model, dataset, **settings)


# ------------------------------------------------------------------------------------- attack names
# (the grammar itself: tests/test_attack_names.py)


def test_unknown_attack_fails_before_any_attack_runs(splits):
    model = get_model("smallcnn", num_classes=10, in_channels=1, width=0.25)
    with pytest.raises(ValueError, match="unknown attack 'pgd20x'"):
        evaluate_model(model, splits.test, attacks="clean,pgd20x", eps=EPS, pgd_alpha=ALPHA, pgd_steps=STEPS)


# ---------------------------------------------------------------------- the trained model: ordering


@pytest.fixture(scope="module")
def robust_eval(trained, splits) -> tuple[Evaluator, dict[str, float]]:
    evaluator = make_evaluator(trained, splits.test)
    return evaluator, evaluator.evaluate("clean,fgsm,pgd,pgd7,pgd20,pgd50x10")


def test_accuracies_are_ordered(robust_eval):
    evaluator, acc = robust_eval
    tol = evaluator.tolerance
    assert acc["clean"] >= 85.0  # the model learned digits
    assert acc["clean"] >= acc["fgsm"] >= acc["pgd"] - tol
    assert acc["pgd"] < acc["clean"]  # the attack finds something at eps 0.15
    assert acc["pgd"] == acc["pgd7"]  # the config's PGD is PGD-7 with the same seeded random start
    # pgd50x10's first attempt is pgd50 with the same random start; restarts only lower it. More steps
    # lower it within noise.
    assert acc["pgd50x10"] <= acc["pgd20"] + tol <= acc["pgd"] + 2 * tol
    assert acc["pgd50x10"] <= acc["pgd"]


def test_results_do_not_depend_on_attack_order(trained, splits, robust_eval):
    _, acc = robust_eval
    again = evaluate_model(trained, splits.test, attacks=["pgd20", "pgd"], eps=EPS, pgd_alpha=ALPHA,
                           pgd_steps=STEPS, limit=LIMIT, batch_size=50)  # fmt: skip
    assert again == {k: acc[k] for k in ("pgd20", "pgd")}


def test_checks_pass_on_the_trained_model(robust_eval):
    evaluator, _ = robust_eval
    checks = check_entries(evaluator)
    names = [c["name"] for c in checks]
    assert names == ["steps_restarts", "eps_growth", "fgsm_vs_pgd", "zero_gradients"]
    assert all(set(c) == {"name", "status", "detail"} for c in checks)
    assert [c for c in checks if c["status"] != "pass"] == []
    assert "pgd50x10" in checks[0]["detail"] and "%" in checks[1]["detail"]


def test_checks_flag_a_gradient_masked_model(trained, splits):
    masked = RoundedInput(trained)
    evaluator = make_evaluator(masked, splits.test, limit=64)
    acc = evaluator.evaluate("clean,fgsm,pgd")
    assert acc["fgsm"] == acc["clean"]  # a zero gradient: FGSM does not move
    checks = {c["name"]: c for c in check_entries(evaluator)}
    warned = {name for name, c in checks.items() if c["status"] == "warn"}
    assert "zero_gradients" in warned  # AutoAttack's flag
    assert "eps_growth" in warned  # Athalye et al.: a huge eps must break (almost) every input
    assert "64 of 64" in checks["zero_gradients"]["detail"]


# ------------------------------------------------------------ one gradient-masking check at a time
# Hand-made situations on one-pixel images, each built so a check must pass or must warn:
#   Threshold: a linear classifier "pixel > 0.5"; PGD and FGSM fool every image within eps of 0.5,
#     so accuracy falls with eps, reaches 0% at the large radius, and more steps never help the model.
#   Rounded: Threshold after rounding the input to 5 grey levels; the input gradient is exactly zero.
#   Constant: ignores its input and answers class 0, the label of every image: no eps breaks it.
#   Bump: class 1 wins only in a narrow band just past the image value 0.5; PGD without random start
#     steps into the band, then the gradient points back out: odd step counts fool, even ones do not.
#   Probabilities: Threshold returning softmax probabilities instead of logits (AutoAttack flags it).


class Threshold(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1) - 0.5
        return torch.stack([-2 * m, 2 * m], dim=1)


class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0 * x.flatten(1).sum(1, keepdim=True) + torch.tensor([[5.0, 0.0]])


class Bump(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        class_1 = 10 * torch.exp(-(((m - 0.545) / 0.02) ** 2)) - 5  # > 0 only for m in ~(0.527, 0.563)
        return torch.stack([torch.zeros_like(class_1), class_1], dim=1)


class Probabilities(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Threshold()(x).softmax(dim=1)


def spread_pixels() -> TensorDataset:
    """50 one-pixel images from 0.02 to 0.98, labelled 'above 0.5'."""
    x = torch.linspace(0.02, 0.98, 50)
    return TensorDataset(x.view(-1, 1, 1, 1), (x > 0.5).long())


def grey_pixels() -> TensorDataset:
    """20 one-pixel images of value 0.5, labelled 0."""
    return TensorDataset(torch.full((20, 1, 1, 1), 0.5), torch.zeros(20, dtype=torch.long))


def pixel_evaluator(model: nn.Module, dataset, **changes) -> Evaluator:
    settings = dict(eps=0.1, pgd_alpha=0.05, pgd_steps=7, seed=0) | changes
    return Evaluator(model, dataset, **settings)


def test_steps_restarts_check():
    passed = steps_restarts_check(pixel_evaluator(Threshold(), spread_pixels()))
    assert passed == CheckResult(
        "steps_restarts", "pass", "PGD at eps 0.1: pgd7 80.00%, pgd7x5 80.00%, pgd20 80.00% (tolerance 4.00 pp)"
    )
    bump = pixel_evaluator(Bump(), grey_pixels(), eps=0.2, pgd_random_start=False)
    assert bump.pgd() == 0.0  # 7 steps end in the band
    warned = steps_restarts_check(bump)  # runs pgd20, which ends outside it
    assert warned.status == "warn"
    assert "rises: pgd20 (no random start) 100.00% > pgd7 (no random start) 0.00%" in warned.detail


def test_eps_growth_check():
    passed = eps_growth_check(pixel_evaluator(Threshold(), spread_pixels()))
    assert passed.status == "pass"
    # |x - 0.5| > eps keeps an image: 40 of 50 at eps 0.1, 30 at 0.2, 10 at 0.4, none at 0.8
    assert "eps 0.1: 80.00%, eps 0.2: 60.00%, eps 0.4: 20.00%, eps 0.8: 0.00%" in passed.detail
    warned = eps_growth_check(pixel_evaluator(Constant(), grey_pixels()))
    assert warned.status == "warn"
    assert "100.00% > 5% at eps 0.8" in warned.detail  # the large radius max(64/255, 8 x 0.1)
    bump = eps_growth_check(pixel_evaluator(Bump(), grey_pixels(), eps=0.2, pgd_random_start=False))
    assert bump.status == "warn" and "100.00% at 0.4 > 0.00% at 0.2" in bump.detail  # a rise with eps


def test_fgsm_vs_pgd_check():
    passed = fgsm_vs_pgd_check(pixel_evaluator(Threshold(), spread_pixels()))
    assert passed.status == "pass" and passed.detail.startswith("FGSM 80.00% vs PGD 80.00% at eps 0.1")
    # a PGD too weak for its radius (one step of 0.001): FGSM's single eps step is the stronger attack
    weak = pixel_evaluator(Threshold(), spread_pixels(), pgd_steps=1, pgd_alpha=0.001, pgd_random_start=False)
    warned = fgsm_vs_pgd_check(weak)
    assert warned.status == "warn" and warned.detail.startswith("FGSM 80.00% vs PGD 100.00%")


def test_zero_gradients_check():
    passed = zero_gradients_check(pixel_evaluator(Threshold(), spread_pixels()))
    assert passed == CheckResult(
        "zero_gradients", "pass", "0 of 50 examples have an all-zero cross-entropy input gradient at the clean point"
    )
    warned = zero_gradients_check(pixel_evaluator(RoundedInput(Threshold()), spread_pixels()))
    assert warned.status == "warn" and warned.detail.startswith("50 of 50 examples")


class ScriptedAutoAttack(Evaluator):
    """An evaluator whose AutoAttack 'measures' a given accuracy and flags (the situation is the numbers)."""

    def __init__(self, *args, autoattack_acc: float, flags: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._scripted = autoattack_acc, flags

    def autoattack(self) -> float:
        self.autoattack_flags = self._scripted[1]
        return self._scripted[0]


def test_autoattack_vs_pgd_check():
    import pyautoattack  # noqa: F401 - the [eval] extra, installed by `make test`

    real = pixel_evaluator(Threshold(), spread_pixels(), autoattack_version="custom", autoattack_attacks=["apgd-ce"])
    passed = autoattack_vs_pgd_check(real)
    assert passed.status == "pass" and passed.detail.startswith("AutoAttack (custom) 80.00% vs PGD 80.00%")
    # AutoAttack 5 pp above PGD, beyond the 4 pp tolerance of 50 images: its attacks were misled
    weaker = ScriptedAutoAttack(Threshold(), spread_pixels(), eps=0.1, pgd_alpha=0.05, pgd_steps=7,
                                autoattack_acc=85.0, flags=[])  # fmt: skip
    warned = autoattack_vs_pgd_check(weaker)
    assert warned.status == "warn" and "85.00% vs PGD 80.00%" in warned.detail


def test_autoattack_flags_check():
    import pyautoattack  # noqa: F401 - the [eval] extra, installed by `make test`

    settings = dict(autoattack_version="custom", autoattack_attacks=["apgd-ce"])
    passed = autoattack_flags_check(pixel_evaluator(Threshold(), spread_pixels(), **settings))
    assert passed == CheckResult("autoattack_flags", "pass", "AutoAttack raised no flag")
    warned = autoattack_flags_check(pixel_evaluator(Probabilities(), spread_pixels(), **settings))
    assert warned.status == "warn" and "output is a probability distribution" in warned.detail


def test_checks_compose_the_check_functions_in_order():
    evaluator = pixel_evaluator(RoundedInput(Threshold()), spread_pixels())
    results = gradient_masking_checks(evaluator)
    assert [r.name for r in results] == ["steps_restarts", "eps_growth", "fgsm_vs_pgd", "zero_gradients"]
    assert check_entries(evaluator) == [r.as_dict() for r in results]  # the evaluation.json entries
    assert not all_passed(results) and not all_passed(check_entries(evaluator))
    assert all_passed([r for r in results if r.passed]) and all_passed([])
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].status = "pass"


# --------------------------------------------------------------------------------- AutoAttack


def test_autoattack_is_at_most_pgd7(trained, splits, robust_eval):
    import pyautoattack  # noqa: F401 - the [eval] extra, installed by `make test`

    # The standard version (APGD-CE, APGD-T, FAB-T, Square 5000 queries) takes about a minute on 2 CPU
    # cores for 200 digits; here its two APGD attacks on 64 images (the slow test runs 'standard').
    evaluator = make_evaluator(trained, splits.test, limit=64, autoattack_version="custom",
                               autoattack_attacks=["apgd-ce", "apgd-t"])  # fmt: skip
    acc = evaluator.evaluate("pgd7,autoattack")
    assert acc["autoattack"] <= acc["pgd7"]
    checks = {c["name"]: c["status"] for c in check_entries(evaluator)}
    assert checks["autoattack_vs_pgd"] == "pass"
    assert checks["autoattack_flags"] == "pass"


@pytest.mark.slow
def test_autoattack_standard_version(trained, splits):
    import pyautoattack  # noqa: F401 - the [eval] extra, installed by `make test`

    acc = evaluate_model(trained, splits.test, attacks="pgd7,autoattack", eps=EPS, pgd_alpha=ALPHA,
                         pgd_steps=STEPS, limit=48)  # fmt: skip
    assert acc["autoattack"] <= acc["pgd7"]


def test_autoattack_missing_names_the_extra(monkeypatch, trained, splits):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"dnr-sweep\[eval\]"):
        evaluate_model(trained, splits.test, attacks="autoattack", eps=EPS, pgd_alpha=ALPHA, pgd_steps=STEPS)


# ------------------------------------------------------------------------------ Fig. 4 curves


def test_strength_curves_shape_and_file(trained, splits, tmp_path):
    curves = strength_curves(trained, splits.test, eps=EPS, pgd_alpha=ALPHA, pgd_steps=STEPS, limit=48,
                             eps_values=(0.05, 0.1, 0.2))  # fmt: skip
    assert list(curves["steps"]) == [str(k) for k in CURVE_STEPS]
    assert list(curves["eps"]) == ["0.05", "0.1", "0.2"]
    eps_acc = list(curves["eps"].values())
    assert eps_acc == sorted(eps_acc, reverse=True)  # larger radius, lower accuracy
    assert curves["steps"]["50"] <= curves["steps"]["1"]
    path = write_strength_curves(curves, tmp_path)
    assert path.name == "attack_strength.json"
    assert json.loads(path.read_text()) == curves
    from dnr_sweep.reports.load import load_attack_strength

    loaded = load_attack_strength(tmp_path)
    assert loaded[tmp_path.name]["eps"] == {float(k): v for k, v in curves["eps"].items()}


def test_strength_curves_default_eps_keys():
    assert [float(k) for k in (str(e) for e in CURVE_EPS)] == [k / 255 for k in (1, 2, 4, 8, 12, 16)]


# ----------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def model_dir(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    config = RunConfig.model_validate({
        "name": "digits_eval",
        "data": {"dataset": "digits", "val_size": 100, "root": str(folder)},
        "model": {"arch": "smallcnn", "width": 0.5},
        "train": {"seed": 0, "device": "cpu"},
        "attack": {"eval": {"fgsm": {"eps": EPS}, "pgd": {"eps": EPS, "alpha": ALPHA, "steps": STEPS}}},
    })  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    torch.save(trained.state_dict(), folder / "model.pt")
    return folder


def run_cli(argv: list[str]) -> int:
    return cli.main(argv)


def test_cli_json(model_dir, capsys):
    code = run_cli(["evaluate", str(model_dir), "--attacks", "fgsm,pgd,pgd10x2", "--limit", "48",
                    "--curves", "--curve-eps", "0.05,0.1", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert {"clean", "fgsm", "pgd", "pgd10x2", "checks", "settings"} <= set(result)
    assert all(0 <= result[k] <= 100 for k in ("clean", "fgsm", "pgd", "pgd10x2"))
    assert result["pgd10x2"] <= result["pgd"] + result["settings"]["tolerance_pp"]
    assert {c["status"] for c in result["checks"]} <= {"pass", "warn"}
    assert result["settings"]["n"] == 48 and result["settings"]["eps"] == EPS
    assert json.loads((model_dir / "evaluation.json").read_text()) == result
    assert set(json.loads((model_dir / "attack_strength.json").read_text())) == {"steps", "eps"}


def test_cli_table(model_dir, capsys):
    code = run_cli(["evaluate", str(model_dir), "--attacks", "pgd", "--eps", "32/255", "--limit", "32",
                    "--no-checks"])  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == 0
    assert "eps 0.1255" in out and "clean" in out and "pgd" in out and "evaluation.json" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attacks", "pgd,cw"], "unknown attack 'cw'"),
        (["--eps", "8/0"], "division by zero"),
        (["--trial", "nope"], "trial"),
    ],
)
def test_cli_user_errors_exit_2(model_dir, capsys, argv, message):
    code = run_cli(["evaluate", str(model_dir), *argv])
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err and "Traceback" not in err


def test_cli_missing_folder_exits_2(tmp_path, capsys):
    code = run_cli(["evaluate", str(tmp_path / "absent"), "--attacks", "pgd"])
    _, err = capsys.readouterr()
    assert code == 2 and "model.pt" in err


def test_evaluation_imports_no_ray():
    code = "import sys, dnr_sweep.evaluation, dnr_sweep.cli.evaluate; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
