"""The symlink matrix: for every file and folder a command writes, a link planted at that name, pointing
outside (at a sentinel file, and at a sentinel folder), then the command that writes it.

Each case ends in exit 0 with the link left alone and nothing written through it, or exit 2 with one
message; the sentinels never change. The names come from the run contract and the write sites: the lock,
``train``'s folder (``config.yaml``, ``checkpoint.pt``, ``selected/`` and its weights, ``epochs.csv``,
``model.pt``, ``metrics.json``), ``evaluate``'s outputs, ``export``'s ``FILE`` and ``FILE.json``, a run
folder's tables and ``report/`` (its figures, tables, ``index.html`` and manifest), a ``--out`` report
folder, and ``data``'s lock, journal, archive, unpacked folder and record. Also here: what ``--force``
may replace (``report``, ``export``), and the library-level writers that no command guards first (the
finish step, a trial's files, a run folder's files). No Ray; one digits run per module, copied per case.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import PathError
from tests.synthetic_runs import write_synthetic_run
from tests.test_hostile import call, write_yaml

#: 2 epochs of digits with a 3-step PGD: the cheapest run with every train file (about 2 s on 2 cores)
DIGITS = {
    "name": "digits_links",
    "data": {"dataset": "digits", "val_size": 180},
    "model": {"arch": "smallcnn", "width": 0.5},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "lr_milestones": [], "warmup_epochs": 0, "device": "cpu",
              "num_threads": 1, "seed": 0},
    "dnr": {"pruning": "irregular", "density": 0.5},
    "attack": {"train": {"eps": 0.1, "alpha": 0.05, "steps": 1},
               "eval": {"fgsm": {"eps": 0.1}, "pgd": {"eps": 0.1, "alpha": 0.05, "steps": 1}}},
}  # fmt: skip
TARGETS = ("file", "folder")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """``config``: the digits config; ``mid``: a train folder after its first of two epochs; ``done``: finished."""
    from dnr_sweep.config import load_run_config
    from dnr_sweep.training.single_run import train_to_dir

    base = tmp_path_factory.mktemp("runs")
    config = write_yaml(base / "digits.yaml", DIGITS)
    done, mid = base / "done", base / "mid"

    def log(line: str) -> None:
        if line.startswith("epoch   2/"):  # before epoch 2's checkpoint: the folder holds epoch 1's
            shutil.copytree(done, mid)

    train_to_dir(load_run_config(config, []), done, log=log)
    assert (mid / rc.CHECKPOINT_FILE).is_file() and (mid / rc.SELECTED_DIR).is_dir()
    return {"config": config, "mid": mid, "done": done}


@pytest.fixture
def sentinels(tmp_path: Path) -> dict[str, Path]:
    file = tmp_path / "sentinel.txt"
    file.write_text("precious")
    folder = tmp_path / "sentinel_dir"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")
    return {"file": file, "folder": folder}


def _plant(link: Path, target: Path) -> Path:
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _outcome(code: int | str, err: str, link: Path, sentinels: dict[str, Path], *, aside: Path | None = None) -> None:
    """Exit 0 with the link left alone, or exit 2 with one message; the sentinels untouched. ``aside``: where
    a reader may have moved an unreadable file (a link moved, never followed)."""
    assert code in (0, 2), err
    assert "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    kept = link.is_symlink() or (aside is not None and aside.is_symlink())
    assert kept, f"{link}: the planted link is gone (exit {code}: {err})"
    assert sentinels["file"].read_text() == "precious"
    assert sorted(p.name for p in sentinels["folder"].iterdir()) == ["keep.txt"]
    assert (sentinels["folder"] / "keep.txt").read_text() == "kept"


# ------------------------------------------------------------------------------------------------
# train: a fresh --out, and --resume of a run after its first epoch (every file of the run is written)


@pytest.mark.parametrize("target", TARGETS)
def test_a_lock_link_in_an_empty_train_out_is_refused(runs, sentinels, tmp_path, target):
    out = tmp_path / "out"
    link = _plant(out / rc.LOCK_FILE, sentinels[target])
    code, err = call(["train", str(runs["config"]), "--out", str(out)])
    _outcome(code, err, link, sentinels)
    assert code == 2 and "symbolic link" in err, err


TRAIN_NAMES = [rc.LOCK_FILE, rc.CONFIG_FILE, rc.CHECKPOINT_FILE, rc.EPOCHS_CSV, rc.MODEL_FILE, rc.METRICS_FILE,
               rc.SELECTED_DIR, rc.selected_weights_file(2), rc.EVALUATION_FILE]  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", TRAIN_NAMES)
def test_train_resume_never_writes_through_a_planted_link(runs, sentinels, tmp_path, name, target):
    out = shutil.copytree(runs["mid"], tmp_path / "out")
    if name == rc.CHECKPOINT_FILE and target == "file":  # a link to a good checkpoint: read, never written
        shutil.copy(out / name, sentinels["file"])
        sentinels["file"].write_text("precious")
    link = _plant(out / name, sentinels[target])
    code, err = call(["train", str(runs["config"]), "--out", str(out), "--resume"])
    _outcome(code, err, link, sentinels)


# ------------------------------------------------------------------------------------------------
# evaluate: a finished model folder


EVALUATE = ["--attacks", "fgsm", "--no-checks", "--limit", "16", "--device", "cpu"]
CURVES = ["--curves", "--curve-eps", "0.1"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", [rc.LOCK_FILE, rc.EVALUATION_FILE, f"{rc.EVALUATION_FILE}.unreadable",
                                  rc.ATTACK_STRENGTH_FILE, "attack_strength.earlier-1.json"])  # fmt: skip
def test_evaluate_never_writes_through_a_planted_link(runs, sentinels, tmp_path, name, target):
    folder = shutil.copytree(runs["done"], tmp_path / "model")
    if name.endswith(".unreadable"):
        (folder / rc.EVALUATION_FILE).write_text("{cut short")  # so evaluate sets it aside to that name
    if name.startswith("attack_strength.earlier"):
        (folder / rc.ATTACK_STRENGTH_FILE).write_text('{"steps": {"1": 50.0}}')  # kept aside as earlier-<n>
    link = _plant(folder / name, sentinels[target])
    code, err = call(["evaluate", str(folder), *EVALUATE, *CURVES])
    _outcome(code, err, link, sentinels)
    if name.startswith("attack_strength.earlier"):
        assert code == 0 and (folder / "attack_strength.earlier-2.json").is_file(), err  # the next free name


def test_evaluate_a_trial_whose_folder_is_a_link_in_a_run_folder(runs, sentinels, tmp_path):
    """``--trial`` picks a folder below the named one: a link there is never written into."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(runs["done"], sentinels["folder"] / "trial_1")
    link = _plant(run / "DNRTrainable_abc_1", sentinels["folder"] / "trial_1")
    before = {p.name: p.read_bytes() for p in (sentinels["folder"] / "trial_1").iterdir() if p.is_file()}
    code, err = call(["evaluate", str(run), "--trial", "abc", *EVALUATE])
    assert code == 2 and "symbolic link" in err, err
    assert link.is_symlink()
    assert {p.name: p.read_bytes() for p in (sentinels["folder"] / "trial_1").iterdir() if p.is_file()} == before


