"""HYDRA against references: top-k masks by brute force, score init by its formula, gradients to scores only;
TRADES against a re-implementation of the authors' trades_loss; the authors' defaults named literally."""

import math

import pytest
import torch
from torch import nn

from dnr_sweep.attacks import trades
from dnr_sweep.methods import cost, hydra, pruning


@pytest.mark.parametrize("k", [1, 5, 11])
def test_mask_is_the_top_k_of_the_scores(k):
    scores = torch.randn(3, 4, generator=torch.Generator().manual_seed(k))
    mask = hydra.TopKStraightThrough.apply(scores.abs(), k)
    order = sorted(range(12), key=lambda i: -abs(float(scores.flatten()[i])))
    expected = torch.zeros(12)
    expected[order[:k]] = 1.0
    assert torch.equal(mask.flatten(), expected)


def test_scaled_score_init_formula():
    w = torch.tensor([[[[0.5]], [[-2.0]]], [[[1.0]], [[0.25]]]])  # conv 2x2x1x1: fan_in 2
    expected = math.sqrt(6 / 2) * w / 2.0
    assert torch.allclose(hydra.scaled_score_init(w), expected)
    small = w / 8  # max |W| 0.25: below 1, still divided by it
    assert torch.allclose(hydra.scaled_score_init(small), math.sqrt(6 / 2) * small / 0.25)


def test_gradients_flow_to_the_scores_not_to_the_frozen_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3)
    conv.weight.requires_grad_(False)
    conv.bias.requires_grad_(False)
    scores = nn.Parameter(hydra.scaled_score_init(conv.weight))
    k = 10
    conv.forward = hydra.masked_forward(conv, scores, k)
    x = torch.randn(4, 2, 5, 5)
    out = conv(x)
    mask = pruning.topk_mask(scores, k)
    reference = nn.functional.conv2d(x, conv.weight * mask, conv.bias)
    assert torch.allclose(out, reference)
    out.sum().backward()
    assert conv.weight.grad is None and conv.bias.grad is None
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    # straight through: d sum(out) / d s = G * W * sign(s) with G = d sum(out) / d (W * m), also where m = 0
    g = torch.nn.grad.conv2d_weight(x, conv.weight.shape, torch.ones_like(out))
    assert torch.allclose(scores.grad, g * conv.weight * scores.sign(), atol=1e-5)


def test_scaled_score_init_of_an_all_zero_layer_is_the_scale_not_nan():
    w = torch.zeros(4, 2, 3, 3)
    scores = hydra.scaled_score_init(w)
    assert torch.equal(scores, torch.full_like(w, (6.0 / (2 * 3 * 3)) ** 0.5))


# -- TRADES, as the authors' utils/adv.py trades_loss (l_inf) computes it ------------------------------------------


def authors_trades(model, x, y, noise, *, eps, alpha, steps, beta):
    """A re-implementation of the authors' trades_loss, step by step: (loss, x_adv). ``noise``: their randn."""
    kl_sum = nn.KLDivLoss(reduction="sum")  # their nn.KLDivLoss(size_average=False)
    model.eval()
    x_adv = x.detach() + 0.001 * noise
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():  # the clean forward again at every step, as theirs
            kl = kl_sum(nn.functional.log_softmax(model(x_adv), dim=1), nn.functional.softmax(model(x), dim=1))
        grad = torch.autograd.grad(kl, [x_adv])[0]
        x_adv = x_adv.detach() + alpha * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
    natural = nn.functional.cross_entropy(model(x), y)
    robust = (1.0 / len(x)) * kl_sum(nn.functional.log_softmax(model(x_adv), dim=1),
                                     nn.functional.softmax(model(x), dim=1))  # fmt: skip
    return natural + beta * robust, x_adv


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():  # running statistics away from (0, 1), so that eval and train mode differ
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    return net


def hydra_config(**hydra_fields):
    from dnr_sweep.config import RunConfig

    return RunConfig.model_validate({
        "method": "hydra", "hydra": hydra_fields,
        "attack": {"train": {"eps": 0.1, "alpha": 0.03, "steps": 4}},
    })  # fmt: skip


