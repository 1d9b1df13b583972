"""The sweep service on Ray Tune: CLI end to end, save/restore, Optuna, ASHA, resume, resources."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dnr_sweep import cli
from dnr_sweep.config import validate_sweep
from dnr_sweep.reports.chooser import select

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "name": "sweep_test",
    "data": {"dataset": "digits", "val_size": 100},
    "model": {"arch": "smallcnn", "width": 0.5},
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05, "lr_milestones": [], "warmup_epochs": 0, "device": "cpu"},
    "dnr": {"density": 0.2, "beta": 0.5},
    "attack": {"train": {"eps": 0.1, "alpha": 0.05, "steps": 2},
               "eval": {"fgsm": {"eps": 0.1}, "pgd": {"eps": 0.1, "alpha": 0.05, "steps": 2}}},
    "tune": {"resources_per_trial": {"cpu": 1}, "max_failures": 0},
}  # fmt: skip


def write_config(tmp_path: Path, **blocks) -> Path:
    data = {**BASE, **blocks}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_two_trial_sweep_end_to_end(ray_session, tmp_path, capsys):
    config = write_config(tmp_path, search={"dnr.pruning": {"grid": ["irregular", "channel"]}},
                          evaluate={"attacks": ["pgd5x2"], "limit": 64}, export=True)  # fmt: skip
    code = cli.main(["run", str(config), "--storage", str(tmp_path / "runs"), "--name", "two", "--no-dashboard"])
    out = capsys.readouterr().out
    assert code == 0, out
    run_dir = tmp_path / "runs" / "two"
    assert (run_dir / "config.yaml").read_text() == config.read_text()
    results = pd.read_parquet(run_dir / "results.parquet")
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert len(results) == 2 and len(epochs) == 4
    assert sorted(results["dnr.pruning"]) == ["channel", "irregular"]
    assert set(results["status"]) == {"TERMINATED"} and not results["early_stopped"].any()
    for column in ("trial_id", "selected_epoch", "clean_acc", "fgsm_acc", "pgd_acc", "compression", "density",
                   "channels_present", "model.arch", "data.dataset"):  # fmt: skip
        assert column in results.columns, column
    assert any(c.startswith("layer_density/") for c in results.columns)
    assert results["density"].between(0.15, 0.25).all()
    assert (results["compression"] > 1).all()
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2], [1, 2]]
    # each trial folder holds its selected model, loadable with weights_only
    models = sorted(run_dir.glob("*/model.pt"))
    assert len(models) == 2
    assert all(isinstance(v, torch.Tensor) for v in torch.load(models[0], weights_only=True).values())
    # the evaluate: block adds a column per attack; export: true shrinks the channel trial
    assert results["pgd5x2_acc"].between(0, 100).all()
    channel = results[results["dnr.pruning"] == "channel"].iloc[0]
    irregular = results[results["dnr.pruning"] == "irregular"].iloc[0]
    assert channel["params_physical"] < sum(p.numel() for p in torch.load(models[0], weights_only=True).values()
                                            if p.dtype.is_floating_point)  # fmt: skip
    assert channel["macs"] > 0 and channel["speedup_cpu"] > 0
    assert math.isnan(irregular["params_physical"])
    assert "Pareto set" in out and "report:" in out
    assert "PGD5X2" in (run_dir / "report" / "pareto.csv").read_text()
    assert (run_dir / "report" / "index.html").is_file()
    # the report can be drawn later without Ray, and the tables rebuilt from Tune's result.json
    # files equal the Parquet ones the run wrote
    from dnr_sweep.reports.load import rebuild_tables

    rebuilt_results, rebuilt_epochs = rebuild_tables(run_dir)
    pd.testing.assert_frame_equal(rebuilt_results, results)
    pd.testing.assert_frame_equal(rebuilt_epochs, epochs)
    assert cli.main(["report", str(run_dir), "--format", "pdf,png"]) == 0
    written = capsys.readouterr().out.split()
    for name in ("compression_accuracy.pdf", "compression_accuracy.png", "channels_present.png", "layer_density.png",
                 "training_curves.png", "pareto.csv", "pareto.tex", "index.html"):  # fmt: skip
        assert str(run_dir / "report" / name) in written, name


def test_trainable_save_restore_round_trips_exactly(ray_session, tmp_path):
    from ray import tune

    from dnr_sweep.config import to_yaml_dict
    from dnr_sweep.sweep.trainable import SweepTrainable

    base = to_yaml_dict(validate_sweep({**BASE, "train": {**BASE["train"], "epochs": 3}}).base_run())
    cls = tune.with_parameters(SweepTrainable, base=base)
    first = cls(config={"dnr.pruning": "channel"})
    first.train()
    first.save_checkpoint(str(tmp_path))
    expected = first.train()
    second = cls(config={"dnr.pruning": "channel"})
    second.load_checkpoint(str(tmp_path))
    got = second.train()
    for key, value in expected.items():
        if key.endswith("time_s") or key in (
            "timestamp",
            "time_this_iter_s",
            "time_total_s",
            "date",
            "pid",
            "time_since_restore",
            "training_iteration",
            "iterations_since_restore",
        ):
            continue  # fmt: skip
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == value, key
    for name, tensor in first.run.model.state_dict().items():
        assert torch.equal(tensor, second.run.model.state_dict()[name]), name
    assert second.reset_config({"dnr.pruning": "irregular"})
    assert second.run.config.dnr.pruning == "irregular" and second.run.epoch == 0
    first.stop()
    second.stop()


def test_optuna_multi_objective_with_asha_keeps_early_stopped_out_of_pareto(ray_session, tmp_path, capsys, monkeypatch):
    """Also a spy on what the searcher and the scheduler receive: validation figures, never test ones."""
    from dnr_sweep.sweep import search, tuner

    seen: dict[str, object] = {}
    build_search_alg, build_scheduler = search.build_search_alg, search.build_scheduler
    monkeypatch.setattr(tuner, "build_search_alg", lambda c: seen.setdefault("searcher", build_search_alg(c)))
    monkeypatch.setattr(tuner, "build_scheduler", lambda c: seen.setdefault("scheduler", build_scheduler(c)))
    config = write_config(
        tmp_path,
        train={**BASE["train"], "epochs": 3},
        search={"dnr.density": {"choice": [0.1, 0.3, 0.6]}, "dnr.beta": {"uniform": [0.3, 0.9]}},
        tune={**BASE["tune"], "num_samples": 4, "max_concurrent_trials": 2,
              "search_alg": {"optuna": {"sampler": "nsga2", "objectives": {"val_pgd_acc": "max", "compression": "max"},
                                        "seed": 0}},
              "scheduler": {"asha": {"metric": "val_clean_acc", "mode": "max", "grace_period": 1,
                                     "reduction_factor": 2}}},
    )  # fmt: skip
    code = cli.main(["run", str(config), "--storage", str(tmp_path), "--name", "mo", "--no-dashboard", "--no-report"])
    assert code == 0, capsys.readouterr().err
    results = pd.read_parquet(tmp_path / "mo" / "results.parquet")
    assert len(results) == 4
    stopped = results[results["early_stopped"]]
    # ASHA with reduction factor 2 stops some of 4 trials after epoch 1 or 2
    assert len(stopped) >= 1
    assert (stopped["status"] == "EARLY_STOPPED").all()
    assert (stopped["epochs_completed"] < 3).all()
    choice = select(results, objectives={"val_pgd_acc": "max", "compression": "max"}, group_by=None)
    on_front = {t for rows in choice.fronts.values() for ids in rows["trial_ids"] for t in ids}
    assert on_front and not on_front & set(stopped["trial_id"])

    # Optuna was told each trial's selected validation figures (what results.parquet holds), not test ones
    searcher, scheduler = seen["searcher"], seen["scheduler"]
    assert searcher._metric == ["val_pgd_acc", "compression"] and scheduler._metric == "val_clean_acc"
    told = {trial_id: trial for trial_id, trial in searcher._ot_trials.items()}
    assert set(told) == set(results["trial_id"])
    study_values = {t.number: t.values for t in searcher._ot_study.trials}
    for _, row in results.iterrows():
        values = study_values[told[row["trial_id"]].number]
        assert values == [row["val_pgd_acc"], row["compression"]], row["trial_id"]
    finished = results[~results["early_stopped"]]
    assert (finished["pgd_acc"] != finished["val_pgd_acc"]).any()  # the spy can tell the splits apart


def test_resources_mapping_packs_fractional_gpus():
    from ray import tune

    from dnr_sweep.sweep.cluster import trial_resources
    from dnr_sweep.sweep.trainable import SweepTrainable

    config = validate_sweep({**BASE, "tune": {"resources_per_trial": {"cpu": 4, "gpu": 0.25}}})
    assert trial_resources(config) == {"cpu": 4.0, "gpu": 0.25}
    wrapped = tune.with_resources(SweepTrainable, trial_resources(config))
    request = wrapped.default_resource_request({})
    assert request.required_resources == {"CPU": 4.0, "GPU": 0.25}


def test_search_rules_map_to_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    from dnr_sweep.sweep.search import param_space

    config = validate_sweep({**BASE, "search": {
        "dnr.density": {"grid": [0.1, 0.5]}, "dnr.pruning": {"choice": ["irregular", "channel"]},
        "dnr.beta": {"uniform": [0.3, 0.7]}, "dnr.rho": {"loguniform": [1e-5, 1e-3]},
        "train.seed": {"randint": [0, 5]}, "dnr.prune_rate": {"quniform": [0.2, 0.6, 0.1]}}})  # fmt: skip
    space = param_space(config)
    assert space["dnr.density"] == {"grid_search": [0.1, 0.5]}
    assert isinstance(space["dnr.pruning"], Categorical) and space["dnr.pruning"].categories == ["irregular", "channel"]
    assert isinstance(space["dnr.beta"], Float) and (space["dnr.beta"].lower, space["dnr.beta"].upper) == (0.3, 0.7)
    assert isinstance(space["dnr.rho"].sampler, type(space["dnr.rho"].sampler)) and space["dnr.rho"].lower == 1e-5
    assert isinstance(space["train.seed"], Integer) and (space["train.seed"].lower, space["train.seed"].upper) == (0, 5)
    assert space["dnr.prune_rate"].sampler.q == 0.1


def test_infeasible_resources_fail_fast(ray_session, tmp_path, capsys):
    config = write_config(tmp_path, tune={"resources_per_trial": {"cpu": 1, "gpu": 1}})
    start = time.monotonic()
    assert cli.main(["run", str(config), "--storage", str(tmp_path), "--name", "nogpu", "--no-dashboard"]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert "resources_per_trial" in err and "GPU" in err
    assert not (tmp_path / "nogpu").exists()


@pytest.mark.slow
def test_interrupted_sweep_is_completed_by_resume(ray_session, tmp_path):
    """SIGINT the driver after its first trial finished; resume runs only what is left."""
    config = write_config(
        tmp_path,
        train={**BASE["train"], "epochs": 3},
        search={"dnr.density": {"grid": [0.1, 0.2, 0.3]}},
        tune={**BASE["tune"], "max_concurrent_trials": 1},
    )
    run_dir = tmp_path / "runs" / "stop"
    env = {**os.environ, "RAY_AIR_NEW_OUTPUT": "0"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "dnr_sweep.cli", "run", str(config), "--storage", str(tmp_path / "runs"),
         "--name", "stop", "--no-dashboard", "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(run_dir.glob("*/model.pt")) and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert list(run_dir.glob("*/model.pt")), "no trial finished in time"
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output
    assert f"dnr-sweep resume {run_dir}" in output
    # dnr-sweep's resume line only: not Ray's Python hint, nor its missing-metrics noise or any traceback
    for noise in ("Tuner.restore(", "Failed to fetch metrics", "FileNotFoundError", "Traceback"):
        assert noise not in output, (noise, output[-3000:])
    finished_before = {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("*/model.pt")}

    assert cli.main(["resume", str(run_dir), "--no-dashboard", "--no-report"]) == 0
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 3 and set(results["status"]) == {"TERMINATED"}
    assert (results["epochs_completed"] == 3).all()
    for name, mtime in finished_before.items():  # finished trials were not run again
        assert (run_dir / name / "model.pt").stat().st_mtime_ns == mtime
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert len(epochs) == 9 and not epochs.duplicated(["trial_id", "epoch"]).any()


@pytest.fixture
def ray_records():
    """The messages of Ray's own records, on the loggers Ray's modules log to (its "ray" handler does not
    propagate), while the test runs."""
    import logging

    import ray  # noqa: F401 - sets up Ray's logging

    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    capture = Capture(level=logging.DEBUG)
    logging.getLogger("ray").addHandler(capture)
    yield seen
    logging.getLogger("ray").removeHandler(capture)


def test_ray_hints_that_mislead_are_filtered_during_fit_and_only_then(ray_records):
    """Ray's own records are filtered only inside :func:`filtered_ray_logs`."""
    import logging

    from dnr_sweep.sweep.ray_logs import filtered_ray_logs

    seen = ray_records
    tune_log, analysis_log = (
        logging.getLogger("ray.tune.tune"),
        logging.getLogger("ray.tune.analysis.experiment_analysis"),
    )
    hint = ("Experiment has been interrupted, but the most recent state was saved.\n"
            'Resume experiment with: Tuner.restore(path="/runs/x", trainable=...)')  # fmt: skip
    missing = "Failed to fetch metrics for 1 trial(s):\n- DNRTrainable_1: FileNotFoundError('Could not fetch metrics')"
    with filtered_ray_logs() as ray_logs:
        tune_log.warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.")
        tune_log.warning(hint)
        analysis_log.warning(missing)
        analysis_log.warning("Failed to fetch metrics for 1 trial(s):\n- t: ValueError('bad json')")
        tune_log.error("Trials did not complete: [t]")
    assert ray_logs.interrupted
    assert not any("Tuner.restore(" in m or "FileNotFoundError" in m for m in seen), seen
    assert any("Stop signal received" in m for m in seen) and any("ValueError" in m for m in seen)
    assert any("Trials did not complete" in m for m in seen)
    tune_log.warning(hint)  # outside fit, Ray's loggers are as they were
    assert seen[-1] == hint


