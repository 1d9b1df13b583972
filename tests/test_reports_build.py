"""build_report end to end on a synthetic run directory, and the Pareto tables."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from reports import build_report
from reports.build import resolve_settings
from reports.synthetic import write_synthetic_run
from reports.tables import pareto_table, to_latex

FIGURES = ("compression_accuracy", "channels_present", "layer_density", "training_curves", "attack_strength")


def test_build_report_writes_every_file(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "exp", parquet=False)
    written = build_report(run_dir)
    names = {p.relative_to(run_dir).as_posix() for p in written}
    expected = {
        "results.parquet",
        "epochs.parquet",
        "report/pareto.csv",
        "report/pareto.tex",
        "report/index.html",
    }
    expected |= {f"report/{stem}.{ext}" for stem in FIGURES for ext in ("pdf", "png")}
    assert names == expected
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes left no temporaries
    assert (run_dir / "report" / "compression_accuracy.pdf").read_bytes().startswith(b"%PDF")
    html = (run_dir / "report" / "index.html").read_text()
    for stem in FIGURES:
        assert f'src="{stem}.png"' in html
    assert "<table" in html and "unpruned baseline" in html

    # Parquet now exists: a second build does not rewrite it, and honours overrides.
    out = tmp_path / "elsewhere"
    again = build_report(run_dir, out_dir=out, formats=("png",), y=["pgd_acc"])
    assert run_dir / "results.parquet" not in again
    assert {p.name for p in again} == {f"{s}.png" for s in FIGURES} | {
        "pareto.csv",
        "pareto.tex",
        "index.html",
    }
    table = pd.read_csv(out / "pareto.csv")
    assert "PGD" in table.columns and "Clean" not in table.columns


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
    assert settings.objectives == {"compression": "max", "clean_acc": "max", "pgd_acc": "max"}
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


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial_id": ["d", "i1", "i2", "i3", "c1"],
            "model.arch": ["vgg16"] * 5,
            "data.dataset": ["cifar10"] * 5,
            "dnr.pruning": ["irregular", "irregular", "irregular", "irregular", "channel"],
            "density": [1.0, 0.1, 0.05, 0.05, 0.5],
            "compression": [1.0, 9.171, 20.854, 20.0, 1.4512],
            "channels_present": [1.0, 0.99, 0.9852, 0.97, 0.74],
            "clean_acc": [86.1, 86.5, 86.74, 80.0, 85.83],
            "fgsm_acc": [50.0, 52.0, 52.92, 50.0, 51.03],
            "pgd_acc": [41.0, 42.0, 43.21, 40.0, 42.36],
            "autoattack_acc": [38.0, 39.0, 40.1, 37.0, 39.5],
            "early_stopped": [False] * 5,
        }
    )


def test_pareto_table_shape(table):
    t = pareto_table(table)
    assert list(t.columns) == [
        "Trial",
        "Model",
        "Dataset",
        "Pruning type",
        "Compression (×)",
        "Channels present (%)",
        "Clean",
        "FGSM",
        "PGD",
        "AutoAttack",
    ]
    assert t["Trial"].tolist() == ["d", "i2", "c1"]  # i1 and i3 dominated by i2
    assert t["Pruning type"].tolist() == ["unpruned baseline", "irregular", "channel"]
    assert t.loc[1, "Compression (×)"] == 20.85
    assert t.loc[1, "Channels present (%)"] == 98.52
    assert t.loc[2, "Compression (×)"] == 1.45
    t2 = pareto_table(table, objectives={"compression": "max"})
    assert t2["Trial"].tolist() == ["d", "i2", "c1"]


def test_latex_is_booktabs(table):
    tex = to_latex(pareto_table(table), caption="DNR on CIFAR-10 (VGG16)", label="tab:dnr")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\multicolumn{4}{c}{Accuracy (\%)}" in tex
    assert r"vgg16 & cifar10 & irregular & 20.85$\times$ & 98.52 & 86.74 & 52.92 & 43.21 & 40.10 \\" in tex
    assert "Trial" not in tex
    assert r"\cmidrule(lr){6-9}" in tex
