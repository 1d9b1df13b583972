"""Physical channel removal (dnr_sweep.export): the unshrunk model's outputs are the oracle.

Every test builds a masked model, shrinks it and checks (a) eval-mode outputs equal within 1e-5,
(b) exactly the channels every consumer ignores are gone, (c) counts against hand formulas.
No test asserts a time.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch import nn

from dnr_sweep import cli as dnr_cli
from dnr_sweep.artifacts import checkpoint
from dnr_sweep.config import RunConfig, to_yaml_dict
from dnr_sweep.export import (
    TOLERANCE,
    count_macs,
    count_params,
    export_model,
    find_channel_spaces,
    measure_latency,
    shrink,
)
from dnr_sweep.models.architectures import Normalize, get_model


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm running stats and affine parameters, so a dropped read channel would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model.eval()


def zero_inputs(layer: nn.Module, channels: list[int]) -> None:
    with torch.no_grad():
        layer.weight[:, channels] = 0


def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


def changed(report) -> dict[str, dict[str, list[int]]]:
    return {n: v for n, v in report.layers.items() if v["in"][0] != v["in"][1] or v["out"][0] != v["out"][1]}


# --------------------------------------------------------------------------------------------------
# A hand-built model with counts by formula


class Tiny(nn.Module):
    """normalize - conv(3->8) - bn - relu - conv(8->6, bias) - bn - relu - maxpool2 - gap - linear(6->5)."""

    def __init__(self) -> None:
        super().__init__()
        self.normalize = Normalize(3, mean=[0.5] * 3, std=[0.25] * 3)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.linear(torch.flatten(self.gap(x), 1))


def tiny_params(c1: int, c2: int) -> int:
    return 3 * c1 * 9 + 2 * c1 + c1 * c2 * 9 + c2 + 2 * c2 + c2 * 5 + 5


def tiny_macs(c1: int, c2: int, side: int = 8) -> int:
    return c1 * side * side * 3 * 9 + c2 * side * side * c1 * 9 + 5 * c2


def test_hand_model_counts_and_outputs() -> None:
    torch.manual_seed(0)
    model = randomize_bn(Tiny())
    assert count_params(model) == tiny_params(8, 6)
    assert count_macs(model, (3, 8, 8)) == tiny_macs(8, 6)
    zero_inputs(model.conv2, [1, 4, 6])  # k = 3 dead channels of conv1's output
    zero_inputs(model.linear, [0, 5])  # j = 2 dead channels of conv2's output
    with torch.no_grad():
        model.conv1.weight[2] = 0  # a dead *producer* channel that conv2 still reads: BN turns it into a
    #                                constant beta - mean*gamma/sqrt(var+eps), so it must stay
    report = shrink(model, torch.rand(2, 3, 8, 8))
    assert report.params_before == tiny_params(8, 6) and report.macs_before == tiny_macs(8, 6)
    assert report.params_after == tiny_params(5, 4) == count_params(report.model)
    assert report.macs_after == tiny_macs(5, 4) == count_macs(report.model, (3, 8, 8))
    assert report.channels_removed == 5
    assert changed(report) == {
        "conv1": {"in": [3, 3], "out": [8, 5]}, "conv2": {"in": [8, 5], "out": [6, 4]},
        "linear": {"in": [6, 4], "out": [5, 5]},
    }  # fmt: skip
    assert report.model.bn1.num_features == 5 and report.model.bn2.running_var.shape == (4,)
    assert max_diff(report.model, model, torch.rand(16, 3, 8, 8)) <= TOLERANCE
    assert count_params(model) == tiny_params(8, 6), "shrink must not modify its input"


def test_fully_dead_space_keeps_one_channel() -> None:
    model = randomize_bn(Tiny())
    zero_inputs(model.linear, list(range(6)))
    report = shrink(model, torch.rand(2, 3, 8, 8))
    assert report.model.conv2.out_channels == 1 and report.model.linear.in_features == 1
    assert max_diff(report.model, model, torch.rand(8, 3, 8, 8)) <= TOLERANCE


class Concat(nn.Module):
    """torch.cat is not understood: the spaces it touches must stay whole (shrink less, never wrongly)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.c = nn.Conv2d(8, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.head(x.mean(dim=(2, 3)))


def test_unknown_ops_are_left_alone() -> None:
    model = Concat().eval()
    zero_inputs(model.c, [0, 1, 5])
    zero_inputs(model.head, [2])  # read through .mean(): unsupported, so kept
    spaces = {tuple(s.producers): s for s in find_channel_spaces(model, torch.rand(2, 3, 8, 8))}
    assert spaces[("a",)].fixed and spaces[("c",)].fixed
    report = shrink(model, torch.rand(2, 3, 8, 8))
    assert report.channels_removed == 0 and report.params_after == report.params_before
    assert max_diff(report.model, model, torch.rand(4, 3, 8, 8)) == 0.0


# --------------------------------------------------------------------------------------------------
# ResNet18 and VGG16 with planted zero channels


def planted_resnet() -> nn.Module:
    torch.manual_seed(1)
    model = randomize_bn(get_model("resnet18", num_classes=10, width=0.25))  # planes 16, 32, 64, 128
    # channel 3 of the layer1 residual stream: zero in EVERY consumer -> removable from 3 producers
    for layer in (model.layer1[0].conv1, model.layer1[1].conv1, model.layer2[0].conv1, model.layer2[0].shortcut[0]):
        zero_inputs(layer, [3])
    # channel 5 of the same stream: zero in only some consumers -> must stay
    for layer in (model.layer1[0].conv1, model.layer1[1].conv1, model.layer2[0].conv1):
        zero_inputs(layer, [5])
    zero_inputs(model.layer1[0].conv2, [0, 2])  # inside a block: conv1's output channels 0 and 2
    zero_inputs(model.layer4[1].conv1, [7])  # the last stream is read by layer4.1.conv1 and the head
    zero_inputs(model.linear, [7, 9])  # 9: only the head ignores it -> stays
    return model


def test_resnet18_residual_couplings() -> None:
    model = planted_resnet()
    report = shrink(model, torch.rand(2, 3, 32, 32))
    assert changed(report) == {
        "conv1": {"in": [3, 3], "out": [16, 15]},
        "layer1.0.conv1": {"in": [16, 15], "out": [16, 14]},
        "layer1.0.conv2": {"in": [16, 14], "out": [16, 15]},
        "layer1.1.conv1": {"in": [16, 15], "out": [16, 16]},
        "layer1.1.conv2": {"in": [16, 16], "out": [16, 15]},
        "layer2.0.conv1": {"in": [16, 15], "out": [32, 32]},
        "layer2.0.shortcut.0": {"in": [16, 15], "out": [32, 32]},
        "layer4.0.conv2": {"in": [128, 128], "out": [128, 127]},
        "layer4.0.shortcut.0": {"in": [64, 64], "out": [128, 127]},
        "layer4.1.conv1": {"in": [128, 127], "out": [128, 128]},
        "layer4.1.conv2": {"in": [128, 128], "out": [128, 127]},
        "linear": {"in": [128, 127], "out": [10, 10]},
    }
    # removed parameters by hand, on the original sizes: a stream channel takes its producers' filters and
    # BN pairs and every consumer's input slice; the in-block channels {0, 2} take layer1.0.conv1 filters,
    # bn1 pairs and layer1.0.conv2 input slices; the two removals share 2 x 9 weights in each of those convs
    layer1_stream = (3 * 9 + 2) + 2 * (16 * 9 + 2) + 2 * (16 * 9) + 32 * 9 + 32
    layer1_block = 2 * (16 * 9 + 2) + 2 * (16 * 9)
    overlap = 2 * 9 + 2 * 9
    layer4_stream = 2 * (128 * 9 + 2) + (64 + 2) + 128 * 9 + 10
    assert report.params_before - report.params_after == layer1_stream + layer1_block - overlap + layer4_stream
    assert max_diff(report.model, model, torch.rand(8, 3, 32, 32)) <= TOLERANCE


def test_resnet18_random_channel_masks() -> None:
    """Random channel masks in every prunable conv (the stem excepted), plus an aligned half of one stream."""
    torch.manual_seed(2)
    model = randomize_bn(get_model("resnet18", num_classes=10, width=0.25))
    g = torch.Generator().manual_seed(3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1:]
    for conv in convs:
        zero_inputs(conv, torch.randperm(conv.in_channels, generator=g)[: conv.in_channels // 2].tolist())
    for layer in (model.layer3[1].conv1, model.layer4[0].conv1, model.layer4[0].shortcut[0]):
        zero_inputs(layer, list(range(0, 64, 2)))
    report = shrink(model, torch.rand(2, 3, 32, 32))
    assert report.model.layer3[1].conv2.out_channels <= 32 and report.macs_after < report.macs_before / 2
    assert max_diff(report.model, model, torch.rand(8, 3, 32, 32)) <= TOLERANCE


def test_vgg16_chain() -> None:
    torch.manual_seed(4)
    model = randomize_bn(get_model("vgg16", num_classes=10, width=0.25))  # conv biases on
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    zero_inputs(convs[1], [0, 5])  # -> convs[0] loses 2 output channels and their biases
    zero_inputs(convs[7], list(range(10)))
    zero_inputs(model.classifier, [1, 2, 3])
    report = shrink(model, torch.rand(2, 3, 32, 32))
    assert [c.out_channels for c in report.model.features if isinstance(c, nn.Conv2d)] == \
        [14, 16, 32, 32, 64, 64, 54, 128, 128, 128, 128, 128, 125]  # fmt: skip
    assert report.model.classifier.in_features == 125 and report.model.features[1].num_features == 14
    removed = 2 * (27 + 1 + 2) + 2 * 16 * 9 + 10 * (64 * 9 + 1 + 2) + 10 * 128 * 9 + 3 * (128 * 9 + 1 + 2) + 3 * 10
    assert report.params_before - report.params_after == removed
    assert max_diff(report.model, model, torch.rand(8, 3, 32, 32)) <= TOLERANCE


def test_irregular_mask_removes_nothing() -> None:
    torch.manual_seed(5)
    model = randomize_bn(get_model("smallcnn", num_classes=10, in_channels=1, width=0.5))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_((torch.rand_like(m.weight) < 0.5).float())
    report = shrink(model, torch.rand(2, 1, 8, 8))
    assert report.channels_removed == 0 and report.params_after == report.params_before
    assert max_diff(report.model, model, torch.rand(8, 1, 8, 8)) == 0.0


def test_spaces_match_torch_pruning_groups() -> None:
    """Oracle against Torch-Pruning's DependencyGraph (a test dependency: never skipped)."""
    import torch_pruning as tp

    model = get_model("resnet18", num_classes=10, width=0.25).eval()
    x = torch.rand(2, 3, 32, 32)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    names = {m: n for n, m in model.named_modules()}
    for space in find_channel_spaces(model, x):
        if space.fixed:
            continue
        group = graph.get_pruning_group(model.get_submodule(space.producers[0]), tp.prune_conv_out_channels, idxs=[0])
        members: dict[str, set[str]] = {"out": set(), "in": set(), "bn": set()}
        for dep, _ in group:
            module, handler = dep.target.module, dep.handler.__name__
            if isinstance(module, nn.BatchNorm2d):
                members["bn"].add(names[module])
            elif isinstance(module, nn.Conv2d | nn.Linear):
                members["in" if "in_" in handler else "out"].add(names[module])
        assert members == {"out": set(space.producers), "in": set(space.consumers), "bn": set(space.norms)}


def test_measure_latency_shape() -> None:
    result = measure_latency(Tiny(), (3, 8, 8), batch_sizes=(1, 4), repeats=2, warmup=1, threads=1)
    assert set(result) == {1, 4}
    assert all(v["latency_ms"] > 0 and v["throughput_per_s"] > 0 for v in result.values())


# --------------------------------------------------------------------------------------------------
# Export of a model folder, and the command


def write_model_folder(folder, model: nn.Module, config: RunConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(to_yaml_dict(config), sort_keys=False))
    checkpoint.save(model.state_dict(), folder / "model.pt")


def test_export_round_trip(tmp_path) -> None:
    model = planted_resnet()
    config = RunConfig.model_validate({"data": {"dataset": "cifar10"}, "model": {"arch": "resnet18", "width": 0.25},
                                       "dnr": {"pruning": "channel", "density": 0.5}})  # fmt: skip
    write_model_folder(tmp_path / "run", model, config)
    out = tmp_path / "export" / "model.pt2"
    summary = export_model(tmp_path / "run", out, batch_sizes=(1, 4), repeats=1)
    assert json.loads(out.with_suffix(".json").read_text()) == json.loads(json.dumps(summary))
    assert summary["input_size"] == [3, 32, 32] and summary["channels_removed"] == 4
    assert summary["params_after"] < summary["params_before"] and summary["macs_after"] < summary["macs_before"]
    assert summary["max_abs_diff"] <= TOLERANCE and summary["max_abs_diff_exported"] <= TOLERANCE
    assert set(summary["speedup"]) == {"1", "4"} and summary["input_channels_removed"]["linear"] == 1
    loaded = torch.export.load(out).module()
    x = torch.rand(3, 3, 32, 32)  # a batch size the example did not use: the batch dimension is dynamic
    with torch.no_grad():
        assert float((loaded(x) - model(x)).abs().max()) <= TOLERANCE


def test_export_no_shrink_irregular(tmp_path) -> None:
    torch.manual_seed(6)
    model = randomize_bn(get_model("smallcnn", num_classes=10, in_channels=1, width=0.5))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_((torch.rand_like(m.weight) < 0.3).float())
    config = RunConfig.model_validate({"model": {"arch": "smallcnn", "width": 0.5}, "dnr": {"pruning": "irregular"}})
    write_model_folder(tmp_path / "run", model, config)
    for flag in (False, True):
        summary = export_model(tmp_path / "run", tmp_path / f"m{flag}.pt2", shrink=flag, batch_sizes=(2,), repeats=1)
        assert summary["channels_removable"] == 0 and summary["channels_removed"] == 0
        assert "no channels were removable" in summary["note"]
        assert summary["params_after"] == summary["params_before"] and summary["max_abs_diff"] == 0.0
        assert summary["input_size"] == [1, 8, 8]


def test_export_channel_dnr_digits_run(tmp_path) -> None:
    """A real (tiny) channel-DNR run at density 0.5 through the engine, then shrunk and exported."""
    from dnr_sweep.training.single_run import train_to_dir

    config = RunConfig.model_validate({
        "data": {"dataset": "digits", "val_size": 100}, "model": {"arch": "smallcnn"},
        "train": {"epochs": 2, "warmup_epochs": 0, "lr_milestones": [], "device": "cpu", "batch_size": 64,
                  "lr": 0.05},
        "dnr": {"pruning": "channel", "density": 0.5, "beta": 1.0}, "attack": {"train": {"eps": 0.1}},
    })  # fmt: skip
    train_to_dir(config, tmp_path / "run", log=lambda line: None)
    summary = export_model(tmp_path / "run", tmp_path / "digits.pt2", batch_sizes=(1, 16), repeats=1)
    assert summary["pruning"] == "channel" and summary["channels_removed"] > 0
    assert summary["params_after"] < summary["params_before"]
    assert summary["max_abs_diff"] <= TOLERANCE and summary["max_abs_diff_exported"] <= TOLERANCE
    assert summary["layers"]["features.0"]["in"] == [1, 1]  # the dense stem keeps its image channel


def cli(argv: list[str]) -> int:
    return dnr_cli.main(argv)


def test_cli_prints_json_and_reports_errors(tmp_path, capsys) -> None:
    config = RunConfig.model_validate(
        {"data": {"dataset": "synthetic", "image_size": 8}, "model": {"arch": "smallcnn", "width": 0.5}}
    )
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(to_yaml_dict(config)))
    small = randomize_bn(get_model("smallcnn", num_classes=10, in_channels=3, width=0.5))
    zero_inputs(small.features[3], [0, 1])
    checkpoint.save(small.state_dict(), folder / "model.pt")
    out = tmp_path / "m.pt2"
    assert cli(["export", str(folder), "--out", str(out), "--input-size", "3,16,16", "--repeats", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["input_size"] == [3, 16, 16] and printed["channels_removed"] == 2 and out.is_file()

    assert cli(["export", str(tmp_path / "missing"), "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert "no model.pt" in err and "Traceback" not in err
    assert cli(["export", str(folder), "--out", str(out), "--force", "--input-size", "3,2,2", "--repeats", "1"]) == 2
    assert "--input-size" in capsys.readouterr().err
    wrong = tmp_path / "wrong"  # model.pt of width 0.5 beside a config that says width 1
    wrong.mkdir()
    (wrong / "config.yaml").write_text(
        yaml.safe_dump(to_yaml_dict(config.model_copy(update={"model": RunConfig().model})))
    )
    checkpoint.save(small.state_dict(), wrong / "model.pt")
    assert cli(["export", str(wrong), "--out", str(out), "--force"]) == 2
    assert "does not fit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli(["export", str(folder), "--out", str(out), "--input-size", "3,x"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------------------------------
# channel_group models: every pruned channel is removable (issue 18)


def test_export_of_a_channel_group_model_removes_exactly_its_pruned_groups(tmp_path) -> None:
    from dnr_sweep.sparsity import Masking

    torch.manual_seed(11)
    model = randomize_bn(get_model("resnet18", num_classes=10, width=0.25)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = Masking(model, opt, density=0.25, pruning="channel_group", prune_rate=0.5, total_epochs=4,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        x, t = torch.rand(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), t).backward()
        masking.step()
        if step == 1:
            masking.rewire(0)  # revives some groups; the next step trains their readers
    active = sum(int(m.sum()) for m in masking.masks.values())  # brute force: mask entries
    dead = sum(int((~m).sum()) for m in masking.groups.group_masks)
    config = RunConfig.model_validate({"data": {"dataset": "cifar10"}, "model": {"arch": "resnet18", "width": 0.25},
                                       "dnr": {"pruning": "channel_group", "density": 0.25}})  # fmt: skip
    write_model_folder(tmp_path / "run", model.eval(), config)
    out = tmp_path / "cg.pt2"
    assert cli(["export", str(tmp_path / "run"), "--out", str(out), "--repeats", "1", "--threads", "1"]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["pruning"] == "channel_group" and summary["channels_removed"] == dead > 0
    assert summary["max_abs_diff"] <= TOLERANCE and summary["max_abs_diff_exported"] <= TOLERANCE
    exported = torch.export.load(out).module()
    params = dict(exported.named_parameters())
    conv_weights = sum(p.numel() for n, p in params.items() if p.dim() == 4)
    assert conv_weights == active  # the physical convs hold exactly the mask's active weights
    assert summary["params_after"] == active + sum(p.numel() for p in params.values() if p.dim() != 4)


def test_export_true_runs_for_channel_group(tmp_path) -> None:
    """post_training exports channel_group runs too (params_physical, macs, speedup_cpu in metrics.json)."""
    from dnr_sweep.training.engine import TrainingRun
    from dnr_sweep.training.post_training import after_training

    config = RunConfig.model_validate({
        "data": {"dataset": "digits", "val_size": 100}, "model": {"arch": "smallcnn"},
        "train": {"epochs": 1, "warmup_epochs": 0, "lr_milestones": [], "device": "cpu", "batch_size": 64,
                  "lr": 0.05, "num_threads": 1},
        "dnr": {"pruning": "channel_group", "density": 0.3, "beta": 1.0}, "export": True,
    })  # fmt: skip
    run = TrainingRun(config)
    run.train_epoch()  # the only epoch: no rewiring after it, so the selected masks are the final ones
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(to_yaml_dict(config), sort_keys=False))
    checkpoint.save(run.selected_state_dict(), folder / "model.pt")
    extra = after_training(run, folder)
    assert set(extra) == {"params_physical", "macs", "speedup_cpu"} and extra["speedup_cpu"] > 0
    summary = json.loads((folder / "model.json").read_text())
    assert summary["channels_removed"] == sum(int((~m).sum()) for m in run.masking.groups.group_masks)
    assert extra["params_physical"] == summary["params_after"] < summary["params_before"]


# --------------------------------------------------------------------------------------------------
# --input-size: bounded, checked before anything runs, one message without torch's traceback


def _small_model_folder(tmp_path):
    config = RunConfig.model_validate(
        {"data": {"dataset": "synthetic", "image_size": 8}, "model": {"arch": "smallcnn", "width": 0.5}}
    )
    folder = tmp_path / "run"
    write_model_folder(folder, randomize_bn(get_model("smallcnn", num_classes=10, in_channels=3, width=0.5)), config)
    return folder


INPUT_SIZE_REFUSED = {
    "pooled to nothing": ("3,2,2", "--input-size 3,2,2: the model cannot take 2x2 images", "give at least 3,4,4"),
    "a 1x1 image": ("3,1,1", "the model cannot take 1x1 images", "give at least 3,4,4"),
    "channels the model does not take": ("1,8,8", "--input-size 1,8,8: the model takes 3-channel images", "3,8,8"),
    "a side above the bound": ("3,513,8", "at most 512 pixels a side", "3,32,32"),
    "a product above the bound": ("4,512,512", "786432 values (C*H*W)", "3,32,32"),
    "not three numbers": ("3,x", "three positive integers C,H,W", "3,32,32"),
    "zero": ("0,8,8", "three positive integers C,H,W", "3,32,32"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(INPUT_SIZE_REFUSED))
def test_a_bad_input_size_is_one_message_and_exit_2(tmp_path, case, capfd):
    text, what, fix = INPUT_SIZE_REFUSED[case]
    folder, out = _small_model_folder(tmp_path), tmp_path / "m.pt2"
    try:
        code = cli(["export", str(folder), "--out", str(out), "--input-size", text, "--repeats", "1"])
    except SystemExit as exc:  # argparse's refusal of the flag itself
        code = exc.code
    err = capfd.readouterr().err  # the file descriptor: what torch prints bypassing sys.stderr shows too
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert what in lines[0] and fix in lines[0], err
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize("limit", ["macs", "memory"])
def test_an_export_over_its_estimated_cost_is_refused_before_it_runs(tmp_path, monkeypatch, capsys, limit):
    from dnr_sweep.export import pipeline

    if limit == "macs":
        monkeypatch.setattr(pipeline, "MAX_EXPORT_MACS", 1e6)
        fragment = "multiply-accumulates"
    else:
        monkeypatch.setattr(pipeline, "_physical_memory", lambda: 2**20)
        fragment = "GiB for its activations"
    ran = []
    monkeypatch.setattr(pipeline, "_shrink_fn", lambda *a, **k: ran.append(1))
    folder, out = _small_model_folder(tmp_path), tmp_path / "m.pt2"
    assert cli(["export", str(folder), "--out", str(out), "--input-size", "3,16,16"]) == 2
    err = capsys.readouterr().err
    assert "--input-size 3,16,16" in err and fragment in err and "--repeats" in err, err
    assert not ran and not out.exists()


@pytest.mark.parametrize("arch,side", [("smallcnn", 8), ("resnet18", 32), ("vgg16", 32)])
def test_the_meta_estimate_counts_what_a_real_forward_counts(arch, side):
    from dnr_sweep.export import estimate_forward

    model = get_model(arch, num_classes=10, in_channels=3, width=0.25)
    assert estimate_forward(model, (3, side, side)).macs == count_macs(model, (3, side, side))
    assert next(model.parameters()).device.type == "cpu"  # the model itself is untouched


def test_export_true_too_costly_for_the_image_size_is_refused_by_validate(tmp_path):
    from tests.test_hostile import call

    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": "synthetic", "image_size": 512, "val_size": 16},
                                    "model": {"arch": "resnet18"}, "dnr": {"pruning": "channel", "density": 0.5},
                                    "train": {"device": "cpu"}, "export": True}))  # fmt: skip
    code, err = call(["validate", str(path)])
    assert code == 2 and "export: at the run's image size 3,512,512" in err and "set export: false" in err, err