def test_deleting_a_checkpoint_the_dead_driver_deleted_is_not_reported_as_an_error(ray_records):
    import logging

    from dnr_sweep.sweep.ray_logs import filtered_ray_logs

    seen = ray_records
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    with filtered_ray_logs():
        for exc in (FileNotFoundError("Path not found: (fs, /runs/x/t/checkpoint_000001)"), OSError("disk full")):
            try:
                raise exc
            except OSError:
                controller.exception("Trial %s: Error handling checkpoint %s", "t", "result")
    assert len(seen) == 1 and "Error handling checkpoint" in seen[0], seen  # the disk-full one stays


@pytest.mark.parametrize(("sampler", "expected"), [("tpe", "TPESampler"), ("nsga2", "NSGAIISampler"),
                                                   ("gp", "GPSampler"), ("random", "RandomSampler")])  # fmt: skip
def test_optuna_search_algorithms_are_built_as_asked(sampler, expected):
    from dnr_sweep.sweep.search import build_search_alg

    single = validate_sweep({**BASE, "search": {"dnr.beta": {"uniform": [0.3, 0.9]}},
                             "tune": {"search_alg": {"optuna": {"sampler": sampler, "seed": 1}}}})  # fmt: skip
    alg = build_search_alg(single)
    assert type(alg._sampler).__name__ == expected
    assert alg.metric == "val_clean_acc" and alg.mode == "max"
    multi = validate_sweep({**BASE, "search": {"dnr.density": {"choice": [0.1, 0.5]}}, "tune": {"search_alg": {
        "optuna": {"sampler": sampler, "objectives": {"val_pgd_acc": "max", "compression": "max"}}}}})  # fmt: skip
    alg = build_search_alg(multi)
    assert alg.metric == ["val_pgd_acc", "compression"] and alg.mode == ["max", "max"]


