"""build_report end to end on a synthetic run directory, the report's choice, and the Pareto tables."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dnr_sweep.reports import build_report
from dnr_sweep.reports.chooser import select
from dnr_sweep.reports.protocol import selection_column
from dnr_sweep.reports.settings import resolve_settings, with_selected_figures
from dnr_sweep.reports.tables import CHOSEN_ON, SEEDS, pareto_table, to_latex
from tests.synthetic_runs import SEEDED_DENSITIES, write_synthetic_run

FIGURES = ("compression_accuracy", "channels_present", "layer_density", "training_curves", "attack_strength")
T_975_2 = 4.302652729911275  # Student t quantile t(0.975, 2)
NAN = float("nan")
REPO = Path(__file__).resolve().parents[1]


def test_build_report_writes_every_file(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "exp", parquet=True)
    written = build_report(run_dir)
    names = {p.relative_to(run_dir).as_posix() for p in written}
    expected = {"report/pareto.csv", "report/pareto.tex", "report/index.html"}
    expected |= {f"report/{stem}.{ext}" for stem in FIGURES for ext in ("pdf", "png")}
    assert names == expected
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert (run_dir / "report" / "compression_accuracy.pdf").read_bytes().startswith(b"%PDF")
    html = (run_dir / "report" / "index.html").read_text()
    for stem in FIGURES:
        assert f'src="{stem}.png"' in html
    assert "<table" in html and "unpruned baseline" in html
    assert "Pareto set chosen on validation accuracy; test accuracy shown" in html
    assert "paper protocol" not in html
    assert "± " in html  # seeded configurations show mean ± CI

    table = pd.read_csv(run_dir / "report" / "pareto.csv")
    assert set(table[CHOSEN_ON]) == {"validation"} and set(table["Shown"]) == {"test"}
    seeded = table["Compression (×)"].round(2).isin([round(1 / (d * 0.95 + 0.05), 2) for d in SEEDED_DENSITIES])
    assert (table.loc[seeded, SEEDS] == 3).all() and (table.loc[~seeded, SEEDS] == 1).all()
    assert table.loc[seeded, "Clean ±95% CI"].notna().all() and table.loc[~seeded, "Clean ±95% CI"].isna().all()
    assert table["Pruning type"].tolist()[0] == "unpruned baseline"

    # overrides: a second build elsewhere, PNG only, one accuracy
    out = tmp_path / "elsewhere"
    again = build_report(run_dir, out_dir=out, formats=("png",), y=["pgd_acc"])
    assert {p.name for p in again} == {f"{s}.png" for s in FIGURES} | {"pareto.csv", "pareto.tex", "index.html"}
    table = pd.read_csv(out / "pareto.csv")
    assert "PGD" in table.columns and "Clean" not in table.columns


def test_build_report_from_result_json_alone(tmp_path):
    """Tables rebuilt from Tune's result.json lines give the same Pareto table as the true Parquet."""
    run_dir = write_synthetic_run(tmp_path / "exp", parquet=False)
    written = build_report(run_dir, formats=["png"])
    assert {"results.parquet", "epochs.parquet"} <= {p.name for p in written}
    truth = write_synthetic_run(tmp_path / "truth", parquet=True)
    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir / "report" / "pareto.csv"), pd.read_csv(build_report(truth, formats=["png"])[-3])
    )


def test_paper_protocol_is_labelled_wherever_its_numbers_appear(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "exp", parquet=True, select_on="test")
    build_report(run_dir)
    report = run_dir / "report"
    html = (report / "index.html").read_text()
    assert html.count("selected on test (paper protocol)") >= 5  # meta, table note, every figure caption
    assert "test_clean_acc (max)" in html
    assert "selected on test (paper protocol)" in (report / "pareto.tex").read_text()
    assert set(pd.read_csv(report / "pareto.csv")[CHOSEN_ON]) == {"test (paper protocol)"}


def test_unknown_y_is_a_value_error_before_anything_is_written(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "exp", parquet=True)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"report y.*'pgd50_acc'.*no trial reports; valid: clean_acc, fgsm_acc, pgd_acc, "
                                         r"val_clean_acc.*autoattack_acc"):  # fmt: skip
        build_report(run_dir, out_dir=out, y=["clean_acc", "pgd50_acc"])
    assert not out.exists()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["report"]["y"] = ["autoattack"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="'autoattack'"):
        build_report(run_dir, out_dir=out)
    assert not out.exists()