# ------------------------------------------------------------------------------------------------
# export: FILE and FILE.json, with and without --force


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["m.pt2", "m.json"])
def test_export_never_writes_through_a_planted_link(runs, sentinels, tmp_path, name, target, force):
    link = _plant(tmp_path / "exports" / name, sentinels[target])
    argv = ["export", str(runs["done"]), "--out", str(tmp_path / "exports" / "m.pt2"), "--repeats", "1"]
    code, err = call(argv + (["--force"] if force else []))
    _outcome(code, err, link, sentinels)
    assert code == 2, err


def test_export_force_replaces_only_an_earlier_export(runs, tmp_path):
    from dnr_sweep.cli.export import check_outputs
    from dnr_sweep.foundation.errors import UserError

    out = tmp_path / "m.pt2"
    out.write_bytes(b"program")
    with pytest.raises(UserError, match="exists .* pass --force"):
        check_outputs(out, str(out), force=False)
    with pytest.raises(UserError, match="not an earlier export"):  # no summary: nothing proves it is one
        check_outputs(out, str(out), force=True)
    (tmp_path / "m.json").write_text(json.dumps({"file": str(out), "params_before": 1}))
    check_outputs(out, str(out), force=True)  # an earlier export: replaced with --force
    metrics = runs["done"] / rc.METRICS_FILE  # --out RUN/metrics.pt2 would write RUN/metrics.json
    code, err = call(["export", str(runs["done"]), "--out", str(metrics.with_suffix(".pt2")), "--force"])
    assert code == 2 and "not an earlier export" in err, err
    code, err = call(["export", str(runs["done"]), "--out", str(tmp_path / "x.json")])
    assert code == 2 and "FILE.json beside FILE" in err, err


