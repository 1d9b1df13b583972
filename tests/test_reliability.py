"""Faults lose nothing, bad input fails fast and clearly, the dashboard stays on loopback behind a token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dnr_sweep import cli
from dnr_sweep.config import validate_sweep
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.sweep import trainable
from dnr_sweep.training.engine import TrainingRun
from tests.test_config import BAD_CONFIGS
from tests.test_sweep import BASE, write_config

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# Faults


def killing_trainable(kill_at_epoch: int) -> type:
    """A test-only SweepTrainable that SIGKILLs its own worker in the middle of epoch ``kill_at_epoch``
    the first time it gets there (a ``.killed`` marker in the trial folder remembers it).

    Defined in a function, so cloudpickle ships the class by value to Ray's workers."""

    class KillingTrainable(trainable.SweepTrainable):
        def epoch_progress(self):
            marker = self.trial_dir / ".killed"
            if self.run.epoch + 1 != kill_at_epoch or marker.exists():
                return None

            def progress(done: int, total: int) -> None:
                if done == max(1, total // 2):
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGKILL)

            return progress

    return KillingTrainable


@pytest.mark.slow
def test_killed_trial_restarts_from_its_checkpoint_and_ends_identical(ray_session, tmp_path, monkeypatch, capsys):
    train = {**BASE["train"], "epochs": 3, "num_threads": 1, "lr_milestones": [2]}
    config_path = write_config(tmp_path, train=train, tune={**BASE["tune"], "max_failures": 2})
    monkeypatch.setattr(trainable, "SweepTrainable", killing_trainable(kill_at_epoch=2))
    code = cli.main(["run", str(config_path), "--storage", str(tmp_path), "--name", "kill", "--no-dashboard",
                     "--no-report"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    run_dir = tmp_path / "kill"
    trial_dirs = [p.parent for p in run_dir.glob("*/model.pt")]
    assert len(trial_dirs) == 1 and (trial_dirs[0] / ".killed").exists()  # the kill really happened
    results = pd.read_parquet(run_dir / "results.parquet")
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert results["status"].tolist() == ["TERMINATED"] and results["epochs_completed"].tolist() == [3]
    assert epochs["epoch"].tolist() == [1, 2, 3]

    # an uninterrupted run with the same seed, in this process
    reference = TrainingRun(validate_sweep(yaml.safe_load(config_path.read_text())).base_run())
    while not reference.finished:
        reference.train_epoch()
    restored = torch.load(trial_dirs[0] / "model.pt", weights_only=True)
    for name, value in reference.selected_state_dict().items():
        assert torch.equal(value, restored[name]), name
    final = reference.final_metrics()
    for key in ("clean_acc", "pgd_acc", "val_clean_acc", "val_pgd_acc", "compression"):
        assert results[key].iloc[0] == final[key], key


def _first_trial_finished(run_dir: Path) -> bool:
    return bool(list(run_dir.glob("*/model.pt")))


def _second_trial_mid_way(run_dir: Path) -> bool:
    """A trial that has recorded an epoch but not finished, after another one finished."""
    if not _first_trial_finished(run_dir):
        return False
    for record in run_dir.glob(f"*/{rc.TRIAL_EPOCHS_FILE}"):
        if not (record.parent / "model.pt").exists() and json.loads(record.read_text() or "[]"):
            return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("kill_when", [_first_trial_finished, _second_trial_mid_way], ids=["between", "mid-trial"])
def test_killed_driver_is_completed_by_resume_without_rerunning(ray_session, tmp_path, kill_when):
    config_path = write_config(
        tmp_path, train={**BASE["train"], "epochs": 3},
        search={"dnr.density": {"grid": [0.1, 0.2, 0.3]}}, tune={**BASE["tune"], "max_concurrent_trials": 1},
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "dead"
    driver = subprocess.Popen(
        [sys.executable, "-m", "dnr_sweep.cli", "run", str(config_path), "--storage", str(tmp_path / "runs"),
         "--name", "dead", "--no-dashboard", "--no-report"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not kill_when(run_dir) and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    assert kill_when(run_dir), f"not reached in time: {kill_when.__doc__ or kill_when.__name__}"
    if kill_when is _first_trial_finished:
        time.sleep(1.0)  # let Tune snapshot the experiment once after the trial ended
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    finished = {p.parent.name: (p.stat().st_mtime_ns, json.loads((p.parent / "metrics.json").read_text()))
                for p in run_dir.glob("*/model.pt")}  # fmt: skip
    if kill_when is _second_trial_mid_way:  # what Tune's periodic copy of its driver-staged result.json may leave
        for lines in run_dir.glob(f"*/{rc.TUNE_RESULT_FILE}"):
            if not (lines.parent / "model.pt").exists():
                lines.write_text("".join(lines.read_text().splitlines(keepends=True)[:1]))

    assert cli.main(["resume", str(run_dir), "--no-dashboard", "--no-report"]) == 0
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 3 and set(results["status"]) == {"TERMINATED"}
    assert (results["epochs_completed"] == 3).all()
    for name, (mtime, metrics) in finished.items():
        assert (run_dir / name / "model.pt").stat().st_mtime_ns == mtime  # not trained again
        row = results[results["trial_id"] == name.split("_")[1] + "_" + name.split("_")[2]]
        assert row["clean_acc"].tolist() == [metrics["clean_acc"]]
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert len(epochs) == 9 and not epochs.duplicated(["trial_id", "epoch"]).any()


def logging_trainable() -> type:
    """A test-only SweepTrainable that appends each epoch it trains to ``trained.log`` in its trial folder
    (a finished trial reporting its result again trains nothing). Shipped by value, like :func:`killing_trainable`."""

    class LoggingTrainable(trainable.SweepTrainable):
        def step(self):
            trains = self.last_result is None
            result = super().step()
            if trains:
                with open(self.trial_dir / "trained.log", "a") as log:
                    log.write(f"{result['epoch']} {os.getpid()}\n")
            return result

    # the run folder's reader accepts only trials of dnr-sweep's trainable, by name, as Tune records it
    LoggingTrainable.__name__ = LoggingTrainable.__qualname__ = trainable.SweepTrainable.__name__
    return LoggingTrainable


#: the sweep's driver in a process of its own, training with :func:`logging_trainable`
LOGGING_DRIVER = textwrap.dedent("""
    import sys
    from dnr_sweep.sweep import trainable
    from tests.test_reliability import logging_trainable
    trainable.SweepTrainable = logging_trainable()
    from dnr_sweep import cli
    sys.exit(cli.main(sys.argv[1:]))
""")


def trained_epochs(run_dir: Path) -> dict[str, list[tuple[int, int]]]:
    """Every epoch each trial trained, in order, with the worker process that trained it, by trial id (a
    trial Tune created again after a resume has a second folder with the same id)."""
    trained: dict[str, list[tuple[int, int]]] = {}
    for log in sorted(run_dir.glob("*/trained.log"), key=lambda p: p.stat().st_mtime):
        trial_id = "_".join(log.parent.name.split("_")[1:3])
        lines = [line.split() for line in log.read_text().splitlines() if len(line.split()) == 2]
        trained.setdefault(trial_id, []).extend((int(epoch), int(pid)) for epoch, pid in lines)
    return trained


@pytest.mark.slow
def test_a_killed_driver_costs_at_most_the_epoch_in_flight(ray_session, tmp_path, monkeypatch):
    """A sweep (4 trials x 3 epochs, 2 at a time) whose driver's process group is SIGKILLed three times:
    early (2 epochs trained), mid-way (5) and late (9), each time resumed. However stale Tune's experiment
    snapshot was at each kill, every trial trains again at most the last epoch it had finished (its checkpoint
    may not have been written yet), never earlier ones; the tables are whole."""
    config_path = write_config(
        tmp_path, train={**BASE["train"], "epochs": 3},
        search={"dnr.density": {"grid": [0.1, 0.2, 0.3, 0.4]}},
        tune={**BASE["tune"], "max_concurrent_trials": 2, "checkpoint_every": 1},
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "dead"
    for kill_after in (2, 5, 9):
        command = (["resume", str(run_dir)] if run_dir.exists()
                   else ["run", str(config_path), "--storage", str(tmp_path / "runs"), "--name", "dead"])  # fmt: skip
        driver = subprocess.Popen([sys.executable, "-c", LOGGING_DRIVER, *command, "--no-dashboard", "--no-report"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                                  start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 240
        while sum(map(len, trained_epochs(run_dir).values())) < kill_after and driver.poll() is None:
            assert time.monotonic() < deadline, f"the sweep did not train {kill_after} epochs in time"
            time.sleep(0.02)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        assert driver.returncode == -signal.SIGKILL, f"the driver ended before the kill after {kill_after} epochs"

    monkeypatch.setattr(trainable, "SweepTrainable", logging_trainable())
    assert cli.main(["resume", str(run_dir), "--no-dashboard", "--no-report"]) == 0
    trained = trained_epochs(run_dir)
    assert len(trained) == 4 and len({pid for log in trained.values() for _, pid in log}) > 2  # 4 drivers' workers
    for trial_id, log in trained.items():
        # a worker may outlive its killed driver for a moment and finish the epoch it had in flight: where the
        # worker changes, the new one trains that epoch again at most, never an earlier one
        for (previous, worker), (epoch, pid) in zip([(0, None), *log], log, strict=False):
            allowed = {previous, previous + 1} if worker is not None and pid != worker else {previous + 1}
            assert epoch in allowed, f"trial {trial_id} trained epochs {[e for e, _ in log]} (workers {log})"
        assert log[-1][0] == 3
    results = pd.read_parquet(run_dir / "results.parquet")
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert len(results) == 4 and set(results["status"]) == {"TERMINATED"} and (results["epochs_completed"] == 3).all()
    assert len(epochs) == 12 and not epochs.duplicated(["trial_id", "epoch"]).any()


def test_nan_trial_fails_clearly_and_the_others_finish(ray_session, tmp_path, capsys):
    config_path = write_config(tmp_path, search={"train.lr": {"grid": [0.05, 1.0e6]}},
                               dnr={"density": 0.2, "beta": 1.0})  # fmt: skip
    code = cli.main(["run", str(config_path), "--storage", str(tmp_path), "--name", "nan", "--no-dashboard",
                     "--no-report"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert "1 trial(s) failed" in captured.err
    assert "loss is not finite at epoch 1, step" in captured.err
    results = pd.read_parquet(tmp_path / "nan" / "results.parquet")
    assert sorted(results["status"]) == ["ERROR", "TERMINATED"]
    assert results.loc[results["status"] == "TERMINATED", "train.lr"].tolist() == [0.05]


def test_results_are_written_atomically(tmp_path, monkeypatch):
    from dnr_sweep.reports.load import write_parquet_atomic

    target = tmp_path / "results.parquet"
    write_parquet_atomic(pd.DataFrame({"a": [1, 2, 3]}), target)
    before = target.read_bytes()

    def crash(self, handle, **kwargs):  # the writer hands over its temporary file, open
        handle.write(b"PAR1 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(OSError, match="disk full"):
        write_parquet_atomic(pd.DataFrame({"a": [9]}), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.parquet"]


# ------------------------------------------------------------------------------------------------
# Bad input: every case through `run` too, before Ray starts


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_run_before_ray(tmp_path, case, capsys, no_ray):
    text, fragments = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text) + "\n")
    start = time.monotonic()
    assert cli.main(["run", str(path), "--storage", str(tmp_path / "runs")]) == 2
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert str(path) in err and fragments[0] in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


EXTRA_BAD_RUNS = {
    "dataset files missing": ({"data": {"dataset": "cifar10", "root": "{tmp}/nodata", "download": False}}, [],
                              ["cifar10 not found", "nodata", "data.download: true"]),
    "name escaping storage": ({}, ["--name", "../x"], ["--name", "no '/' or '..'"]),
    "run folder already used": ({}, ["--name", "taken"], ["already holds a run", "dnr-sweep resume"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(EXTRA_BAD_RUNS))
def test_bad_run_inputs_fail_before_ray(tmp_path, case, capsys, no_ray):
    blocks, args, fragments = EXTRA_BAD_RUNS[case]
    blocks = json.loads(json.dumps(blocks).replace("{tmp}", str(tmp_path)))
    path = write_config(tmp_path, **blocks)
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "config.yaml").write_text("x")
    start = time.monotonic()
    assert cli.main(["run", str(path), "--storage", str(tmp_path / "runs"), *args]) == 2
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# Security: the dashboard listens on loopback only and refuses requests without Ray's token

PROBE = textwrap.dedent("""
    import json, os, urllib.error, urllib.request
    import psutil, ray
    from dnr_sweep.sweep.cluster import start_ray
    url = start_ray(address=None, dashboard=True, dashboard_host="127.0.0.1", log=lambda _: None)
    port = int(url.rsplit(":", 1)[1])
    listening = sorted({c.laddr.ip for c in psutil.net_connections(kind="inet")
                        if c.status == psutil.CONN_LISTEN and c.laddr.port == port})
    codes = {}
    for path in ("/api/jobs/", "/api/version"):
        try:
            codes[path] = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).status
        except urllib.error.HTTPError as exc:
            codes[path] = exc.code
    ray.shutdown()
    print(json.dumps({"url": url, "listening": listening, "codes": codes}))
""")


@pytest.mark.slow
def test_dashboard_listens_on_loopback_and_requires_the_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["listening"] == ["127.0.0.1"], report
    assert report["codes"]["/api/jobs/"] in (401, 403), report  # the job API refuses a request without the token


def test_embedded_ray_binds_the_dashboard_to_loopback_unless_asked(monkeypatch):
    import ray

    from dnr_sweep.sweep import cluster

    calls = []

    class Context:
        dashboard_url = "127.0.0.1:8265"

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs) or Context())
    said: list[str] = []
    cluster.start_ray(address=None, dashboard=True, dashboard_host="127.0.0.1", log=said.append)
    assert calls[-1]["address"] == "local" and calls[-1]["dashboard_host"] == "127.0.0.1"
    assert not any("warning" in line for line in said)
    assert any("ray get-auth-token" in line for line in said)
    cluster.start_ray(address=None, dashboard=True, dashboard_host="0.0.0.0", log=said.append)
    assert calls[-1]["dashboard_host"] == "0.0.0.0"
    assert any("warning" in line and "job-submission API" in line for line in said)
    # the CLI's default is loopback
    args = cli.build_parser().parse_args(["run", "x.yaml"])
    assert args.dashboard_host == "127.0.0.1"
