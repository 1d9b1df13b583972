"""Shared fixtures: one local Ray for the whole session (starting Ray costs 4-6 s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_ray(monkeypatch):
    """Ray must not start: the refusals under test happen before it."""
    from dnr_sweep.sweep import cluster

    def refuse(**_):
        raise AssertionError("Ray must not start for a refused input")

    monkeypatch.setattr(cluster, "start_ray", refuse)


@pytest.fixture(scope="session")
def ray_session():
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024,
             logging_level="WARNING")  # fmt: skip
    yield ray
    ray.shutdown()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "may_skip(reason): this test may skip (only for skips that lose no check, e.g. a GPU-only path)"
    )
    config.addinivalue_line(
        "markers", "needs_tune: needs Ray Tune or Optuna; left out of tests/torch_min.sh (the GPU machine has neither)"
    )


def pytest_collection_modifyitems(config, items):
    """Every test that starts the session's Ray needs Ray Tune: it carries ``needs_tune``."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_tune)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test checks nothing: an oracle test (torchattacks, Torch-Pruning, AutoAttack, ruff) that
    skips because its reference is missing fails instead. ``make test`` installs every reference."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not item.get_closest_marker("may_skip") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} skipped ({reason}); a skipped check checks nothing: install the test extras (make test)"
        )