# ------------------------------------------------------------------------------------------------
# report: a run folder's tables and report/, and a --out folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    run = write_synthetic_run(tmp_path_factory.mktemp("synthetic") / "run")
    code, err = call(["report", str(run), "--format", "png"])  # an earlier report, with its manifest
    assert code == 0, err
    return run


REPORT_NAMES = ["report", "report/index.html", "report/pareto.csv", "report/pareto.tex",
                f"report/{rc.REPORT_MANIFEST_FILE}", "report/compression_accuracy.png", rc.RESULTS_FILE,
                rc.EPOCHS_FILE]  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", REPORT_NAMES)
def test_report_never_writes_through_a_planted_link(synthetic, sentinels, tmp_path, name, target):
    run = shutil.copytree(synthetic, tmp_path / "run")
    aside = None
    if name in (rc.RESULTS_FILE, rc.EPOCHS_FILE):  # unreadable behind the link: rebuilt from result.json
        aside = run / f"{name}.unreadable"
    link = _plant(run / name, sentinels[target])
    code, err = call(["report", str(run), "--format", "png"])
    _outcome(code, err, link, sentinels, aside=aside)


@pytest.mark.parametrize("target", TARGETS)
def test_report_out_never_writes_through_a_planted_link(synthetic, sentinels, tmp_path, target):
    out = tmp_path / "figures"
    link = _plant(out / "index.html", sentinels[target])
    code, err = call(["report", str(synthetic), "--out", str(out), "--format", "png", "--force"])
    _outcome(code, err, link, sentinels)
    assert code == 2, err


def test_report_force_replaces_only_an_earlier_report(synthetic, tmp_path):
    """The issue's case: ``report A B --out A/report`` without --force is refused naming the flag; with it,
    only what A's report listed is replaced; a user's file of a report's name is never written over."""
    a = shutil.copytree(synthetic, tmp_path / "a")
    b = write_synthetic_run(tmp_path / "b", seed=1)
    before = {p.name: p.read_bytes() for p in (a / rc.REPORT_DIR).iterdir()}
    argv = ["report", str(a), str(b), "--labels", "a,b", "--out", str(a / rc.REPORT_DIR), "--format", "png"]
    code, err = call(argv)
    assert code == 2 and "--force" in err and "the report of" in err, err
    assert {p.name: p.read_bytes() for p in (a / rc.REPORT_DIR).iterdir()} == before  # nothing written over
    code, err = call(argv + ["--force"])
    assert code == 0, err
    manifest = json.loads((a / rc.REPORT_DIR / rc.REPORT_MANIFEST_FILE).read_text())
    assert manifest["kind"] == "comparison" and set(before) - {rc.REPORT_MANIFEST_FILE} <= set(manifest["files"])
    code, err = call(["report", str(a), "--format", "png"])  # A's own report/ holds a comparison now
    assert code == 2 and "a comparison of" in err and "--force" in err, err

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, err = call(["report", str(a), "--out", str(mine), "--format", "png", "--force"])
    assert code == 2 and "no dnr-sweep report wrote" in err, err  # not a report folder: --force changes nothing
    (mine / "notes.txt").unlink()
    code, err = call(["report", str(a), "--out", str(mine), "--format", "png"])
    assert code == 0, err
    manifest = json.loads((mine / rc.REPORT_MANIFEST_FILE).read_text())
    manifest["files"].remove("pareto.csv")  # now a file of the user's that has a report's name
    (mine / rc.REPORT_MANIFEST_FILE).write_text(json.dumps(manifest))
    (mine / "pareto.csv").write_text("mine")
    code, err = call(["report", str(a), "--out", str(mine), "--format", "png", "--force"])
    assert code == 2 and "pareto.csv: not written by an earlier report" in err, err
    assert (mine / "pareto.csv").read_text() == "mine"
    code, err = call(["report", str(a), "--out", str(mine), "--format", "png"])  # the same report: no --force
    assert code == 2 and "pareto.csv" in err, err


def test_the_default_report_of_a_run_is_drawn_again_without_force(synthetic, tmp_path):
    run = shutil.copytree(synthetic, tmp_path / "run")
    assert call(["report", str(run), "--format", "png"])[0] == 0
    (run / rc.REPORT_DIR / rc.REPORT_MANIFEST_FILE).unlink()  # a report/ from before manifests
    assert call(["report", str(run), "--format", "png"])[0] == 0
    assert (run / rc.REPORT_DIR / rc.REPORT_MANIFEST_FILE).is_file()


# ------------------------------------------------------------------------------------------------
# data: a shared data root