def test_settings_come_from_config_then_arguments():
    config = {
        "report": {
            "x": "compression",
            "y": ["clean_acc", "pgd_acc"],
            "group_by": "dnr.pruning",
            "formats": ["svg"],
        }
    }
    settings = resolve_settings(config)
    assert settings.y == ("clean_acc", "pgd_acc") and settings.formats == ("svg",)
    assert settings.objectives is None  # the default: x and every y, on their validation twins
    settings = resolve_settings(config, y=["fgsm_acc"], formats=["pdf"], objectives={"fgsm_acc": "max"})
    assert settings.y == ("fgsm_acc",) and settings.formats == ("pdf",)
    assert settings.objectives == {"fgsm_acc": "max"}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\].*valid keys"):
        resolve_settings({"report": {"colour": "red"}})
    with pytest.raises(ValueError, match="jpeg.*pdf, png, svg"):
        resolve_settings({}, formats=["jpeg"])
    with pytest.raises(ValueError, match="'up'"):
        resolve_settings({}, objectives={"clean_acc": "up"})


def test_build_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    pd.DataFrame({"trial_id": pd.Series([], dtype=str)}).to_parquet(tmp_path / "empty" / "results.parquet")
    pd.DataFrame({"trial_id": pd.Series([], dtype=str), "epoch": pd.Series([], dtype=int)}).to_parquet(
        tmp_path / "empty" / "epochs.parquet"
    )
    with pytest.raises(ValueError, match="holds no trials"):
        build_report(tmp_path / "empty")


def test_report_block_in_config_yaml_is_used(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "exp", parquet=True)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["report"] = {"y": ["fgsm_acc"], "formats": ["png"]}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    written = build_report(run_dir, out_dir=tmp_path / "r")
    assert not [p for p in written if p.suffix == ".pdf"]
    assert "FGSM" in pd.read_csv(tmp_path / "r" / "pareto.csv").columns


# --------------------------------------------------------------------------------- the report's choice


@pytest.fixture
def table() -> pd.DataFrame:
    """Validation and test disagree: by test figures the table would be d2, i3, c2 instead."""
    return pd.DataFrame(
        {
            "trial_id": ["d", "d2", "i1", "i2", "i3", "c1", "c2", "c3", "c4"],
            "status": ["TERMINATED"] * 9,
            "early_stopped": [False] * 9,
            "model.arch": ["vgg16"] * 9,
            "data.dataset": ["cifar10"] * 9,
            "dnr.pruning": ["irregular", "channel", "irregular", "irregular", "irregular"] + ["channel"] * 4,
            "dnr.density": [1.0, 1.0, 0.1, 0.05, 0.05, 0.5, 0.5, 0.5, 0.5],
            "dnr.beta": [0.5, 0.5, 0.5, 0.5, 0.7, 0.5, 0.7, 0.5, 0.5],
            "train.seed": [0, 0, 0, 0, 0, 0, 0, 1, 2],
            "selected_on": ["val"] * 9,
            "compression": [1.0, 1.0, 9.171, 20.854, 20.0, 1.4512, 1.4512, 1.4512, 1.4512],
            "channels_present": [1.0, 1.0, 0.99, 0.9852, 0.97, 0.74, 0.75, 0.76, 0.72],
            "val_clean_acc": [87.0, 86.0, 87.5, 87.0, 86.0, 86.0, 85.0, 86.5, 85.5],
            "val_fgsm_acc": [51.0, 50.0, 52.0, 53.0, 52.0, 51.0, 50.0, 51.5, 50.5],
            "val_pgd_acc": [42.0, 41.0, 42.5, 43.0, 42.0, 42.0, 41.0, 42.5, 41.5],
            "clean_acc": [86.1, 88.0, 86.5, 86.74, 88.0, 85.83, 87.0, 86.0, 84.0],
            "fgsm_acc": [50.0, 52.0, 52.0, 52.92, 54.0, 51.03, 52.0, 51.0, 50.0],
            "pgd_acc": [41.0, 43.0, 42.0, 43.21, 44.0, 42.36, 43.0, 42.0, 41.0],
            "autoattack_acc": [38.0, 39.0, 39.0, 40.1, 41.0, 39.5, 40.0, 39.0, 38.0],
        }
    )


