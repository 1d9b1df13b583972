"""ADMM robust pruning against references: brute-force projection, hand-computed Z/U updates, budgets."""

import itertools
import math

import pytest
import torch

from dnr_sweep.methods import admm, pruning


def brute_force_projection(values: torch.Tensor, k: int) -> torch.Tensor:
    """The closest tensor with at most k nonzeros, by trying every support of size k."""
    flat = values.flatten()
    best, best_dist = None, float("inf")
    for support in itertools.combinations(range(flat.numel()), k):
        candidate = torch.zeros_like(flat)
        candidate[list(support)] = flat[list(support)]
        dist = float((candidate - flat).pow(2).sum())
        if dist < best_dist:
            best, best_dist = candidate, dist
    return best.reshape(values.shape)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [0, 1, 3, 7])
def test_projection_equals_brute_force_top_k(seed, k):
    values = torch.randn(2, 2, 2, generator=torch.Generator().manual_seed(seed))  # distinct almost surely
    assert torch.equal(pruning.project(values, k), brute_force_projection(values, k))


def test_projection_is_per_layer():
    weights = {"a": torch.tensor([3.0, -1.0, 0.5, -4.0]), "b": torch.tensor([0.1, 0.2, -0.3])}
    duals = {n: torch.zeros_like(w) for n, w in weights.items()}
    z = admm.z_update(weights, duals, {"a": 2, "b": 1})
    assert torch.equal(z["a"], torch.tensor([3.0, 0.0, 0.0, -4.0]))
    assert torch.equal(z["b"], torch.tensor([0.0, 0.0, -0.3]))


def test_z_and_dual_updates_on_a_hand_example():
    # W = [1, -2, 3, 0.5], U = [0.5, 0.5, -4, 0], k = 2
    # W + U = [1.5, -1.5, -1, 0.5]: top-2 magnitudes are 1.5, -1.5 -> Z = [1.5, -1.5, 0, 0]
    # U' = U + W - Z = [0.5 + 1 - 1.5, 0.5 - 2 + 1.5, -4 + 3 - 0, 0 + 0.5 - 0] = [0, 0, -1, 0.5]
    w = {"l": torch.tensor([1.0, -2.0, 3.0, 0.5])}
    u = {"l": torch.tensor([0.5, 0.5, -4.0, 0.0])}
    z = admm.z_update(w, u, {"l": 2})
    assert torch.equal(z["l"], torch.tensor([1.5, -1.5, 0.0, 0.0]))
    assert torch.equal(admm.u_update(w, z, u)["l"], torch.tensor([0.0, 0.0, -1.0, 0.5]))


def test_naive_budget_keeps_the_first_layer_dense_and_meets_the_target_exactly():
    numels = [27, 1000, 999, 10]
    counts = pruning.naive_budget(numels, 0.1)
    assert counts[0] == 27 and sum(counts) == round(0.1 * sum(numels))
    assert all(1 <= c <= n for c, n in zip(counts, numels, strict=True))
    # the others share one density (to rounding): (204 - 27) / 2009
    share = (sum(counts) - 27) / sum(numels[1:])
    assert all(abs(c - share * n) < 1 for c, n in zip(counts[1:], numels[1:], strict=True))


def test_naive_budget_below_the_dense_first_layer_is_refused():
    with pytest.raises(ValueError, match="first layer dense"):
        pruning.naive_budget([500, 100], 0.1)


def test_explicit_ratios_name_every_layer():
    from dnr_sweep.config import RunConfig

    config = RunConfig(method="admm", admm={"layer_ratios": {"a": 0.5, "x": 0.2}})
    with pytest.raises(ValueError, match=r"unknown layers \['x'\]; missing layers \['b'\]"):
        admm.layer_budget(config, ["a", "b"], [10, 10])
    config = RunConfig(method="admm", admm={"layer_ratios": {"a": 0.5, "b": 0.25}})
    assert admm.layer_budget(config, ["a", "b"], [10, 8]) == [5, 2]


@pytest.mark.parametrize(("ratios", "message"), [
    ({"a": 0.5}, r"missing layers \['b'\]: give a density"),
    ({"a": 0.5, "b": 0.5, "x": 0.1}, r"unknown layers \['x'\]: give a density"),
])  # fmt: skip
def test_explicit_ratios_missing_or_unknown_alone_are_refused(ratios, message):
    from dnr_sweep.config import RunConfig

    config = RunConfig(method="admm", admm={"layer_ratios": ratios})
    with pytest.raises(ValueError, match=message):
        admm.layer_budget(config, ["a", "b"], [10, 10])