def test_nsga2_population_size_reaches_optuna():
    from dnr_sweep.sweep.search import build_search_alg

    config = validate_sweep({**BASE, "search": {"dnr.density": {"choice": [0.1, 0.5]}}, "tune": {"search_alg": {
        "optuna": {"sampler": "nsga2", "population_size": 12, "objectives": {"val_pgd_acc": "max", "compression": "max"}}}}})  # fmt: skip
    assert build_search_alg(config)._sampler._population_size == 12


def test_points_to_evaluate_reach_the_search_algorithm():
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from dnr_sweep.sweep.search import build_search_alg

    points = [{"dnr.beta": 0.5, "dnr.density": 0.1}, {"dnr.beta": 0.7, "dnr.density": 0.5}]
    search = {"dnr.density": {"choice": [0.1, 0.5]}, "dnr.beta": {"uniform": [0.2, 1.0]}}
    optuna = validate_sweep({**BASE, "search": search, "tune": {"num_samples": 4, "points_to_evaluate": points,
                                                                "search_alg": {"optuna": {"sampler": "tpe"}}}})  # fmt: skip
    assert build_search_alg(optuna)._points_to_evaluate == points
    plain = validate_sweep({**BASE, "search": {**search, "train.seed": {"grid": [0, 1]}},
                            "tune": {"num_samples": 2, "points_to_evaluate": points, "metric": None}})  # fmt: skip
    generator = build_search_alg(plain)
    assert isinstance(generator, BasicVariantGenerator) and generator._points_to_evaluate == points
    assert plain.grid_size() == 4  # each point crossed with the seed grid