def test_pareto_table_lists_the_validation_choice_with_seed_intervals(table):
    t = pareto_table(table)
    assert list(t.columns) == [
        "Trial", "Model", "Dataset", "Pruning type", "Seeds", "Compression (×)", "Channels present (%)",
        "Clean", "Clean ±95% CI", "FGSM", "FGSM ±95% CI", "PGD", "PGD ±95% CI",
        "AutoAttack", "AutoAttack ±95% CI", "Chosen on", "Shown",
    ]  # fmt: skip
    # d beats d2 on validation; i3 is dominated by i2 on validation; c2 by c1's seed mean (86, 51, 42)
    assert t["Trial"].tolist() == ["d", "i1", "i2", "c1 c3 c4"]
    assert t["Pruning type"].tolist() == ["unpruned baseline", "irregular", "irregular", "channel"]
    assert t[SEEDS].tolist() == [1, 1, 1, 3]
    assert t.loc[2, "Compression (×)"] == 20.85 and t.loc[2, "Channels present (%)"] == 98.52
    assert t.loc[2, "Clean"] == 86.74 and np.isnan(t.loc[2, "Clean ±95% CI"])  # one seed: no interval
    mean = (85.83 + 86.0 + 84.0) / 3
    s = math.sqrt(((85.83 - mean) ** 2 + (86.0 - mean) ** 2 + (84.0 - mean) ** 2) / 2)
    assert t.loc[3, "Clean"] == round(mean, 2)
    assert t.loc[3, "Clean ±95% CI"] == round(T_975_2 * s / math.sqrt(3), 2)
    assert t.loc[3, "Channels present (%)"] == round((74 + 76 + 72) / 3, 2)
    assert set(t["Chosen on"]) == {"validation"} and set(t["Shown"]) == {"test"}


def test_pareto_table_objectives_map_to_validation_twins(table):
    sel = select(table, objectives={"compression": "max", "pgd_acc": "max"})
    assert sel.objectives == {"compression": "max", "val_pgd_acc": "max"}
    # on (compression, val PGD) i2 dominates i1; by test PGD, i3 (20x, 44.0) would join i2
    assert pareto_table(sel)["Trial"].tolist() == ["d", "i2", "c1 c3 c4"]
    with pytest.raises(ValueError, match=r"'autoattack_acc' \(chosen on its val twin 'val_autoattack_acc'\)"):
        select(table, objectives={"autoattack_acc": "max"})


def test_unfinished_trials_never_enter_a_front_or_baseline(table):
    better = table.iloc[[0, 4]].assign(
        trial_id=["dx", "ix"], val_clean_acc=99.0, val_fgsm_acc=99.0, val_pgd_acc=99.0, compression=[1.0, 50.0],
        **{"dnr.beta": 0.9},
    )  # fmt: skip
    better["status"] = ["ERROR", "TERMINATED"]
    better["early_stopped"] = [False, True]
    t = pareto_table(pd.concat([table, better], ignore_index=True))
    assert t["Trial"].tolist() == ["d", "i1", "i2", "c1 c3 c4"]


def test_latex_shows_mean_ci_seeds_and_the_split(table):
    tex = to_latex(pareto_table(table), caption="DNR on CIFAR-10 (VGG16)", label="tab:dnr")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert (r"\caption{DNR on CIFAR-10 (VGG16) Pareto set chosen on validation accuracy; test accuracy shown. "
            r"Mean $\pm$ 95\% CI over seeds.}") in tex  # fmt: skip
    assert r"\multicolumn{4}{c}{Test accuracy (\%)}" in tex
    assert r"vgg16 & cifar10 & irregular & 1 & 20.85$\times$ & 98.52 & 86.74 & 52.92 & 43.21 & 40.10 \\" in tex
    assert r"vgg16 & cifar10 & channel & 3 & 1.45$\times$ & 74.00 & 85.28 $\pm$ 2.75 &" in tex
    assert "Trial" not in tex
    assert r"\cmidrule(lr){7-10}" in tex


