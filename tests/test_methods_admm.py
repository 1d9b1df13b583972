"""ADMM robust pruning against references: brute-force projection, hand-computed Z/U updates, budgets."""

import itertools

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
    from dnr_sweep.training.engine import DNRRun
    from tests.test_engine import digits_config

    run = DNRRun(digits_config(method="admm", admm__rho=0.03, train__batch_size=128))
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
