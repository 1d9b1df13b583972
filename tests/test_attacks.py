"""Tests for dnr_sweep.attacks.gradient: oracle checks against torchattacks 3.5.1, plus the invariants it lacks."""

from __future__ import annotations

import copy

import pytest
import torch
import torchattacks  # the independent reference; `make test` installs it
from torch import nn

from dnr_sweep.attacks.gradient import accuracy, attack_mode, fgsm, pgd

N, C, H, W, K = 16, 3, 8, 8, 4


class SmallNet(nn.Module):
    """Conv + BatchNorm + dropout: every layer whose behaviour depends on the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(C, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(8 * (H // 2) * (W // 2), K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_model(seed: int = 0) -> SmallNet:
    """A SmallNet with non-trivial BatchNorm running statistics, left in train mode."""
    torch.manual_seed(seed)
    model = SmallNet()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, C, H, W))
    return model.train()


def make_batch(seed: int = 1, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, C, H, W, generator=g)
    images[:, :, 0, :] = 0.0  # exact 0s and 1s so that the [0, 1] clamp binds
    images[:, :, -1, :] = 1.0
    return images, torch.randint(0, K, (n,), generator=g)


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


# ---------------------------------------------------------------- oracle: torchattacks, bit for bit
PGD_SETTINGS = [
    (8 / 255, 0.01, 7),  # the paper's (Sec. 4.1)
    (8 / 255, 2 / 255, 10),
    (0.3, 0.1, 5),  # large eps and step: both the eps-ball and the [0, 1] clamp bind
    (0.05, 0.2, 3),  # alpha > eps: every step lands on the ball's surface
]


@pytest.mark.parametrize(("eps", "alpha", "steps"), PGD_SETTINGS)
def test_pgd_equals_torchattacks(eps: float, alpha: float, steps: int) -> None:
    model = make_model()
    images, labels = make_batch()
    expected = torchattacks.PGD(copy.deepcopy(model), eps=eps, alpha=alpha, steps=steps, random_start=False)(
        images, labels
    )
    got = pgd(model, images, labels, eps=eps, alpha=alpha, steps=steps)
    assert torch.equal(got, expected)
    if eps >= 0.3:  # check that the setting exercises both projections
        on_ball = ((got - images).abs() > eps - 1e-6) & (got > 0) & (got < 1)
        assert on_ball.any()
        assert ((got == 0) & (images > 0)).any() and ((got == 1) & (images < 1)).any()


@pytest.mark.parametrize("eps", [0.0, 8 / 255, 0.3])
def test_fgsm_equals_torchattacks(eps: float) -> None:
    model = make_model()
    images, labels = make_batch()
    expected = torchattacks.FGSM(copy.deepcopy(model), eps=eps)(images, labels)
    got = fgsm(model, images, labels, eps=eps)
    assert torch.equal(got, expected)
    if eps == 0.0:
        assert torch.equal(got, images)


def test_pgd_random_start_equals_torchattacks_with_same_global_seed() -> None:
    model = make_model()
    images, labels = make_batch()
    attack = torchattacks.PGD(copy.deepcopy(model), eps=8 / 255, alpha=2 / 255, steps=5, random_start=True)
    torch.manual_seed(123)
    expected = attack(images, labels)
    torch.manual_seed(123)
    got = pgd(model, images, labels, eps=8 / 255, alpha=2 / 255, steps=5, random_start=True)
    assert torch.equal(got, expected)


def test_bn_mode_train_equals_torchattacks_batchnorm_training() -> None:
    model = make_model()
    images, labels = make_batch()
    attack = torchattacks.PGD(copy.deepcopy(model), eps=8 / 255, alpha=0.01, steps=7, random_start=False)
    attack.set_model_training_mode(model_training=True, batchnorm_training=True, dropout_training=False)
    expected = attack(images, labels)
    got = pgd(model, images, labels, eps=8 / 255, alpha=0.01, steps=7, bn_mode="train")
    assert torch.equal(got, expected)
    assert not torch.equal(got, pgd(model, images, labels, eps=8 / 255, alpha=0.01, steps=7))


# ---------------------------------------------------------------- random start
def test_random_start_stays_in_ball_and_is_reproducible() -> None:
    model = make_model()
    images, labels = make_batch()
    eps = 0.1

    def run(seed: int, restarts: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return pgd(
            model,
            images,
            labels,
            eps=eps,
            alpha=0.02,
            steps=2,
            random_start=True,
            restarts=restarts,
            generator=g,
        )

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    for x in (a, c, run(2, restarts=3)):
        assert (x - images).abs().max() <= eps + 1e-7
        assert x.min() >= 0 and x.max() <= 1


# ---------------------------------------------------------------- restarts
class ThresholdNet(nn.Module):
    """Predicts class 1 iff x > 0.5, else class 0, with a zero input gradient: PGD steps never move, so an
    attempt's result is its random start and whether it fools the model can be read off the noise."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        above = (x[:, 0] > 0.5).to(x.dtype)
        return torch.stack([torch.full_like(above, 0.5), above], dim=1) + 0 * x.sum()