def test_the_admm_regulariser_is_rho_half_the_squared_distance_to_z_minus_u():
    """rho_admm/2 * sum_l ||W_l - Z_l + U_l||^2, summed here by hand over random Z and U (rho != 1, so a
    rho in the wrong place shows); no term outside the ADMM phase."""
    from dnr_sweep.methods.base import EpochPlan
    from dnr_sweep.training.engine import TrainingRun
    from tests.test_engine import digits_config

    run = TrainingRun(digits_config(method="admm", admm__rho=0.03, train__batch_size=128))
    method = run.method
    gen = torch.Generator().manual_seed(0)
    weights = {n: w.detach().clone() for n, w in method.prunable()}
    method.z = {n: torch.randn(w.shape, generator=gen) for n, w in weights.items()}
    method.u = {n: torch.randn(w.shape, generator=gen) for n, w in weights.items()}
    expected = 0.0
    for n, w in weights.items():
        for wi, zi, ui in zip(w.flatten().tolist(), method.z[n].flatten().tolist(), method.u[n].flatten().tolist(),
                              strict=True):  # fmt: skip
            expected += (wi - zi + ui) ** 2
    value = method.regulariser(EpochPlan("admm", 1.0, False, 0))
    assert float(value.detach()) == pytest.approx(0.03 / 2 * expected, rel=1e-5)
    for phase in ("pretrain", "retrain"):
        assert method.regulariser(EpochPlan(phase, 1.0, True, 0)) is None


def test_naive_budget_gives_the_remainders_by_size_and_never_fills_a_layer_past_its_size():
    # first layer 3 dense; the other 4 + 6 weights share 7: exact 2.8 and 4.2 -> 2 + 4, one more to the larger
    # remainder (0.8)
    assert pruning.naive_budget([3, 4, 6], 10 / 13) == [3, 3, 4]
    # share 6/7 of [1, 3, 3]: 0.857 -> 1 (a layer of one weight is full), 2.571, 2.571 -> 2, 2; the one
    # remaining weight skips the full layer although its remainder is the largest
    assert pruning.naive_budget([2, 1, 3, 3], 8 / 9) == [2, 1, 3, 2]


def test_naive_budget_at_its_least_density_keeps_one_weight_per_layer_and_below_names_that_least():
    assert pruning.naive_budget([5, 10, 10], 7 / 25) == [5, 1, 1]  # the first layer dense, one weight each
    with pytest.raises(ValueError, match=r"keeps 6 weights.*\(5 weights\).*at least 0\.28;"):
        pruning.naive_budget([5, 10, 10], 6 / 25)


@pytest.mark.parametrize(("density", "numel", "kept"), [(0.001, 100, 1), (0.0, 7, 1), (0.5, 7, 4), (1.0, 7, 7)])
def test_kept_rounds_and_keeps_at_least_one(density, numel, kept):
    assert pruning.kept(density, numel) == kept


# -- the authors' schedule: Z/U every admm_epoch epochs, rho x 1.3 at each update (admm/admm.py: admm_update,
#    admm_multi_rho_scheduler; ADMM_examples/cifar10/config.yaml.example: admm_epoch 20, rho 1e-3, multi_rho)

CHEAP_ADMM = {"method": "admm", "train__batch_size": 128, "train__eval_subset": 60, "admm__beta": 1.0,
              "admm__density": 0.1, "admm__pretrain_lr": 0.05, "admm__admm_lr": 0.02, "admm__retrain_lr": 0.02}  # fmt: skip


def test_the_authors_defaults():
    from dnr_sweep.config import RunConfig

    config = RunConfig(method="admm").admm
    assert (config.rho, config.update_every, config.rho_growth) == (1e-3, 20, 1.3)