def test_grouped_asha_is_built_when_asked():
    from ray.tune.schedulers import ASHAScheduler

    from dnr_sweep.sweep.grouped_asha import GroupedASHAScheduler
    from dnr_sweep.sweep.search import build_scheduler

    search = {"dnr.density": {"choice": [0.1, 0.5]}}
    plain = validate_sweep({**BASE, "search": search, "tune": {"scheduler": {"asha": {"grace_period": 1}}}})
    assert type(build_scheduler(plain)) is ASHAScheduler
    grouped = validate_sweep({**BASE, "search": search,
                              "tune": {"scheduler": {"asha": {"grace_period": 1, "group_by": ["dnr.density"]}}}})  # fmt: skip
    scheduler = build_scheduler(grouped)
    assert isinstance(scheduler, GroupedASHAScheduler) and scheduler.metric == "val_clean_acc"


class _Trial:
    def __init__(self, trial_id: str, config: dict):
        self.trial_id, self.config = trial_id, config


def _simulate_asha(route, trials, accuracy, max_t=9):
    """Feed every trial's per-epoch accuracy to ``route(trial)`` (its scheduler); decisions and epochs run."""
    for trial in trials:
        route(trial).on_trial_add(None, trial)
    decisions, reached, alive = [], {}, list(trials)
    for step in range(1, max_t + 1):
        for trial in list(alive):
            result = {"training_iteration": step, "acc": accuracy[trial.trial_id][step - 1]}
            decision = route(trial).on_trial_result(None, trial, result)
            decisions.append((trial.trial_id, step, decision))
            reached[trial.trial_id] = step
            if decision == "STOP":
                alive.remove(trial)
                route(trial).on_trial_complete(None, trial, result)
    return decisions, reached


