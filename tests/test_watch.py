"""Watching a sweep: ``dnr-sweep status`` from the files, TensorBoard event files, dashboard gauges.

The status fixtures are real sweeps (digits, smallcnn width 0.5, 2 trials x 2 epochs) run on Ray
Tune, then copied and trimmed into a running, an interrupted, a finished and an errored run folder.

Result format: :mod:`dnr_sweep.foundation.run_contract` (per-epoch figures under ``this_epoch/``, the selected
epoch's at the top level), as the real runs write it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnr_sweep import cli
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import UserError
from dnr_sweep.sweep import status as st
from tests.test_sweep import BASE as SWEEP_BASE

REPO = Path(__file__).resolve().parents[1]

BASE = {**SWEEP_BASE, "name": "watch_test"}


# ------------------------------------------------------------------------------------------------
# Fixtures: real sweeps, converted to the new result format, trimmed into the four situations


def result_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(f"*/{rc.TUNE_RESULT_FILE}"))


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, lines: list[dict[str, Any]], tail: str = "") -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + tail)


def state_file(run_dir: Path) -> Path:
    (path,) = run_dir.glob(rc.TUNE_STATE_GLOB)
    return path


def set_tune_status(run_dir: Path, statuses: dict[str, str]) -> None:
    """Rewrite trial statuses in Tune's experiment state (a JSON string per trial, edited as JSON)."""
    path = state_file(run_dir)
    data = json.loads(path.read_text())
    for entry in data["trial_data"]:
        trial = json.loads(entry[0])
        if trial["trial_id"] in statuses:
            trial["status"] = statuses[trial["trial_id"]]
            entry[0] = json.dumps(trial)
    path.write_text(json.dumps(data))


def run_real_sweep(root: Path, name: str, search: dict[str, Any]) -> Path:
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump({**BASE, "search": search}, sort_keys=False))
    code = cli.main(["run", str(config), "--storage", str(root / "runs"), "--name", name, "--no-dashboard",
                     "--no-report"])  # fmt: skip
    assert code in (0, 1)  # 1: the errored sweep
    return root / "runs" / name


@pytest.fixture(scope="module")
def real_runs(ray_session, tmp_path_factory) -> dict[str, Path]:
    """``raw`` (as Tune wrote it), ``finished``, ``running``, ``interrupted``, ``errored``."""
    root = tmp_path_factory.mktemp("watch")
    raw = run_real_sweep(root, "two", {"dnr.pruning": {"grid": ["irregular", "channel"]}})
    raw_errored = run_real_sweep(root, "diverging", {"train.lr": {"grid": [0.05, 1.0e6]}})
    runs = {"raw": raw}
    for name, source in (("finished", raw), ("errored", raw_errored)):
        runs[name] = shutil.copytree(source, root / name)

    # running: trial 0 has trained epoch 1 of 2 and is writing epoch 2's line; trial 1 waits for a CPU
    running = runs["running"] = shutil.copytree(runs["finished"], root / "running")
    first, second = sorted(p.parent for p in result_files(running))
    (running / rc.RESULTS_FILE).unlink()
    (running / rc.DRIVER_END_FILE).unlink()
    (running / rc.EPOCHS_FILE).unlink()
    for name in (rc.MODEL_FILE, rc.METRICS_FILE, rc.FINAL_STATE_FILE):
        (first / name).unlink()
    lines = read_lines(first / rc.TUNE_RESULT_FILE)
    write_lines(first / rc.TUNE_RESULT_FILE, lines[:1], tail=json.dumps(lines[1])[:60])
    shutil.rmtree(second)
    ids = [read_lines(p)[0]["trial_id"] for p in result_files(runs["finished"])]
    set_tune_status(running, {ids[0]: "RUNNING", ids[1]: "PENDING"})

    # interrupted: the same folder, untouched for an hour (the driver was killed)
    interrupted = runs["interrupted"] = shutil.copytree(running, root / "interrupted")
    hour_ago = time.time() - 3600
    for path in interrupted.rglob("*"):
        os.utime(path, (hour_ago, hour_ago))
    return runs