@pytest.fixture
def archive(tmp_path, monkeypatch) -> tuple[Path, dataset_specs.DatasetSpec]:
    """A miniature CIFAR-10 archive in a folder mirror, with the spec that checks it."""
    from tests.test_data_fetch import cifar10_archive, use_archive

    built = cifar10_archive(tmp_path)
    spec = use_archive(monkeypatch, built)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / spec.archive.filename).write_bytes(built.data)
    return mirror, spec


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("which", ["lock", "journal", "archive", "folder"])
def test_data_fetch_never_writes_through_a_planted_link(archive, sentinels, tmp_path, which, target):
    mirror, spec = archive
    root = tmp_path / "data"
    name = {"lock": f".{spec.archive.folder}.lock", "journal": f".{spec.archive.folder}.fetching.json",
            "archive": spec.archive.filename, "folder": spec.archive.folder}[which]  # fmt: skip
    link = _plant(root / name, sentinels[target])
    code, err = call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", str(mirror), "--no-progress"])
    _outcome(code, err, link, sentinels)


def test_data_check_never_writes_its_record_through_a_link(archive, sentinels, tmp_path):
    mirror, spec = archive
    root = tmp_path / "data"
    assert call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", str(mirror), "--no-progress"])[0] == 0
    link = _plant(root / spec.archive.folder / ".dnr-sweep-verified.json", sentinels["file"])
    code, err = call(["data", "check", "cifar10", "--root", str(root)])
    _outcome(code, err, link, sentinels)


@pytest.mark.parametrize("where", ["experiment_state-2026-01-01_00-00-00.json", "DNRTrainable_1/result.json"])
def test_resume_refuses_a_run_folder_holding_a_link_before_ray(sentinels, tmp_path, monkeypatch, where):
    """Ray Tune writes its own files into a resumed folder, without the writer: a link anywhere in it is refused."""
    from dnr_sweep.sweep import cluster
    from tests.test_hostile import _run_folder

    monkeypatch.setattr(cluster, "start_ray", lambda **_: pytest.fail("Ray must not start"))

    run = _run_folder(tmp_path / "run")
    link = _plant(run / where, sentinels["file"])
    code, err = call(["resume", str(run), "--no-dashboard"])
    _outcome(code, err, link, sentinels)
    assert code == 2 and "symbolic link" in err, err


# ------------------------------------------------------------------------------------------------
# Writers no command guards first: the finish step, a trial's own files, a run folder's files


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", [rc.MODEL_FILE, rc.CONFIG_FILE, rc.METRICS_FILE])
def test_the_finish_step_never_writes_through_a_planted_link(runs, sentinels, tmp_path, name, target):
    from dnr_sweep.config import load_run_config
    from dnr_sweep.training.engine import TrainingRun
    from dnr_sweep.training.finish import finish_run

    run = TrainingRun(load_run_config(runs["config"], ["train.epochs=1"]))
    run.train_epoch()
    folder = tmp_path / "trial"
    link = _plant(folder / name, sentinels[target])
    with pytest.raises(PathError, match="symbolic link"):
        finish_run(run, folder)
    _outcome(2, "one message", link, sentinels)


@pytest.mark.parametrize("target", TARGETS)
def test_a_trials_files_and_a_run_folders_files_are_never_written_through_a_link(sentinels, tmp_path, target):
    from dnr_sweep.artifacts import checkpoint
    from dnr_sweep.foundation import storage
    from dnr_sweep.sweep.results import _write_driver_end
    from dnr_sweep.sweep.run_folder import prepare_run_dir

    trial = storage.locate(tmp_path / "trial")
    writes = {
        rc.TRIAL_EPOCHS_FILE: lambda: storage.write_text(trial / rc.TRIAL_EPOCHS_FILE, "[]"),
        rc.FINAL_STATE_FILE: lambda: checkpoint.save_to({"result": {}}, trial / rc.FINAL_STATE_FILE),
        rc.SELECTED_DIR: lambda: checkpoint.SelectedWeights(trial).write(1, {"w": torch.zeros(1)}),
        rc.CONFIG_FILE: lambda: prepare_run_dir(trial, config_path=sentinels["file"], overrides=[]),
        rc.DRIVER_END_FILE: lambda: _write_driver_end(tmp_path / "trial", interrupted=False),
    }
    for name, write in writes.items():
        link = _plant(tmp_path / "trial" / name, sentinels[target])
        with pytest.raises(PathError, match="symbolic link"):
            write()
        _outcome(2, "one message", link, sentinels)
        link.unlink()
    assert os.listdir(tmp_path / "trial") == []