@pytest.mark.parametrize(("growth", "rhos"), [
    (1.3, [1e-3, 1e-3, 1e-3 * 1.3, 1e-3 * 1.3, 1e-3 * 1.3**2, 1e-3 * 1.3**2]),
    (1.0, [1e-3] * 6),
])  # fmt: skip
def test_z_and_u_update_every_admm_epoch_epochs_and_rho_grows_at_each(monkeypatch, growth, rhos):
    """update_every 2 over 6 ADMM epochs, as the authors' loop runs it (updates at the start of the stage's
    epochs 2 and 4, none after its last): Z is set at the phase's start (epoch 0) and updated after phase
    epochs 1 and 3 only; the epochs after the j-th update report and train with 1e-3 * growth**j."""
    from dnr_sweep.methods.base import EpochPlan
    from dnr_sweep.training.engine import TrainingRun
    from tests.test_engine import digits_config

    config = digits_config(**CHEAP_ADMM, admm__pretrain_epochs=0, admm__admm_epochs=6, admm__retrain_epochs=1,
                           admm__update_every=2, admm__rho_growth=growth)  # fmt: skip
    run = TrainingRun(config)
    z_at: list[int] = []
    real_z_update = admm.z_update
    monkeypatch.setattr(admm, "z_update", lambda *a: z_at.append(run.epoch) or real_z_update(*a))
    reports = [run.train_epoch() for _ in range(6)]
    assert [r.metrics["phase"] for r in reports] == ["admm"] * 6
    assert z_at == [0, 1, 3]
    assert [r.metrics["admm_rho"] for r in reports] == pytest.approx(rhos, rel=1e-12)
    # the regulariser of phase epoch 5 uses that epoch's rho: rho_5/2 * sum ||W - Z + U||^2, summed here
    by_hand = sum(
        float((w.detach() - run.method.z[n] + run.method.u[n]).pow(2).sum()) for n, w in run.method.prunable()
    )
    value = run.method.regulariser(EpochPlan("admm", 1.0, False, 5)).detach()
    assert float(value) == pytest.approx(0.5 * rhos[5] * by_hand, rel=1e-5)
    retrain = run.train_epoch().metrics
    assert "admm_rho" not in retrain and "admm_residual" not in retrain  # only the epochs that measure them


# -- whether the ADMM phase did its work: the residual ||W - Z|| per epoch, the energy the hard prune removes


def test_primal_residual_by_hand():
    # ||[3, -1] - [3, 0]||^2 + ||[0.5, 2] - [0, 0]||^2 = 1 + 0.25 + 4 = 5.25
    weights = {"a": torch.tensor([3.0, -1.0]), "b": torch.tensor([[0.5, 2.0]])}
    z = {"a": torch.tensor([3.0, 0.0]), "b": torch.zeros(1, 2)}
    assert admm.primal_residual(weights, z) == pytest.approx(math.sqrt(5.25), rel=1e-12)


def test_the_residual_shrinks_under_exact_admm_steps():
    """ADMM on f(W) = 1/2 ||W - A||^2 with the W-step in closed form, W = (A + rho (Z - U)) / (1 + rho), and
    this module's Z and U updates: with rho large the residual ||W - Z|| goes to 0, and W ends k-sparse."""
    gen = torch.Generator().manual_seed(0)
    a = {"l": torch.randn(50, generator=gen)}
    budget, rho = {"l": 5}, 5.0
    u = {"l": torch.zeros(50)}
    z = admm.z_update(a, u, budget)
    residuals = []
    for _ in range(30):
        w = {"l": (a["l"] + rho * (z["l"] - u["l"])) / (1 + rho)}
        residuals.append(admm.primal_residual(w, z))
        z = admm.z_update(w, u, budget)
        u = admm.u_update(w, z, u)
    assert residuals[-1] < 1e-4 * residuals[0]
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in zip(residuals[5:], residuals[6:], strict=False))
    assert int((w["l"].abs() > 1e-3).sum()) == 5


def test_the_reported_residual_is_w_minus_z_before_the_epochs_update():
    """Through the method: after an ADMM epoch's training, admm_residual is sqrt(sum (w - z)^2) over the Z the
    epoch trained toward (computed here element by element), and then Z becomes proj(W + U)."""
    from dnr_sweep.training.engine import TrainingRun
    from tests.test_engine import digits_config

    run = TrainingRun(digits_config(**CHEAP_ADMM, admm__pretrain_epochs=0, admm__admm_epochs=3, admm__retrain_epochs=1,
                               admm__update_every=1))  # fmt: skip
    method = run.method
    method.start_epoch(0)  # enters the ADMM phase: Z = proj(W), U = 0
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, w in method.prunable():
            w.add_(0.05 * torch.randn(w.shape, generator=gen))  # stands for the epoch's training
    z = {n: t.clone() for n, t in method.z.items()}
    weights = {n: w.detach().clone() for n, w in method.prunable()}
    by_hand = math.sqrt(sum((wi - zi) ** 2 for n in weights
                            for wi, zi in zip(weights[n].flatten().tolist(), z[n].flatten().tolist(), strict=True)))  # fmt: skip
    method.end_epoch(0, last=False)
    figures = method.epoch_metrics()
    assert figures["admm_residual"] == pytest.approx(by_hand, rel=1e-9)
    assert figures["admm_rho"] == 1e-3
    for n, w in weights.items():  # then updated: Z = proj(W + 0), U = W - Z
        assert torch.equal(method.z[n], pruning.project(w, method.budget[n]))
        assert torch.equal(method.u[n], w - method.z[n])