def test_grouped_asha_decides_like_one_tune_asha_per_group():
    """Oracle: Tune's own ASHA, one per group, fed only that group's trials, takes the same decisions."""
    import random

    from ray.tune.schedulers import ASHAScheduler

    from dnr_sweep.sweep.grouped_asha import GroupedASHAScheduler

    settings = {"metric": "acc", "mode": "max", "max_t": 9, "grace_period": 1, "reduction_factor": 3}
    rng = random.Random(0)
    trials = [_Trial(f"t{i:02d}", {"dnr.density": rng.choice([0.1, 0.5]), "dnr.beta": rng.random()})
              for i in range(30)]  # fmt: skip
    # the sparse group is 30 points less accurate by design; noise decides within a group
    accuracy = {t.trial_id: [60.0 + 3 * step - (30.0 if t.config["dnr.density"] == 0.1 else 0.0) + rng.gauss(0, 5)
                             for step in range(1, 10)] for t in trials}  # fmt: skip

    grouped = GroupedASHAScheduler(["dnr.density"], **settings)
    ours, reached = _simulate_asha(lambda trial: grouped, trials, accuracy)
    oracles = {0.1: ASHAScheduler(**settings), 0.5: ASHAScheduler(**settings)}
    theirs, _ = _simulate_asha(lambda trial: oracles[trial.config["dnr.density"]], trials, accuracy)
    assert ours == theirs
    assert {d for _, _, d in ours} == {"CONTINUE", "STOP"}

    # one shared ASHA stops the sparse trials first; grouped, some of them run every epoch
    shared = ASHAScheduler(**settings)
    _, reached_shared = _simulate_asha(lambda trial: shared, trials, accuracy)
    sparse = [t.trial_id for t in trials if t.config["dnr.density"] == 0.1]
    assert sum(reached[t] == 9 for t in sparse) >= 1
    assert sum(reached[t] == 9 for t in sparse) > sum(reached_shared[t] == 9 for t in sparse)


