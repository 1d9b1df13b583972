"""Reports that compare runs: the same validation-chooses rule across runs, refused when incomparable."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from dnr_sweep import cli
from dnr_sweep.reports.compare import compare, parse_labels, write_comparison
from tests.synthetic_runs import write_synthetic_run
from tests.test_sweep import write_config

OBJECTIVES = {"val_pgd_acc": "max", "compression": "max"}


def brute_force_front(rows: pd.DataFrame, objectives: dict[str, str]) -> set[str]:
    """Trial ids no other row dominates (at least as good everywhere, better somewhere): O(n^2)."""
    sign = {c: 1.0 if d == "max" else -1.0 for c, d in objectives.items()}
    keep = set()
    for i, a in rows.iterrows():
        dominated = False
        for j, b in rows.iterrows():
            if i == j:
                continue
            ge = all(sign[c] * b[c] >= sign[c] * a[c] for c in objectives)
            gt = any(sign[c] * b[c] > sign[c] * a[c] for c in objectives)
            dominated |= ge and gt
        if not dominated:
            keep.add(a["trial_id"])
    return keep


def brute_force_hypervolume_2d(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by maximised 2-D points above ``reference``, by summing grid cells."""
    xs = sorted({reference[0], *(p[0] for p in points)})
    ys = sorted({reference[1], *(p[1] for p in points)})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(zip(xs, xs[1:], strict=False), zip(ys, ys[1:], strict=False)):
        if any(p[0] >= x1 and p[1] >= y1 for p in points):
            area += (x1 - x0) * (y1 - y0)
    return area


@pytest.fixture(scope="module")
def two_real_runs(ray_session, tmp_path_factory):
    """Two small real sweeps on digits: the paper's defaults and a beta variant (DNR vs DNR-C-like)."""
    root = tmp_path_factory.mktemp("compare")
    runs = []
    for name, beta in (("defaults", 0.5), ("clean", 1.0)):
        folder = root / name
        folder.mkdir()
        config = write_config(folder, dnr={"density": 0.2, "beta": beta},
                              search={"dnr.pruning": {"grid": ["irregular", "channel"]},
                                      "dnr.density": {"grid": [0.2, 0.5]}})  # fmt: skip
        assert cli.main(["run", str(config), "--storage", str(root), "--name", f"run_{name}", "--no-dashboard",
                         "--no-report"]) == 0  # fmt: skip
        runs.append(root / f"run_{name}")
    return runs


@pytest.mark.slow
def test_comparison_of_two_real_runs_draws_each_runs_validation_front(two_real_runs, tmp_path):
    comparison = compare(two_real_runs, labels=["dnr", "dnr_c"], objectives=OBJECTIVES)
    selection = comparison.selection
    for label, run in comparison.runs.items():
        finished = run.results[run.results["status"] == "TERMINATED"]
        for pruning, rows in finished.groupby("dnr.pruning"):
            expected = {f"{label}:{t}" for t in brute_force_front(rows, OBJECTIVES)}
            front = selection.fronts[("", f"{pruning} · {label}")]
            assert {t for ids in front["trial_ids"] for t in ids} == expected, (label, pruning)
            # every panel draws the test values of exactly those trials
            chosen = finished.set_index("trial_id").loc[[t.split(":", 1)[1] for t in expected]]
            assert sorted(front["pgd_acc"]) == sorted(chosen["pgd_acc"])
            assert sorted(front["clean_acc"]) == sorted(chosen["clean_acc"])
    # the hypervolume after each trial (creation order), each trial costing its epochs
    for curve, (label, run) in zip(comparison.hypervolume.curves, comparison.runs.items(), strict=True):
        trials = run.results.sort_values("trial_id")
        assert curve.label == label
        assert curve.trial_epochs == tuple(np.cumsum(trials["epochs_completed"]).astype(float))
        for k in range(len(trials)):
            upto = trials.iloc[: k + 1]
            points = [(r["val_pgd_acc"], r["compression"]) for _, r in upto.iterrows() if r["status"] == "TERMINATED"]
            assert curve.hypervolume[k] == pytest.approx(brute_force_hypervolume_2d(points, (0.0, 1.0)))
    written = write_comparison(comparison, tmp_path / "out", formats=["png"])
    names = {p.name for p in written}
    assert {"compression_accuracy.png", "pareto.csv", "hypervolume.png", "hypervolume.csv", "index.html"} <= names
    page = (tmp_path / "out" / "index.html").read_text()
    assert "irregular · dnr_c" in page and "chosen on validation" in page.lower()


def test_runs_with_different_splits_objectives_or_data_are_refused(tmp_path, capsys):
    val_run = write_synthetic_run(tmp_path / "val")
    test_run = write_synthetic_run(tmp_path / "test", select_on="test")
    with pytest.raises(ValueError, match="split that chose"):
        compare([val_run, test_run])
    assert cli.main(["report", str(val_run), str(test_run), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert "split that chose" in err and "Traceback" not in err

    other = write_synthetic_run(tmp_path / "other")
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["report"]["objectives"] = {"pgd_acc": "max", "compression": "max"}
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="differ in objectives"):
        compare([val_run, other])
    config["report"].pop("objectives")
    config["data"]["dataset"] = "cifar100"
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="differ in data set"):
        compare([val_run, other])


def test_labels_and_outputs_are_checked(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "a")
    twin = write_synthetic_run(tmp_path / "b")
    with pytest.raises(ValueError, match="2 unique"):
        parse_labels("x,x", 2)
    for argv, fragment in (
        (["report", str(run), str(twin)], "--out"),
        (["report", str(run), str(run), "--out", str(tmp_path / "o")], "twice"),
        (["report", str(run), str(twin), "--labels", "a", "--out", str(tmp_path / "o")], "2 unique"),
        (["report", str(run), "--labels", "a"], "only for comparing"),
    ):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err, (argv, err)
    assert cli.main(["report", str(run), str(twin), "--labels", "first,second", "--out", str(tmp_path / "o"),
                     "--format", "png"]) == 0  # fmt: skip
    assert "first" in (tmp_path / "o" / "index.html").read_text()


def test_hypervolume_follows_the_order_trials_were_created_not_their_ids(tmp_path):
    """A searcher's trial ids are random; Tune's trial folder numbers give the creation order."""
    from dnr_sweep.reports.chooser import finished_mask
    from dnr_sweep.reports.compare import hypervolume_data
    from dnr_sweep.reports.load import load_run

    run_dir = write_synthetic_run(tmp_path / "run")
    folders = sorted(p for p in run_dir.iterdir() if p.is_dir())
    count = len(folders)
    for folder in folders:  # DNRTrainable_<id>_<n>_... -> number n backwards: the last id was created first
        trainable, trial_id, n, rest = folder.name.split("_", 3)
        folder.rename(run_dir / f"{trainable}_{trial_id}_{count - 1 - int(n)}_{rest}")
    run = load_run(run_dir)
    curve = hypervolume_data({"a": run}, OBJECTIVES).curves[0]
    created = run.results.sort_values("trial_id", ascending=False)
    assert curve.trial_epochs == tuple(np.cumsum(created["epochs_completed"]).astype(float))
    finished = finished_mask(created).to_numpy()
    for k in range(count):
        upto = created.iloc[: k + 1][finished[: k + 1]]
        points = [(r["val_pgd_acc"], r["compression"]) for _, r in upto.iterrows()]
        assert curve.hypervolume[k] == pytest.approx(brute_force_hypervolume_2d(points, (0.0, 1.0)))