def test_paper_protocol_table_is_labelled(table):
    paper = table.rename(columns={f"val_{k}_acc": f"test_{k}_acc" for k in ("clean", "fgsm", "pgd")})
    t = pareto_table(paper.assign(selected_on="test"))
    assert set(t["Chosen on"]) == {"test (paper protocol)"}
    assert t["Trial"].tolist() == ["d", "i1", "i2", "c1 c3 c4"]
    assert "selected on test (paper protocol)" in to_latex(t)


def test_selection_columns():
    assert selection_column("pgd_acc") == "val_pgd_acc"
    assert selection_column("test_clean_acc") == "val_clean_acc"
    assert selection_column("val_fgsm_acc") == "val_fgsm_acc"
    assert selection_column("pgd_acc", "test") == "test_pgd_acc"
    assert selection_column("val_pgd_acc", "test") == "test_pgd_acc"
    assert selection_column("autoattack_acc") == "val_autoattack_acc"
    assert selection_column("autoattack_acc", "test") == "autoattack_acc"
    assert selection_column("compression") == "compression"
    with pytest.raises(ValueError, match="'holdout'"):
        selection_column("pgd_acc", "holdout")


def test_mixed_or_missing_selection_figures_are_errors(table):
    mixed = table.assign(selected_on=["val"] * 8 + ["test"])
    with pytest.raises(ValueError, match="different splits"):
        select(mixed)
    old = table.drop(columns=["val_clean_acc", "val_fgsm_acc", "val_pgd_acc"])
    with pytest.raises(ValueError, match="none of the validation figures.*--objectives"):
        select(old)
    assert len(select(old, objectives={"compression": "max"}).fronts) == 2  # explicit: allowed


def test_dense_baseline_uses_the_target_density_when_swept(table):
    # measured density just below 1 (a dense model with an exact zero weight): still dense by its target
    sel = select(table.assign(density=[0.9999, 1.0] + [0.1] * 7))
    assert sel.baselines[""]["configuration"] == "d"
    # no dnr.density column: the measured density decides (distinct betas keep the trials apart)
    unswept = table.drop(columns="dnr.density").assign(density=[1.0, 1.0] + [0.1] * 7, **{"dnr.beta": range(9)})
    sel = select(unswept)
    assert sel.baselines[""]["configuration"] == "d"


def test_tables_and_figure_data_never_import_matplotlib_or_torch(tmp_path):
    code = f"""
import sys
import pandas as pd
from dnr_sweep.reports import figure_data
from dnr_sweep.reports.chooser import select
from dnr_sweep.reports.tables import pareto_table, write_tables
from tests.synthetic_runs import synthetic_tables
results, _ = synthetic_tables()
write_tables(pareto_table(results), {str(tmp_path)!r})
figure_data.compression_accuracy_data(select(results))  # the figures' data, computed without drawing
figure_data.channels_present_data(select(results))
bad = {{'matplotlib', 'torch'}} & {{m.split('.')[0] for m in sys.modules}}
assert not bad, bad
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    assert (tmp_path / "pareto.csv").is_file() and (tmp_path / "pareto.tex").is_file()


def test_older_results_get_their_selected_validation_figures_from_the_epochs_table():
    results = pd.DataFrame({"trial_id": ["a", "b", "c"], "selected_epoch": pd.array([2, 1, None], dtype="Int64"),
                            "clean_acc": [80.0, 70.0, NAN]})  # fmt: skip
    epochs = pd.DataFrame({"trial_id": ["a", "a", "b", "b", "c"], "epoch": [1, 2, 1, 2, 1],
                           "val_clean_acc": [50.0, 81.0, 71.0, 60.0, 40.0], "loss": [1.0] * 5})  # fmt: skip
    filled = with_selected_figures(results, epochs)
    assert filled["val_clean_acc"].tolist()[:2] == [81.0, 71.0] and np.isnan(filled["val_clean_acc"][2])
    assert "loss" not in filled.columns
    kept = with_selected_figures(results.assign(val_clean_acc=1.0), epochs)  # present: left alone
    assert kept["val_clean_acc"].tolist() == [1.0, 1.0, 1.0]
