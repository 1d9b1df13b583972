"""The GPU benchmarks run (tiny, on CPU) so they cannot rot; their JSON has the documented keys.

No timing is asserted: these are smoke tests of the scripts, not measurements.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def run(capsys):
    """Call ``benchmarks/<script>``'s ``main(args)`` in-process; return its one JSON line on stdout."""
    sys.path.insert(0, str(BENCH))
    threads = torch.get_num_threads()

    def call(script: str, *args: str) -> dict:
        module = importlib.import_module(script.removesuffix(".py"))
        returned = module.main(list(args))
        lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one JSON line on stdout, got {lines!r}"
        out = json.loads(lines[0])
        assert out == json.loads(json.dumps(returned))
        return out

    yield call
    torch.set_num_threads(threads)
    sys.path.remove(str(BENCH))


def test_gpu_epoch_runs_on_cpu_with_tiny_sizes(run):
    out = run("bench_gpu_epoch.py", "--allow-cpu", "--device", "cpu", "--width", "0.125", "--images", "256",
               "--size", "32", "--batch", "128", "--warmup-steps", "1", "--steps", "2", "--no-write")  # fmt: skip
    assert out["benchmark"] == "gpu_epoch" and out["skipped"] is False
    assert {"machine", "settings", "limit", "results", "best", "goal"} <= set(out)
    assert {"platform", "cpu", "cores", "torch", "device"} <= set(out["machine"])
    rows = out["results"]
    assert {(r["arch"], r["precision"], r["channels_last"]) for r in rows} == {
        (a, "fp32", cl) for a in ("resnet18", "vgg16") for cl in (False, True)
    }
    for r in rows:
        assert {"epoch_s", "epoch_s_per_50k", "limit_s_per_50k", "ratio_to_limit", "images"} <= set(r)
        assert r["images"] == 256 and r["epoch_s"] > 0
        assert abs(r["epoch_s_per_50k"] / r["epoch_s"] - 50_000 / 256) < 1e-6


def test_gpu_epoch_limit_matches_the_issue_figures(run):
    # 20 forward-equivalents x 2 x MACs x 50,000 / 989 TFLOPS: ResNet18 ~1.12 s, VGG16 ~0.63 s (issue 9)
    from bench_rewiring import macs

    from dnr_sweep.models.architectures import get_model

    for arch, expected in (("resnet18", 1.12), ("vgg16", 0.63)):
        limit = 20 * 2 * macs(get_model(arch, num_classes=10)) * 50_000 / 989e12
        assert abs(limit - expected) < 0.02, (arch, limit)


def test_gpu_epoch_skips_without_cuda_unless_allowed(run, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without CUDA, GPU or not
    out = run("bench_gpu_epoch.py", "--no-write")
    assert out == {"benchmark": "gpu_epoch", "skipped": True, "reason": out["reason"]}
    assert "skipped" in out["reason"]


def test_gpu_packing_dry_run_builds_fractional_resources(run):
    out = run("bench_gpu_packing.py", "--dry-run", "--cpus", "16")
    assert out["dry_run"] is True
    assert out["resources"] == {"1": {"cpu": 16.0, "gpu": 1.0}, "2": {"cpu": 8.0, "gpu": 0.5},
                                "4": {"cpu": 4.0, "gpu": 0.25}}  # fmt: skip
    assert out["trials"] == {"1": 2, "2": 4, "4": 8}
    for k, text in out["configs"].items():
        raw = yaml.safe_load(text)
        assert raw["tune"]["max_concurrent_trials"] == int(k)
        assert raw["train"]["device"] == "cuda"


@pytest.mark.slow
def test_checkpoint_benchmark_resnet18_cifar100_is_at_most_100_mb_and_restores_exactly(run):
    """Issue 16's goal, measured on the real shapes: ResNet18 with 100 classes, dense and at 5%."""
    out = run("bench_checkpoint.py", "--density", "0.05", "1.0", "--reps", "1", "--no-write")
    assert out["benchmark"] == "checkpoint" and {"machine", "settings", "results", "goal"} <= set(out)
    for row in out["results"]:
        assert row["mb"]["before"] > 220  # model, momentum, masks, z, selected weights: 5 x 45 MB
        assert row["mb"]["after"] <= 100, row
        assert row["restore_bit_identical"] is True
    sparse = out["results"][0]
    assert sparse["density"] == 0.05 and sparse["mb"]["after"] < 60 and sparse["mb"]["selected"] < 10