def status_json(run_dir: Path, capsys) -> dict[str, Any]:
    assert cli.main(["status", str(run_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------------
# dnr-sweep status on real runs


@pytest.mark.slow
def test_status_of_a_finished_run(real_runs, capsys):
    run_dir = real_runs["finished"]
    status = status_json(run_dir, capsys)
    assert status["phase"] == "finished" and not status["live"]
    assert status["counts"] == {"running": 0, "finished": 2, "early_stopped": 0, "errored": 0, "interrupted": 0,
                                "pending": 0, "not_started": 0}  # fmt: skip
    assert status["trials_total"] == 2 and status["eta_s"] == 0.0
    assert status["elapsed_s"] > 0 and status["resume_command"] is None
    # best so far, per pruning type: the selected epoch's validation figures, never a test figure
    for path in result_files(run_dir):
        last = read_lines(path)[-1]
        pruning = last["config"]["dnr.pruning"]
        best = status["best"][pruning]
        assert best["val_clean_acc"] == {"value": last["val_clean_acc"], "trial_id": last["trial_id"],
                                         "epoch": last["selected_epoch"]}  # fmt: skip
        assert best["val_pgd_acc"]["value"] == last["val_pgd_acc"]
        assert last["val_clean_acc"] != last["clean_acc"]  # the run tells them apart: this test can fail
    trial = status["trials"][0]
    assert trial["epochs_done"] == trial["epochs_total"] == 2
    lines = read_lines(Path(trial["folder"]) / rc.TUNE_RESULT_FILE)
    assert trial["epoch_time_s"] == pytest.approx(sum(line["this_epoch/epoch_time_s"] for line in lines) / 2)
    assert cli.main(["status", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "finished" in text and "2 finished" in text and "best so far (validation" in text
    assert "irregular" in text and "channel" in text and "ETA" not in text


@pytest.mark.slow
def test_status_of_a_running_run(real_runs, capsys):
    run_dir = real_runs["running"]
    now = time.time()
    for path in [state_file(run_dir), *result_files(run_dir)]:
        os.utime(path, (now, now))  # the driver is alive: it just wrote them
    status = status_json(run_dir, capsys)
    assert status["phase"] == "running" and status["live"]
    assert status["counts"]["running"] == 1 and status["counts"]["pending"] == 1
    (path,) = result_files(run_dir)
    line = json.loads(path.read_text().splitlines()[0])
    running = next(t for t in status["trials"] if t["state"] == "running")
    assert (running["epochs_done"], running["epochs_total"], running["selected_epoch"]) == (1, 2, 1)
    assert running["val_clean_acc"] == line["val_clean_acc"]
    assert any("half-written last line" in note for note in status["notes"])
    # ETA: 1 epoch of the running trial + 2 of the pending one at the measured epoch time, 1 at a time
    assert status["eta"]["epochs_left"] == 3 and status["eta"]["concurrency"] == 1
    assert status["eta_s"] == pytest.approx(3 * line["this_epoch/epoch_time_s"])
    assert cli.main(["status", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "running, last update" in text and "epoch 1/2" in text and "ETA" in text and "resume" not in text

    # the trial failed once and Tune restarted it from its checkpoint: still running, and says so
    error = next(real_runs["errored"].glob(f"*/{rc.TUNE_ERROR_FILE}"))
    shutil.copyfile(error, path.parent / rc.TUNE_ERROR_FILE)
    state = json.loads(state_file(run_dir).read_text())
    for entry in state["trial_data"]:
        meta = json.loads(entry[1])
        if json.loads(entry[0])["trial_id"] == running["trial_id"]:
            entry[1] = json.dumps({**meta, "num_failures": 1, "error_filename": rc.TUNE_ERROR_FILE})
    state_file(run_dir).write_text(json.dumps(state))
    assert cli.main(["status", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert f"{running['trial_id']}  failed 1 time(s), restarted from its last checkpoint (now running)" in text
    assert "1 running, 0 finished, 0 early-stopped, 0 errored" in text


@pytest.mark.slow
def test_status_of_an_interrupted_run(real_runs, capsys):
    run_dir = real_runs["interrupted"]
    status = status_json(run_dir, capsys)
    assert status["phase"] == "interrupted" and not status["live"]
    assert status["counts"]["interrupted"] == 1 and status["counts"]["pending"] == 1
    assert status["counts"]["running"] == 0
    assert status["resume_command"] == f"dnr-sweep resume {run_dir}"
    assert status["last_update_age_s"] > 3000
    assert any("driver is not running" in note for note in status["notes"])
    assert cli.main(["status", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert f"continue it with: dnr-sweep resume {run_dir}" in text and "stopped mid-training" in text


@pytest.mark.slow
def test_status_of_an_errored_run(real_runs, capsys):
    run_dir = real_runs["errored"]
    status = status_json(run_dir, capsys)
    assert status["phase"] == "finished"
    assert status["counts"]["finished"] == 1 and status["counts"]["errored"] == 1
    (failed,) = [t for t in status["trials"] if t["state"] == "errored"]
    assert failed["params"] == {"train.lr": 1.0e6} and failed["epochs_done"] == 0
    assert failed["error"].startswith(
        "dnr_sweep.training.engine.NonFiniteLossError: loss is not finite at epoch 1, step"
    )
    assert "Traceback" not in failed["error"] and "\n" not in failed["error"]
    assert list(status["best"]) == ["irregular"]  # only the trial that trained has figures
    assert cli.main(["status", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "1 errored" in text and "errors:" in text and "NonFiniteLossError" in text


@pytest.mark.slow
def test_status_imports_neither_torch_nor_ray(real_runs):
    probe = ("import json, sys; from dnr_sweep.cli import main; code = main(['status', sys.argv[1], '--json']); "
             "print(json.dumps({'code': code, 'heavy': sorted({'torch', 'ray'} & set(sys.modules))}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe, str(real_runs["finished"])], capture_output=True, text=True,
                          cwd=REPO, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 0, "heavy": []}


# ------------------------------------------------------------------------------------------------
# dnr-sweep status: bad folders and odd files (no Ray)


def test_status_refuses_folders_that_are_not_runs(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert cli.main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and "config.yaml" in err and "Traceback" not in err
    assert cli.main(["status", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    with pytest.raises(UserError, match="Ray Tune experiment, but not one `dnr-sweep run` started"):
        st.sweep_status(tmp_path)
    assert cli.main(["status", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt: not a folder" in capsys.readouterr().err
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / rc.CONFIG_FILE).write_text(yaml.safe_dump(BASE))
    (trial / rc.TUNE_RESULT_FILE).write_text("")
    with pytest.raises(UserError, match=f"one trial's folder; pass the run folder it is in: {tmp_path}"):
        st.sweep_status(trial)
    single = tmp_path / "single"
    single.mkdir()
    (single / rc.CONFIG_FILE).write_text(yaml.safe_dump(BASE))
    (single / rc.EPOCHS_CSV).write_text("epoch\n1\n")
    with pytest.raises(UserError, match="a `dnr-sweep train` folder"):
        st.sweep_status(single)


def test_status_of_a_sweep_tune_has_not_snapshotted_yet(tmp_path):
    (tmp_path / rc.CONFIG_FILE).write_text(yaml.safe_dump({**BASE, "search": {"dnr.density": {"grid": [0.1, 0.5]}}}))
    (tmp_path / rc.SWEEP_FILE).write_text(json.dumps({"overrides": ["train.epochs=3"], "config_source": "x"}))
    status = st.sweep_status(tmp_path)
    assert status.phase == "starting" and status.counts["not_started"] == 2
    assert status.eta["epochs_left"] == 6 and status.eta_s is None  # 2 trials x 3 epochs, nothing measured yet
    assert "ETA unknown" in st.format_status(status)
    later = st.sweep_status(tmp_path, now=time.time() + 3600)
    assert later.phase == "interrupted"
    (tmp_path / rc.SWEEP_FILE).write_text("{not json")
    with pytest.raises(UserError, match="sweep.json: unreadable"):
        st.sweep_status(tmp_path)


def test_the_status_module_imports_neither_ray_nor_torch():
    code = "import sys, dnr_sweep.sweep.status; bad = {'ray', 'torch'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_status_of_trials_known_only_from_the_table_agrees_with_the_chooser(tmp_path):
    """Tune's state lost after the driver ended: each trial's state comes from results.parquet, and a trial
    is finished exactly when the report's chooser counts it finished."""
    import pandas as pd

    from dnr_sweep.reports.chooser import finished_mask

    (tmp_path / rc.CONFIG_FILE).write_text(yaml.safe_dump({**BASE, "search": {"dnr.density": {"grid": [0.1, 0.5]}}}))
    table = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "epochs_completed": [2, 1, 1, 1],
                          "status": ["TERMINATED", "TERMINATED", "EARLY_STOPPED", "ERROR"],
                          "early_stopped": [False, True, True, True]})  # fmt: skip
    table.to_parquet(tmp_path / rc.RESULTS_FILE)
    (tmp_path / rc.DRIVER_END_FILE).write_text(json.dumps({"ended": time.time(), "interrupted": False}))
    status = st.sweep_status(tmp_path)
    states = {t.trial_id: t.state for t in status.trials}
    assert states == {"a": "finished", "b": "early_stopped", "c": "early_stopped", "d": "errored"}
    assert [t for t, s in states.items() if s == "finished"] == table.loc[finished_mask(table), "trial_id"].tolist()


def test_result_lines_skip_a_half_written_last_line(tmp_path):
    path = tmp_path / rc.TUNE_RESULT_FILE
    path.write_text('{"epoch": 1, "val_clean_acc": NaN}\n{"epoch": 2}\n{"epoch": 3, "this_ep')
    lines, notes = st.read_result_lines(path)
    assert [line["epoch"] for line in lines] == [1, 2] and math.isnan(lines[0]["val_clean_acc"])
    assert len(notes) == 1 and "half-written last line" in notes[0]
    path.write_text('{"epoch": 1}\ngarbage\n{"epoch": 3}\n')
    lines, notes = st.read_result_lines(path)
    assert [line["epoch"] for line in lines] == [1, 3] and "unreadable line 2" in notes[0]
    assert st.read_result_lines(tmp_path / "absent.json") == ([], [])


def test_error_summary_is_the_exception_line_of_the_traceback():
    text = (
        "Failure # 2 (occurred at 2026-11-25_16-44-36)\n"
        "ray::ResourceTrainable.train() (pid=1, ip=127.0.0.1, actor_id=ab)\n"
        '  File "/x/ray/tune/trainable/trainable.py", line 326, in train\n'
        "    result = self.step()\n"
        "             ^^^^^^^^^^^\n"
        '  File "/x/dnr_sweep/engine.py", line 244, in _train_one_epoch\n'
        "    raise NonFiniteLossError(\n"
        "dnr_sweep.training.engine.NonFiniteLossError: loss is not finite at epoch 1, step 6\n"
        "second line of the message\n"
    )
    assert (
        st.error_summary(text) == "dnr_sweep.training.engine.NonFiniteLossError: loss is not finite at epoch 1, step 6"
    )
    assert st.error_summary("Failure # 1 (occurred at x)\nRayActorError: the actor died\n") == (
        "RayActorError: the actor died"
    )
    assert st.error_summary("") == "failed (error.txt is empty)"


# ------------------------------------------------------------------------------------------------
# TensorBoard: Tune writes one event file per trial when tensorboardX is installed


@pytest.mark.slow
def test_tensorboard_event_files_hold_every_epoch_metric(real_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folders = [path.parent for path in result_files(real_runs["raw"])]
    assert len(folders) == 2
    for folder in folders:
        assert list(folder.glob("events.out.tfevents.*")), f"no event file in {folder}"
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        tags = set(events.Tags()["scalars"])
        lines = read_lines(folder / rc.TUNE_RESULT_FILE)
        assert len(lines) == 2
        compared = 0
        for key in lines[0]:
            values = [line.get(key) for line in lines]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                continue  # Tune logs numbers only
            if any(math.isnan(v) for v in values) or key in ("timestamp", "pid", "time_total_s", "training_iteration"):
                continue  # NaN is not logged; these are not per-epoch metrics
            tag = f"ray/tune/{key}"
            assert tag in tags, tag
            got = {e.step: e.value for e in events.Scalars(tag)}
            want = {line["training_iteration"]: float(line[key]) for line in lines}
            assert got == pytest.approx(want, rel=1e-6), key
            compared += 1
        assert any(tag.endswith("val_clean_acc") for tag in tags) and any(tag.endswith("loss") for tag in tags)
        assert compared >= 15  # every per-epoch figure of this run, not a handful


# ------------------------------------------------------------------------------------------------
# Dashboard metrics: Ray gauges per epoch, tagged by run and trial (no cluster needed)


def test_dashboard_gauges_hold_this_epochs_figures_tagged_by_run_and_trial(monkeypatch):
    import numpy as np
    from ray.util import metrics

    from dnr_sweep.sweep import dashboard_metrics as dm

    created: list[tuple[str, tuple[str, ...]]] = []
    recorded: list[tuple[str, float, dict[str, str]]] = []
    original_init = metrics.Gauge.__init__

    def spy_init(self, name, description="", tag_keys=None):
        created.append((name, tag_keys))
        original_init(self, name, description, tag_keys)

    monkeypatch.setattr(metrics.Gauge, "__init__", spy_init)
    monkeypatch.setattr(metrics.Gauge, "set", lambda self, value, tags=None: recorded.append((self._name, value, tags)))
    monkeypatch.setattr(dm, "_gauges", None)
    tags = {"run": "digits_quick_20260101-120000", "trial_id": "3f2a1_00004"}
    epoch_3 = {
        "epoch": 3, "final": False, "training_iteration": 3,
        "this_epoch/val_clean_acc": np.float32(91.5), "this_epoch/val_pgd_acc": 40.25, "this_epoch/density": 0.1,
        "this_epoch/epoch_time_s": 1.75, "this_epoch/loss": 0.4,
        # the selected epoch's figures (top level) are not this epoch's: the gauges must not show them
        "selected_epoch": 2, "val_clean_acc": 93.0, "val_pgd_acc": 42.0, "density": 0.12,
    }  # fmt: skip
    dm.report_epoch(epoch_3, run=tags["run"], trial_id=tags["trial_id"])
    assert sorted(recorded) == sorted([
        ("dnr_sweep_epoch", 3.0, tags), ("dnr_sweep_val_clean_acc", 91.5, tags),
        ("dnr_sweep_val_pgd_acc", 40.25, tags), ("dnr_sweep_density", 0.1, tags),
        ("dnr_sweep_epoch_time_s", 1.75, tags),
    ])  # fmt: skip
    assert all(type(value) is float for _, value, _ in recorded)
    # the next epoch was not robust-evaluated: its PGD gauge keeps the last measured value
    recorded.clear()
    epoch_4 = {**epoch_3, "epoch": 4, "this_epoch/val_pgd_acc": float("nan"), "this_epoch/val_clean_acc": 92.0}
    dm.report_epoch(epoch_4, run=tags["run"], trial_id=tags["trial_id"])
    assert {name: value for name, value, _ in recorded} == {
        "dnr_sweep_epoch": 4.0, "dnr_sweep_val_clean_acc": 92.0, "dnr_sweep_density": 0.1,
        "dnr_sweep_epoch_time_s": 1.75,
    }  # fmt: skip
    # created once per process, each with the run and trial tag keys
    assert created == [(name, ("run", "trial_id")) for name in dm.GAUGES]
    # a result without these figures sets nothing and never fails the trial
    recorded.clear()
    assert dm.report_epoch({"done": True}, run="r", trial_id="t") == {} and recorded == []