def test_restarts_keep_first_fooling_attempt() -> None:
    n, eps, restarts, seed = 32, 0.25, 3, 7
    images, labels = torch.full((n, 1), 0.5), torch.zeros(n, dtype=torch.long)

    # Hand prediction: attempt r draws U(-eps, eps) for the examples still unfooled, in batch order.
    g = torch.Generator().manual_seed(seed)
    expected = torch.empty_like(images)
    fooled_at = torch.full((n,), -1)
    todo = torch.arange(n)
    for r in range(restarts):
        start = torch.clamp(images[todo] + torch.empty(len(todo), 1).uniform_(-eps, eps, generator=g), 0, 1)
        expected[todo] = start
        fooled = start[:, 0] > 0.5
        fooled_at[todo[fooled]] = r
        todo = todo[~fooled]
    # The seed gives examples fooled at each attempt and some never fooled.
    assert all((fooled_at == r).any() for r in (-1, 0, 1, 2))

    model = ThresholdNet()
    got = pgd(
        model,
        images,
        labels,
        eps=eps,
        alpha=0.01,
        steps=2,
        random_start=True,
        restarts=restarts,
        generator=torch.Generator().manual_seed(seed),
    )
    assert torch.equal(got, expected)
    # Only unfooled examples are re-attacked: batch sizes shrink to the unfooled counts.
    unfooled = {n, int((fooled_at != 0).sum()), int(((fooled_at == -1) | (fooled_at == 2)).sum())}
    assert set(model.batch_sizes) == unfooled


def test_a_single_unfooled_example_is_still_re_attacked() -> None:
    """The restart loop stops when no example is left, not one earlier: one image, a seed whose first
    random start does not fool the ThresholdNet and whose second does (found by hand prediction)."""
    eps, image, label = 0.25, torch.full((1, 1), 0.5), torch.zeros(1, dtype=torch.long)

    def starts(seed: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return [torch.clamp(image + torch.empty(1, 1).uniform_(-eps, eps, generator=g), 0, 1) for _ in range(2)]

    seed = next(s for s in range(100) if starts(s)[0][0, 0] <= 0.5 < starts(s)[1][0, 0])
    got = pgd(ThresholdNet(), image, label, eps=eps, alpha=0.01, steps=1, random_start=True, restarts=2,
              generator=torch.Generator().manual_seed(seed))  # fmt: skip
    assert torch.equal(got, starts(seed)[1])


def test_restarts_never_weaken_pgd() -> None:
    model, images, labels = trained_model_and_data()
    kwargs = dict(eps=8 / 255, alpha=2 / 255, steps=3, random_start=True)
    single = pgd(model, images, labels, **kwargs, generator=torch.Generator().manual_seed(0))
    multi = pgd(model, images, labels, **kwargs, restarts=4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.eval()
        single_ok = model(single).argmax(1) == labels
        multi_ok = model(multi).argmax(1) == labels
    # Attempt 1 of the restarted run is the single run, so fooled examples stay fooled.
    assert not (multi_ok & ~single_ok).any()
    assert multi_ok.sum() <= single_ok.sum()


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(eps=-0.1), "eps"),
        (dict(alpha=0.0), "alpha"),
        (dict(steps=0), "steps"),
        (dict(restarts=0, random_start=True), "restarts"),
        (dict(restarts=2), "random_start"),
        (dict(bn_mode="batch"), "bn_mode"),
    ],
)
def test_pgd_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    model = make_model()
    images, labels = make_batch(n=2)
    args = dict(eps=0.1, alpha=0.01, steps=1) | kwargs
    with pytest.raises(ValueError, match=match):
        pgd(model, images, labels, **args)


def test_fgsm_rejects_bad_arguments() -> None:
    model = make_model()
    images, labels = make_batch(n=2)
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, images, labels, eps=-1.0)
    with pytest.raises(ValueError, match="batch size"):
        fgsm(model, images, labels[:1], eps=0.1)
    with pytest.raises(TypeError, match="floating-point"):
        fgsm(model, (images * 255).to(torch.uint8), labels, eps=0.1)