def test_trades_loss_and_gradients_equal_the_authors():
    config = hydra_config()
    method = hydra.HydraMethod(config)
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2, 1, 1, 0])
    ours_net, theirs_net = tiny_net(), tiny_net()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))

    expected, theirs_adv = authors_trades(theirs_net, x, y, noise, eps=0.1, alpha=0.03, steps=4, beta=6.0)
    expected.backward()

    # as the engine's step: the adversary (with the model in train mode), then the clean and adversarial forwards
    ours_net.train()
    adv = method.adversary(ours_net, x, y, torch.Generator().manual_seed(7))
    assert ours_net.training and ours_net[1].training  # modes restored
    assert torch.allclose(adv, theirs_adv, atol=1e-7, rtol=0)
    assert (adv - x).abs().max() <= 0.1 + 1e-7 and adv.min() >= 0 and adv.max() <= 1
    logits = ours_net(x)
    loss = method.objective(nn.functional.cross_entropy(logits, y), method.adversarial_loss(ours_net(adv), logits, y),
                            torch.zeros(()), beta=0.0)  # fmt: skip
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for (name, ours), theirs in zip(ours_net.named_parameters(), theirs_net.parameters(), strict=True):
        assert torch.allclose(ours.grad, theirs.grad, atol=1e-6, rtol=1e-5), name  # through both clean logits too


def test_trades_robust_term_is_summed_kl_over_the_batch_size():
    # two images, three classes, by hand: KL(p || q) = sum_k p_k log(p_k / q_k), summed, then / 2
    clean = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])  # p = (1/3, 1/3, 1/3), (1/2, 1/4, 1/4)
    adv = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])  # q = (1/2, 1/4, 1/4), (1/3, 1/3, 1/3)
    first = (1 / 3) * (math.log((1 / 3) / (1 / 2)) + 2 * math.log((1 / 3) / (1 / 4)))
    second = 0.5 * math.log(0.5 / (1 / 3)) + 2 * 0.25 * math.log(0.25 / (1 / 3))
    assert trades.robust_term(adv, clean).item() == pytest.approx((first + second) / 2, rel=1e-6)
    # the authors' (1 / batch_size) * KLDivLoss(size_average=False), not a mean over every entry
    twice = trades.robust_term(torch.cat([adv, adv]), torch.cat([clean, clean]))
    assert twice.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_trades_attack_runs_steps_plus_one_forwards_and_steps_backwards():
    # what methods/cost.py prices: the clean target once, then a forward and an input backward per step
    net = tiny_net()
    counts = {"forward": 0, "backward": 0}
    net.register_forward_hook(lambda *_: counts.__setitem__("forward", counts["forward"] + 1))
    net.register_full_backward_hook(lambda *_: counts.__setitem__("backward", counts["backward"] + 1))
    trades.perturb(net, torch.rand(3, 1, 6, 6), eps=0.1, alpha=0.03, steps=5)
    assert counts == {"forward": 6, "backward": 5}
    assert cost.attack_cost("trades", 5) == 6 * 1 + 5 * 2
    # one TRADES-10 step per image: 1 + 10 * 3 (adversary) + 2 forwards + their backward (2 * 2) = 37
    assert cost.step_cost(adversarial=True, kind="trades", steps=10) == 37