@pytest.mark.parametrize(
    ("search_alg", "group_by"),
    [(None, None), ({"optuna": {"sampler": "tpe", "seed": 0}}, None), (None, ["dnr.pruning"])],
    ids=["variants", "optuna-single", "grouped"],
)
def test_single_objective_asha_sweep_runs(ray_session, tmp_path, capsys, search_alg, group_by):
    """Regression (issue 27): Tune takes metric and mode once; ASHA carries them, so TuneConfig must not
    (every single-objective ASHA sweep crashed at ``run`` with "You passed a `metric` or `mode` argument")."""
    search = {"dnr.pruning": {"choice" if search_alg else "grid": ["irregular", "channel"]}}
    asha = {"grace_period": 1, "reduction_factor": 2, **({"group_by": group_by} if group_by else {})}
    config = write_config(
        tmp_path,
        train={**BASE["train"], "epochs": 1},
        search=search,
        tune={**BASE["tune"], "num_samples": 2 if search_alg else 1, "max_concurrent_trials": 2,
              "metric": "val_clean_acc", "mode": "max", "scheduler": {"asha": asha},
              **({"search_alg": search_alg} if search_alg else {})},
    )  # fmt: skip
    code = cli.main(["run", str(config), "--storage", str(tmp_path), "--name", "asha", "--no-dashboard", "--no-report"])
    captured = capsys.readouterr()
    assert code == 0, captured.err + captured.out
    assert "You passed a `metric`" not in captured.err + captured.out
    results = pd.read_parquet(tmp_path / "asha" / "results.parquet")
    assert len(results) == 2 and results["val_clean_acc"].notna().all()
