"""The live report: refreshed while a sweep runs, throttled, atomic, and final at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from dnr_sweep.config import validate_sweep
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.reports.load import rebuild_tables
from dnr_sweep.sweep.live import MAX_SHARE, LiveReport
from tests.test_sweep import BASE, write_config

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def live_report(tmp_path, monkeypatch, every_s: float, cost_s: float) -> tuple[LiveReport, FakeClock, list]:
    """A LiveReport on a fake clock whose writing costs ``cost_s`` seconds; the times it wrote."""
    clock = FakeClock()
    live = LiveReport(validate_sweep({**BASE, "report": {"live_every_s": every_s}}), tmp_path, clock=clock)
    writes: list[float] = []

    def write(trials):
        writes.append(clock.now)
        clock.now += cost_s

    monkeypatch.setattr(live, "write", write)
    return live, clock, writes


def test_refreshes_are_throttled_and_follow_finished_trials(tmp_path, monkeypatch):
    live, clock, writes = live_report(tmp_path, monkeypatch, every_s=60, cost_s=1.0)
    for _ in range(100):  # a result every 5 s for 500 s
        clock.now += 5.0
        live.on_trial_result(0, [], None, {})
    assert len(writes) == 8 and writes[0] == 60.0  # once a minute, never more often
    assert all(b - a >= 60 for a, b in zip(writes, writes[1:], strict=False))
    live.on_trial_complete(0, [], None)
    live.on_trial_error(0, [], None)
    assert len(writes) == 10  # always after a finished or failed trial


def test_a_slow_refresh_never_takes_more_than_its_share(tmp_path, monkeypatch):
    live, clock, writes = live_report(tmp_path, monkeypatch, every_s=0, cost_s=3.0)
    for _ in range(1000):  # a result every second, each asking for a refresh
        clock.now += 1.0
        live.on_trial_result(0, [], None, {})
    assert live.spent_s == 3.0 * len(writes) and len(writes) > 10
    assert live.spent_s <= MAX_SHARE * clock.now + 3.0


@pytest.mark.slow
def test_a_running_sweep_exposes_its_results_and_a_live_report(tmp_path):
    config = write_config(
        tmp_path,
        train={**BASE["train"], "epochs": 3, "num_threads": 1},
        search={"dnr.density": {"grid": [0.1, 0.2, 0.3]}},
        tune={**BASE["tune"], "max_concurrent_trials": 1, "metric": "val_clean_acc"},
        report={"live_every_s": 0},
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AIR_NEW_OUTPUT": "0"}
    command = [sys.executable, "-m", "dnr_sweep.cli", "run", str(config), "--storage", str(tmp_path), "--name", "live",
               "--no-dashboard"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run_dir = tmp_path / "live"
    seen = None
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        index = run_dir / rc.REPORT_DIR / "index.html"
        if seen is None and index.is_file() and (run_dir / rc.RESULTS_FILE).is_file():
            results = pd.read_parquet(run_dir / rc.RESULTS_FILE)
            page = index.read_text()
            if (results["status"] == "TERMINATED").any() and "live, " in page and process.poll() is None:
                seen = (results, page)
                shutil.copytree(run_dir / rc.REPORT_DIR, tmp_path / "live_report")
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
    assert seen is not None, "no live results before the sweep ended"
    live_results, live_page = seen
    assert 'http-equiv="refresh"' in live_page and " of 3 trials finished, updated " in live_page
    assert not live_results["status"].isin(["TERMINATED"]).all()  # caught while others still ran or waited
    # the final files are the non-live ones: rebuilt from the trials' result.json they are equal
    final = pd.read_parquet(run_dir / rc.RESULTS_FILE)
    pd.testing.assert_frame_equal(final, rebuild_tables(run_dir)[0])
    final_page = (run_dir / rc.REPORT_DIR / "index.html").read_text()
    assert ">final<" in final_page and 'http-equiv="refresh"' not in final_page
    # what the live files said of a finished trial is what the final files say
    done = live_results[live_results["status"] == "TERMINATED"].set_index("trial_id")
    pd.testing.assert_frame_equal(done, final.set_index("trial_id").loc[done.index, done.columns], check_dtype=False)