def test_pgd_loss_keeps_the_beta_weighted_cross_entropies():
    config = hydra_config(loss="pgd", beta=0.25)
    method = hydra.HydraMethod(config)
    assert method.training_attack == "pgd"
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 0])
    net = tiny_net()
    from dnr_sweep.attacks.gradient import pgd

    expected = pgd(net, x, y, eps=0.1, alpha=0.03, steps=4, random_start=True,
                   generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert torch.equal(method.adversary(net, x, y, torch.Generator().manual_seed(3)), expected)
    logits_adv, logits = torch.randn(4, 3), torch.randn(4, 3)
    term = method.adversarial_loss(logits_adv, logits, y)
    assert term.item() == pytest.approx(nn.functional.cross_entropy(logits_adv, y).item())
    loss = method.objective(torch.tensor(2.0), torch.tensor(4.0), torch.tensor(0.5), beta=0.25)
    assert loss.item() == pytest.approx(0.25 * 2 + 0.75 * 4 + 0.5)
    assert hydra.HydraMethod(hydra_config()).objective(
        torch.tensor(2.0), torch.tensor(4.0), torch.tensor(0.5), beta=0.0
    ).item() == pytest.approx(2 + 6 * 4 + 0.5)  # TRADES: CE + 6 * KL


# -- the authors' defaults -----------------------------------------------------------------------------------------


def test_defaults_are_the_authors():
    from dnr_sweep.config import RunConfig
    from dnr_sweep.config.methods import HydraConfig

    h = HydraConfig()
    assert h.loss == "trades"  # the README's and get_compact_net_adv_train.sh's --trainer adv: trainer/adv.py, TRADES
    assert h.trades_beta == 6.0  # args.py --beta 6.0, configs/configs.yml beta: 6.0
    assert h.weight_decay == 1e-4  # args.py --wd 1e-4, configs.yml wd: 0.0001
    assert h.freeze_bn is False  # args.py --freeze-bn, store_true
    assert (h.pretrain_epochs, h.prune_epochs, h.finetune_epochs) == (
        100,
        20,
        100,
    )  # configs.yml epochs; README --epochs 20
    assert (h.pretrain_lr, h.prune_lr, h.finetune_lr) == (
        0.1,
        0.1,
        0.01,
    )  # configs.yml lr: 0.1; README finetune --lr 0.01
    assert RunConfig().train.momentum == 0.9  # configs.yml momentum: 0.9 (HYDRA reads train.momentum)


def test_beta_belongs_to_the_pgd_loss():
    from pydantic import ValidationError

    from dnr_sweep.config.methods import HydraConfig

    with pytest.raises(ValidationError, match="weighs the clean part of loss: pgd only, got 0.5"):
        HydraConfig(beta=0.5)
    assert HydraConfig(beta=0.0).loss == "trades"  # the default, spelt out, is fine
    assert HydraConfig(loss="pgd", beta=0.5).beta == 0.5


def test_trades_needs_a_pgd_shaped_training_attack():
    from pydantic import ValidationError

    from dnr_sweep.config import RunConfig

    for train in ({"kind": "fgsm"}, {"random_start": False}):
        with pytest.raises(ValidationError, match="attack.train: hydra.loss trades"):
            RunConfig.model_validate({"method": "hydra", "attack": {"train": train}})
        RunConfig.model_validate({"method": "hydra", "hydra": {"loss": "pgd"}, "attack": {"train": train}})
        RunConfig.model_validate({"method": "dnr", "attack": {"train": train}})  # HYDRA's block is not run


# -- the score phase's optimizer: the authors' one SGD over every parameter that has a gradient --------------------


def test_score_phase_first_step_is_sgd_with_the_authors_weight_decay_on_scores_and_batchnorm():
    from dnr_sweep.training.engine import TrainingRun
    from tests.test_engine import digits_config

    run = TrainingRun(digits_config(method="hydra", hydra__pretrain_epochs=0, hydra__prune_epochs=2,
                               hydra__finetune_epochs=1, hydra__prune_lr=0.2, train__weight_decay=0.3))  # fmt: skip
    run.train_loader = [next(iter(run.train_loader))]  # one step
    plan = run.method.start_epoch(0)
    assert plan.phase == "prune"
    bn = [m for m in run.model.modules() if isinstance(m, nn.BatchNorm2d)]
    watched = [*run.method.scores.values(), *(p for m in bn for p in (m.weight, m.bias))]
    start = [p.detach().clone() for p in watched]
    grads: dict[int, torch.Tensor] = {}
    for i, p in enumerate(watched):
        p.register_hook(lambda g, i=i: grads.__setitem__(i, g.detach().clone()))
    run._train_one_epoch(None, plan)
    # first SGD step from fresh momentum: p - lr * (g + wd * p), lr 0.2 (the phase's first cosine epoch), wd 1e-4
    # (hydra.weight_decay, not train.weight_decay 0.3)
    for i, (p, p0) in enumerate(zip(watched, start, strict=True)):
        assert torch.allclose(p.detach(), p0 - 0.2 * (grads[i] + 1e-4 * p0), atol=1e-7, rtol=1e-6), i
