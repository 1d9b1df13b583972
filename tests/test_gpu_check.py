"""The GPU check (benchmarks/gpu_check.sh) cannot rot before the next GPU lease.

* The core and the check import and run with ``ray`` and ``optuna`` unimportable (the GPU machine
  has neither): a ``sitecustomize`` on PYTHONPATH puts a blocker on ``sys.meta_path`` in every
  process the test starts, the check's spawned trial processes included.
* ``--smoke`` runs every part on CPU through the shell wrapper in under a minute; its JSON has the
  documented structure, every part produced figures, OUTDIR holds at most 8 files.
* A wrong OUTDIR, or no CUDA without ``--smoke``, is one message and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "benchmarks" / "gpu_check.sh"

BLOCKER = '''
import importlib.abc, sys

class _Blocked(importlib.abc.MetaPathFinder):
    """The GPU machine has no Ray and no Optuna: importing either fails, as it would there."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "optuna"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: the GPU machine has no ray/optuna)")
        return None

sys.meta_path.insert(0, _Blocked())
'''

#: everything the GPU check needs, and the rest of the core that must run without Ray
CORE_MODULES = [
    "dnr_sweep.config", "dnr_sweep.training.engine", "dnr_sweep.attacks.gradient", "dnr_sweep.data.device_loader", "dnr_sweep.models.architectures",
    "dnr_sweep.data.loaders", "dnr_sweep.sparsity", "dnr_sweep.evaluation", "dnr_sweep.artifacts.checkpoint",
    "dnr_sweep.training.single_run", "dnr_sweep.training.dry_run", "dnr_sweep.export", "dnr_sweep.cli", "dnr_sweep.reports.build",
    "dnr_sweep.methods", "dnr_sweep.data.fetch", "gpu_check", "gpu_check_parts", "gpu_check_plain",
]  # fmt: skip


@pytest.fixture
def no_ray_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "blocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join([str(site), str(ROOT), str(ROOT / "benchmarks")])
    return dict(os.environ, PYTHONPATH=path, PYTHON=sys.executable, PYTHONUNBUFFERED="1")


def test_blocker_blocks(no_ray_env: dict[str, str]) -> None:
    """The fixture itself: with it, `import ray` fails (else the tests below would prove nothing)."""
    proc = subprocess.run([sys.executable, "-c", "import ray"], env=no_ray_env, capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked" in proc.stderr


def test_core_imports_and_trains_without_ray_or_optuna(no_ray_env: dict[str, str], tmp_path: Path) -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "assert not any(m.split('.')[0] in ('ray', 'optuna') for m in sys.modules), 'ray/optuna got imported'\n"
        "from dnr_sweep.cli import main\n"
        f"sys.exit(main(['train', {str(ROOT / 'search_spaces' / 'digits_quick.yaml')!r}, '--out', "
        f"{str(tmp_path / 'run')!r}, '--set', 'train.epochs=1', '--set', 'train.warmup_epochs=0', "
        "'--set', 'train.lr_milestones=[]']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=no_ray_env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1


@pytest.mark.slow
def test_smoke_runs_every_part_without_ray(no_ray_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    start = time.perf_counter()
    proc = subprocess.run(["bash", str(WRAPPER), str(out), "--smoke"], env=no_ray_env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    # about 15 s on an idle 2-core machine, 49 s at load average 9: 120 s catches a profile that grew
    # (full sizes, more settings) without failing when the shared cores are busy
    assert wall < 120, f"--smoke took {wall:.0f} s; it must stay around a minute"
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"gpu_check.json", "gpu_check.md", "gpu_check.log"} <= set(files), files

    data = json.loads((out / "gpu_check.json").read_text())
    meta = data["meta"]
    assert meta["smoke"] is True and meta["device"] == "cpu"
    for key in ("date", "torch", "cuda", "python", "torchvision"):
        assert key in meta
    assert list(data["parts"]) == ["numerics", "precision", "epoch_speed", "packing", "data_path"]
    for name, entry in data["parts"].items():
        assert entry["status"] == "ok", (name, entry.get("traceback"))
        assert entry["figures"], name
        assert entry["elapsed_s"] >= 0 and entry["budget_s"] > 0

    num = data["parts"]["numerics"]["figures"]
    assert num["masks_ok"] and num["weights_ok"]  # CPU against CPU in smoke: must be exact
    assert num["rewiring_same_state_mask_mismatches"] == 0 and num["mask_entries"] > 0
    assert num["attacks"]["torchattacks"] is not None  # the test extras install it
    for attack in ("fgsm", "pgd7"):
        assert num["attacks"][attack]["ok"] and num["attacks"][attack]["torchattacks_on_device"]["ok"]

    prec = data["parts"]["precision"]["figures"]
    assert set(prec["accuracy"]) == {"clean", "fgsm", "pgd"}
    for figure in prec["accuracy"].values():
        assert 0 <= figure["bf16"] <= 100 and 0 <= figure["fp32_reference"] <= 100
    assert prec["per_epoch_eval_precision"] in ("bf16", "fp32")

    speed = data["parts"]["epoch_speed"]["figures"]
    archs = {r["arch"] for r in speed["rows"] if "epoch_s_per_50k" in r}
    assert archs == {"resnet18", "vgg16"}
    for row in speed["rows"]:
        assert row["epoch_s_per_50k"] > 0 and row["limit_s_per_50k"] > 0 and row["ratio_to_limit"] > 0
        assert row["plain_epoch_s_per_50k"] > 0 and row["engine_over_plain"] > 0
    for limit in speed["limits"].values():
        assert limit["flops_per_image"] > 0

    pack = data["parts"]["packing"]["figures"]
    ks = {p["per_gpu"] for p in pack["phases"] if p["arch"] == "resnet18"}
    assert ks == {1, 2}
    for phase in pack["phases"]:
        assert phase["images_per_s"] > 0 and phase["throughput_vs_1"] > 0 and phase["peak_rss_bytes_per_trial"] > 0
    assert any(p["size"] == 64 and p["classes"] == 200 for p in pack["phases"])  # Tiny-ImageNet shape

    data_path = data["parts"]["data_path"]["figures"]
    assert data_path["device_loader_images_per_s"] > 0
    assert all(r["images_per_s"] > 0 for r in data_path["dataloader"])

    rec = data["recommendations"]
    assert rec["applies"].startswith("SMOKE")
    assert {"per_epoch_eval_precision", "cuda_default_setting", "resources_per_trial"} <= set(rec)
    md = (out / "gpu_check.md").read_text()
    assert "SMOKE RUN ON CPU" in md and "not GPU figures" in md
    assert "[" in (out / "gpu_check.log").read_text()  # timestamped progress lines


def _refused(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(WRAPPER), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1
    return proc


def test_non_empty_outdir_is_refused_and_left_alone(no_ray_env: dict[str, str], tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    proc = _refused(no_ray_env, str(taken), "--smoke")
    assert "not empty" in proc.stderr and str(taken) in proc.stderr
    assert [p.name for p in taken.iterdir()] == ["keep.txt"] and (taken / "keep.txt").read_text() == "mine"
    file_out = taken / "keep.txt"
    assert "is a file" in _refused(no_ray_env, str(file_out), "--smoke").stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="describes a machine without CUDA (CI); a GPU runs the check")
def test_without_cuda_the_full_check_says_use_smoke(no_ray_env: dict[str, str], tmp_path: Path) -> None:
    proc = _refused(no_ray_env, str(tmp_path / "out"))
    assert "--smoke" in proc.stderr and not (tmp_path / "out").exists()


def test_a_spent_budget_skips_the_rest_but_keeps_one_figure_per_arch(monkeypatch) -> None:
    """Budgets are obeyed: with none left, each arch still gets its first setting, the rest is listed."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_check_parts as parts

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        figures = parts.part_epoch_speed(parts.SMOKE, parts.Budget(0, lambda message: None))
    finally:
        torch.set_num_threads(threads)
    assert [r["arch"] for r in figures["rows"]] == ["resnet18", "vgg16"]
    assert all(r["label"] == "fp32" for r in figures["rows"])
    # per arch: every setting after the first (the full profile's channels_last; here the cudnn.benchmark
    # extra), each named with its reason
    profile = parts.replace(parts.SMOKE, channels_last=(False, True))
    figures = parts.part_epoch_speed(profile, parts.Budget(0, lambda message: None))
    assert sorted(s.split(":")[0] for s in figures["skipped"]) == [
        "resnet18 fp32 CL", "resnet18 fp32 cudnn.benchmark", "vgg16 fp32 CL", "vgg16 fp32 cudnn.benchmark"]  # fmt: skip
    assert all("budget" in s for s in figures["skipped"])