def test_energy_removed_by_hand():
    # keep a's 2 and b's 1 largest: removed 1 + 0.25 + 0.01 + 0.04 = 1.3 of 26.39
    weights = {"a": torch.tensor([3.0, -1.0, 0.5, -4.0]), "b": torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)}
    kept = {n: pruning.project(w, k) for (n, w), k in zip(weights.items(), (2, 1), strict=True)}
    assert pruning.energy_removed(weights, kept) == pytest.approx(1.3 / 26.39, rel=1e-12)
    assert math.isnan(pruning.energy_removed({"a": torch.zeros(3)}, {"a": torch.zeros(3)}))


def magnitude_energy_by_hand(weights: dict[str, torch.Tensor], budget: dict[str, int]) -> float:
    """The energy of all but each layer's budget largest |w|, by sorting Python floats."""
    removed = total = 0.0
    for n, w in weights.items():
        squares = sorted((v * v for v in w.flatten().tolist()), reverse=True)
        removed += sum(squares[budget[n] :])
        total += sum(squares)
    return removed / total


@pytest.mark.parametrize(("rho", "admm_lr"), [(1e-3, 0.02), (10.0, 0.05)], ids=["weak", "strong"])
def test_the_energy_figures_by_hand_and_a_strong_rho_removes_less_than_magnitude_pruning(rho, admm_lr):
    """magnitude_energy_removed: magnitude pruning of the weights entering the ADMM phase; prune_energy_removed:
    the hard prune of the weights leaving it (both by hand here, at the method's budgets, which sum to the
    target). With rho 10 the ADMM phase pulls W to a sparse point: the hard prune removes far less energy than
    magnitude pruning of the pre-trained weights; with the paper's 1e-3 over 3 epochs it barely moves."""
    from dnr_sweep.training.engine import TrainingRun
    from tests.test_engine import digits_config

    changes = {**CHEAP_ADMM, "admm__pretrain_epochs": 1, "admm__admm_epochs": 3, "admm__retrain_epochs": 1,
               "admm__update_every": 1, "admm__rho": rho, "admm__admm_lr": admm_lr}  # fmt: skip
    run = TrainingRun(digits_config(**changes))
    snapshot = []
    for _ in range(4):
        snapshot.append({n: w.detach().clone() for n, w in run.method.prunable()})
        run.train_epoch()
    leaving = {n: w.detach().clone() for n, w in run.method.prunable()}
    run.train_epoch()  # retrain: the hard prune at its start
    result = run.final_metrics()
    budget = run.method.budget
    assert sum(budget.values()) == round(0.1 * sum(w.numel() for w in leaving.values()))
    magnitude = magnitude_energy_by_hand(snapshot[1], budget)
    pruned = magnitude_energy_by_hand(leaving, budget)
    assert result["magnitude_energy_removed"] == pytest.approx(magnitude, rel=1e-9)
    assert result["prune_energy_removed"] == pytest.approx(pruned, rel=1e-9)
    if rho > 1:
        assert pruned < 0.5 * magnitude
    else:
        assert pruned > 0.8 * magnitude


def test_the_energy_figures_survive_a_checkpoint():
    from dnr_sweep.training.engine import TrainingRun
    from tests.test_engine import digits_config

    config = digits_config(**CHEAP_ADMM, admm__pretrain_epochs=1, admm__admm_epochs=1, admm__retrain_epochs=2)
    run = TrainingRun(config)
    for _ in range(3):
        run.train_epoch()
    state = run.state_dict()
    resumed = TrainingRun(config)
    resumed.load_state_dict(state)
    resumed.train_epoch()
    figures = {k: resumed.final_metrics()[k] for k in ("magnitude_energy_removed", "prune_energy_removed")}
    assert figures == dict(run.method.energy) and all(0 < v < 1 for v in figures.values())


@pytest.mark.parametrize(("field", "value", "message"), [
    ("rho_growth", 0.9, r"admm\.rho_growth\n.*must be in \[1, inf\), got 0\.9"),
    ("update_every", 0, r"admm\.update_every\n.*must be in \[1, "),
])  # fmt: skip
def test_the_schedule_fields_refuse_what_the_schedule_cannot_mean(field, value, message):
    from pydantic import ValidationError

    from dnr_sweep.config import RunConfig

    with pytest.raises(ValidationError, match=message):
        RunConfig(method="admm", admm={field: value})