# ---------------------------------------------------------------- side effects
ATTACKS = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, eps=8 / 255),
    "pgd": lambda m, x, y: pgd(m, x, y, eps=8 / 255, alpha=0.01, steps=3),
    "pgd_bn_train": lambda m, x, y: pgd(m, x, y, eps=8 / 255, alpha=0.01, steps=3, bn_mode="train"),
    "pgd_restarts": lambda m, x, y: pgd(
        m, x, y, eps=8 / 255, alpha=0.01, steps=2, random_start=True, restarts=3, bn_mode="train"
    ),
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
@pytest.mark.parametrize("start", ["train", "eval", "mixed"])
def test_modes_grads_and_bn_stats_untouched(attack, start: str) -> None:
    model = make_model()
    if start == "eval":
        model.eval()
    elif start == "mixed":
        model.features[1].eval()  # a frozen BatchNorm inside a model in train mode
    model.head[2].weight.grad = torch.ones_like(model.head[2].weight)
    before_modes, before_bn = modes(model), bn_state(model)
    images, labels = make_batch()

    attack(model, images, labels)

    assert modes(model) == before_modes
    stats = bn_state(model)
    assert stats.keys() == before_bn.keys() and all(torch.equal(stats[k], before_bn[k]) for k in stats)
    assert torch.equal(model.head[2].weight.grad, torch.ones_like(model.head[2].weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "head.2.weight")


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_works_inside_no_grad(attack) -> None:
    model = make_model()
    images, labels = make_batch()
    torch.manual_seed(0)
    expected = attack(model, images, labels)
    torch.manual_seed(0)
    with torch.no_grad():
        got = attack(model, images, labels)
    assert torch.equal(got, expected)
    assert not got.requires_grad and got.grad_fn is None


def test_mode_and_bn_stats_restored_on_exception() -> None:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("boom")
            return x

    model = make_model()
    model.head.append(Boom())
    before_modes, before_bn = modes(model), bn_state(model)
    images, labels = make_batch()
    with pytest.raises(RuntimeError, match="boom"):
        pgd(model, images, labels, eps=0.1, alpha=0.01, steps=5, bn_mode="train")
    assert modes(model) == before_modes
    assert all(torch.equal(v, before_bn[k]) for k, v in bn_state(model).items())


def test_attack_mode_context() -> None:
    model = make_model()
    with attack_mode(model, "train"):
        assert model.features[1].training and not model.head[1].training and not model.training
    with attack_mode(model):
        assert not any(modes(model))
    assert all(modes(model))


# ---------------------------------------------------------------- attack strength
def trained_model_and_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """SmallNet trained for a few SGD steps on a synthetic task: the class is the quadrant that is 0.08
    brighter, a weak enough signal that 8/255 attacks flip many predictions (clean 58/64 correct)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, C, H, W, generator=g) * 0.6
    y = torch.randint(0, K, (256,), generator=g)
    rows, cols = (y // 2) * (H // 2), (y % 2) * (W // 2)
    for i in range(len(y)):
        x[i, :, rows[i] : rows[i] + H // 2, cols[i] : cols[i] + W // 2] += 0.08
    model = SmallNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(60):
        idx = torch.arange(step * 32, step * 32 + 32) % 192
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), x[192:], y[192:]


def test_attack_strength_ordering() -> None:
    model, images, labels = trained_model_and_data()
    eps = 8 / 255
    clean = accuracy(model, images, labels)
    adv_fgsm = accuracy(model, fgsm(model, images, labels, eps=eps), labels)
    pgd1 = accuracy(model, pgd(model, images, labels, eps=eps, alpha=eps / 4, steps=1), labels)
    pgd10 = accuracy(model, pgd(model, images, labels, eps=eps, alpha=eps / 4, steps=10), labels)
    assert clean >= 0.8 * len(labels)  # the model learnt the task, so the ordering means something
    assert adv_fgsm < clean
    assert pgd10 < pgd1 <= clean


def test_the_attack_registry_covers_the_name_grammar_and_fails_loudly():
    import typing

    from dnr_sweep.attacks import registry
    from dnr_sweep.foundation.attack_names import AttackKind

    assert set(registry.ATTACKS) == set(typing.get_args(AttackKind))
    assert registry.get("pgd").metric("pgd50x10", "val") == "val_pgd50x10_acc"
    with pytest.raises(ValueError, match="unknown attack kind 'cw'; valid: clean, fgsm, pgd, autoattack"):
        registry.get("cw")
    with pytest.raises(ValueError, match="whole set"):
        registry.perturb("autoattack", None, None, None, registry.AttackSettings(eps=0.1))
