"""Figure data, computed by hand for a small table where validation and test disagree, and its drawing.

The table is built so that choosing on test figures, or one front per metric, or per seed instead of
per configuration mean, would each give a different answer than the one asserted here.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dnr_sweep.reports import figure_data, figures
from dnr_sweep.reports.chooser import select
from dnr_sweep.reports.figure_data import Reference
from dnr_sweep.reports.style import GROUP_COLORS

NAN = float("nan")
T_975_2 = 4.302652729911275  # Student t quantile t(0.975, 2): a 95% interval from 3 seeds

COLUMNS = [
    "trial_id", "status", "early_stopped", "dnr.pruning", "dnr.density", "dnr.beta", "train.seed",
    "compression", "channels_present", "val_clean_acc", "val_fgsm_acc", "val_pgd_acc",
    "clean_acc", "fgsm_acc", "pgd_acc", "speedup_cpu",
]  # fmt: skip
ROWS = [
    # dense: d0 has the best validation figure, d1 the best test figure, d2 never finished
    ("d0", "TERMINATED", False, "irregular", 1.0, 0.5, 0, 1.0, 1.00, 90.0, 52.0, 42.0, 88.0, 50.0, 40.0, NAN),
    ("d1", "TERMINATED", False, "channel", 1.0, 0.5, 0, 1.0, 1.00, 89.0, 51.0, 41.0, 91.0, 53.0, 43.0, NAN),
    ("d2", "RUNNING", False, "irregular", 1.0, 0.7, 0, 1.0, 1.00, 99.0, 99.0, 99.0, 99.0, 99.0, 99.0, NAN),
    # irregular
    ("i1", "TERMINATED", False, "irregular", 0.5, 0.5, 0, 2.0, 0.99, 89.0, 51.0, 41.0, 87.0, 50.0, 40.0, NAN),
    ("i2", "TERMINATED", False, "irregular", 0.2, 0.5, 0, 5.0, 0.90, 88.0, 50.0, 40.0, 89.5, 52.0, 42.0, NAN),
    # i7: worse than i2 on val clean and PGD, better on val FGSM: on the joint front, so in every panel
    ("i7", "TERMINATED", False, "irregular", 0.2, 0.7, 0, 5.0, 0.88, 87.0, 52.0, 39.0, 83.0, 53.0, 38.0, NAN),
    ("i3", "TERMINATED", False, "irregular", 0.1, 0.5, 0, 10.0, 0.60, 85.0, 45.0, 38.0, 80.0, 44.0, 35.0, NAN),
    # i4: dominated by i3 on validation although its test figures are better: never shown
    ("i4", "TERMINATED", False, "irregular", 0.1, 0.7, 0, 10.0, 0.50, 84.0, 44.0, 37.0, 86.0, 47.0, 39.0, 9.9),
    # the best figures of all, but stopped early / failed: never enter a front
    ("i5", "EARLY_STOPPED", True, "irregular", 0.02, 0.5, 0, 50.0, 0.30, 95.0, 60.0, 50.0, 95.0, 60.0, 50.0, NAN),
    ("i6", "ERROR", False, "irregular", 0.05, 0.5, 0, 20.0, 0.40, 94.0, 59.0, 49.0, 94.0, 59.0, 49.0, NAN),
    # channel: c1 has three seeds (mean val 88 / 48 / 37); c4 beats that mean on val clean only
    ("c1a", "TERMINATED", False, "channel", 0.5, 0.5, 0, 1.5, 0.70, 88.0, 48.0, 37.0, 86.0, 47.0, 36.0, 1.4),
    ("c1b", "TERMINATED", False, "channel", 0.5, 0.5, 1, 1.5, 0.72, 87.0, 47.0, 36.0, 87.0, 46.0, 35.0, 1.5),
    ("c1c", "TERMINATED", False, "channel", 0.5, 0.5, 2, 1.5, 0.68, 89.0, 49.0, 38.0, 89.0, 48.0, 37.0, 1.6),
    ("c4", "TERMINATED", False, "channel", 0.5, 0.7, 0, 1.5, 0.70, 88.5, 47.5, 36.5, 84.0, 45.0, 34.0, NAN),
    ("c2", "TERMINATED", False, "channel", 0.3, 0.5, 0, 3.0, 0.40, 80.0, 40.0, 30.0, 82.0, 41.0, 31.0, 1.9),
    # c3: dominated by c2 on validation, better on test
    ("c3", "TERMINATED", False, "channel", 0.3, 0.7, 0, 3.0, 0.45, 79.0, 39.0, 29.0, 85.0, 45.0, 35.0, NAN),
]  # fmt: skip


@pytest.fixture
def table() -> pd.DataFrame:
    df = pd.DataFrame(ROWS, columns=COLUMNS)
    df["density"] = df["dnr.density"]
    df["selected_on"] = "val"
    for k, name in enumerate(["conv1", "block.conv2", "fc"]):  # network order, first layer denser
        df[f"layer_density/{name}"] = np.clip(df["density"] * (1.5 - 0.4 * k), 0, 1)
    return df


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Hand-computed mean and 95% CI half-width of 3 values (t quantile hard-coded)."""
    assert len(values) == 3
    mean = sum(values) / 3
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    return mean, T_975_2 * s / math.sqrt(3)


C1_CLEAN = mean_ci([86.0, 87.0, 89.0])
C1_FGSM = mean_ci([47.0, 46.0, 48.0])
C1_PGD = mean_ci([36.0, 35.0, 37.0])
C1_CHANNELS = mean_ci([70.0, 72.0, 68.0])

# The joint Pareto set per pruning type on (compression, val clean, val FGSM, val PGD), by hand, in
# compression order (ties in compression: by validation clean accuracy), and the test figures shown.
IRREGULAR = ("i1", "i7", "i2", "i3")
CHANNEL = ("c1a", "c4", "c2")
EXPECTED = {  # (metric, group) -> (x, y, ci)
    ("clean_acc", "irregular"): ((2.0, 5.0, 5.0, 10.0), (87.0, 83.0, 89.5, 80.0), (None,) * 4),
    ("fgsm_acc", "irregular"): ((2.0, 5.0, 5.0, 10.0), (50.0, 53.0, 52.0, 44.0), (None,) * 4),
    ("pgd_acc", "irregular"): ((2.0, 5.0, 5.0, 10.0), (40.0, 38.0, 42.0, 35.0), (None,) * 4),
    ("clean_acc", "channel"): ((1.5, 1.5, 3.0), (C1_CLEAN[0], 84.0, 82.0), (C1_CLEAN[1], None, None)),
    ("fgsm_acc", "channel"): ((1.5, 1.5, 3.0), (C1_FGSM[0], 45.0, 41.0), (C1_FGSM[1], None, None)),
    ("pgd_acc", "channel"): ((1.5, 1.5, 3.0), (C1_PGD[0], 34.0, 31.0), (C1_PGD[1], None, None)),
}
BASELINE = {"clean_acc": 88.0, "fgsm_acc": 50.0, "pgd_acc": 40.0}  # d0's test figures (chosen on val)


def assert_line(line: figure_data.Line, x, y, ci) -> None:
    assert line.x == pytest.approx(x)
    assert line.y == pytest.approx(y)
    assert len(line.ci) == len(ci)
    for got, want in zip(line.ci, ci, strict=True):
        assert (got is None) if want is None else got == pytest.approx(want)


def render(fig: Figure) -> bytes:
    assert isinstance(fig, Figure)
    assert fig.canvas.manager is None  # not registered with pyplot
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    assert data.startswith(b"\x89PNG")
    return data


def by_gid(fig: Figure, gid: str):
    found = [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, (gid, len(found))
    return found[0]


def all_gids(fig: Figure, prefix: str) -> list[str]:
    return sorted(a.get_gid() for ax in fig.axes for a in ax.get_children() if (a.get_gid() or "").startswith(prefix))


def xy(line) -> tuple[list[float], list[float]]:
    return list(map(float, line.get_xdata())), list(map(float, line.get_ydata()))


def error_bars(collection) -> list[float]:
    """x, low, high of each vertical error bar in an errorbar LineCollection, flat."""
    return [float(v) for s in collection.get_segments() for v in (s[0][0], s[0][1], s[1][1])]


# ------------------------------------------------------------------------------------------ the data


def test_compression_accuracy_data_is_the_joint_validation_front_with_test_values(table):
    data = figure_data.compression_accuracy_data(select(table))
    assert data.groups == ("irregular", "channel")
    assert data.scopes == ("",)
    assert data.chosen_on == "compression (max), val_clean_acc (max), val_fgsm_acc (max), val_pgd_acc (max)"
    for (metric, group), (x, y, ci) in EXPECTED.items():
        line = data.panels[("", metric)].fronts[group]
        # every panel shows the same configurations: i7 although i2 beats it in the clean panel
        assert line.configurations == (IRREGULAR if group == "irregular" else CHANNEL)
        assert line.n_seeds == ((1, 1, 1, 1) if group == "irregular" else (3, 1, 1))
        assert_line(line, x, y, ci)
    for metric, value in BASELINE.items():
        assert data.panels[("", metric)].baseline == Reference("d0", 1.0, value, None, 1)


def test_points_are_every_finished_trial(table):
    data = figure_data.compression_accuracy_data(select(table))
    points = data.panels[("", "clean_acc")].points
    finished = table[~table.trial_id.isin(["d2", "i5", "i6"])]
    assert points.x == tuple(finished["compression"])
    assert points.y == tuple(finished["clean_acc"])
    assert points.groups == ("dense", "dense") + ("irregular",) * 5 + ("channel",) * 6


def test_seed_mean_and_ci_equal_hand_computed_values(table):
    configs = select(table).configurations.set_index("configuration")
    c1 = configs.loc["c1a"]
    assert c1["n_seeds"] == 3 and c1["trial_ids"] == ("c1a", "c1b", "c1c") and c1["seeds"] == (0, 1, 2)
    assert c1["clean_acc"] == pytest.approx(C1_CLEAN[0]) and c1["ci/clean_acc"] == pytest.approx(C1_CLEAN[1])
    assert c1["ci/clean_acc"] == pytest.approx(3.7946, abs=1e-4)  # 4.3027 * 1.5275 / sqrt(3)
    assert c1["val_clean_acc"] == pytest.approx(88.0)  # the front is chosen on the mean
    assert c1["speedup_cpu"] == pytest.approx(1.5)
    assert np.isnan(configs.loc["c4", "ci/clean_acc"])  # a single seed has no interval
    assert "train.seed" not in configs.columns
    assert len(configs) == 11  # 13 finished trials, c1's three seeds one configuration


def test_front_is_chosen_on_seed_means_not_on_single_seeds(table):
    # c4 (val clean 88.5) is not dominated by c1's mean (88, 48, 37), though seed c1c (89, 49, 38)
    # dominates it: choosing per seed would drop c4.
    front = select(table).fronts[("", "channel")]
    assert front["configuration"].tolist() == list(CHANNEL)


def test_single_seed_draws_without_interval(table):
    one_seed = table[~table.trial_id.isin(["c1b", "c1c"])]
    data = figure_data.compression_accuracy_data(select(one_seed))
    line = data.panels[("", "clean_acc")].fronts["channel"]
    assert line.configurations == ("c1a", "c4", "c2")  # c1a alone: seed figures, no mean
    assert line.ci == (None, None, None) and not line.has_ci
    fig = figures.compression_accuracy(data)
    render(fig)
    assert all_gids(fig, "ci:") == []
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert figures.CI_LABEL not in legend


def test_channels_present_uses_the_same_set_and_labels_channel_speedups(table):
    data = figure_data.channels_present_data(select(table))
    panel = data.panels[""]
    assert panel.fronts["irregular"].configurations == IRREGULAR
    assert panel.fronts["irregular"].y == pytest.approx((99.0, 88.0, 90.0, 60.0))
    channel = panel.fronts["channel"]
    assert channel.configurations == CHANNEL
    assert channel.y == pytest.approx((C1_CHANNELS[0], 70.0, 40.0))
    assert channel.ci[0] == pytest.approx(C1_CHANNELS[1]) and channel.ci[1:] == (None, None)
    assert panel.baseline == Reference("d0", 1.0, 100.0, None, 1)
    # measured speedups of channel-mode front configurations only (i4's 9.9 is off every front)
    assert [s[0] for s in panel.speedups] == [1.5, 3.0]
    assert [s[1] for s in panel.speedups] == pytest.approx([C1_CHANNELS[0], 40.0])
    assert [s[2] for s in panel.speedups] == pytest.approx([1.5, 1.9])


def test_every_channel_mode_keeps_its_speedup_label(table):
    table = table.assign(**{"dnr.pruning": table["dnr.pruning"].replace("channel", "channel_group")})
    table.loc[table.trial_id == "i1", "speedup_cpu"] = 3.0  # irregular: not a channel mode, never labelled
    data = figure_data.channels_present_data(select(table))
    assert data.groups == ("irregular", "channel_group")
    assert [s[2] for s in data.panels[""].speedups] == pytest.approx([1.5, 1.9])
    fig = figures.channels_present(data)
    render(fig)
    assert [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "speedup"] == ["1.5× CPU", "1.9× CPU"]


def test_layer_density_chooses_on_validation(table):
    data = figure_data.layer_density_data(select(table))
    assert [p.title for p in data.panels] == ["irregular", "channel"]
    assert data.panels[0].layers == ("conv1", "block.conv2", "fc")
    chosen = {p.group: [s.configuration for s in p.series] for p in data.panels}
    # by test figures it would be i4 at 10 % (86 > 80) and c1 at 50 % (87.3 > 84)
    assert chosen == {"irregular": ["i1", "i2", "i3"], "channel": ["c4", "c2"]}
    assert data.panels[0].series[2].densities == pytest.approx((0.15, 0.11, 0.07))
    assert data.panels[1].series[0].label == "50% target (1.5×)"
    fig = figures.layer_density(data)
    render(fig)
    bars = [a for a in fig.axes[0].patches if a.get_gid() == "layer_density:irregular:i2"]
    assert [b.get_height() for b in bars] == pytest.approx([30.0, 22.0, 14.0])
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["conv1", "block.conv2", "fc"]


def test_layer_density_explicit_trial(table):
    data = figure_data.layer_density_data(select(table), "c2")
    assert [(p.group, [s.configuration for s in p.series]) for p in data.panels] == [("channel", ["c2"])]
    assert data.panels[0].series[0].label == "30% target (3.0×)"
    render(figures.layer_density(figure_data.layer_density_data(select(table), ["i3", "c2"])))
    with pytest.raises(ValueError, match="unknown or unfinished trial_id.*'i5'"):
        figure_data.layer_density_data(select(table), "i5")


def test_no_group_column_means_one_group(table):
    pooled = select(table, y=("clean_acc",), group_by=None)
    data = figure_data.compression_accuracy_data(pooled)
    assert data.groups == ("DNR",)
    # pooled (compression, val clean): c1/c4 (1.5x) are dominated by i1 (2x, 89); d0, d1 are dense
    line = data.panels[("", "clean_acc")].fronts["DNR"]
    assert line.configurations == ("i1", "i2", "i3")


def test_scopes_keep_models_apart(table):
    other = table.assign(**{"model.arch": "vgg16", "trial_id": "v" + table["trial_id"]})
    other.loc[other.trial_id == "vi1", "compression"] = 4.0  # vgg16's i1 would dominate resnet18's i1
    both = pd.concat([table.assign(**{"model.arch": "resnet18"}), other], ignore_index=True)
    sel = select(both)
    assert sel.scopes == ("resnet18", "vgg16")
    data = figure_data.compression_accuracy_data(sel)
    assert data.panels[("resnet18", "clean_acc")].fronts["irregular"].configurations == IRREGULAR
    assert data.panels[("vgg16", "clean_acc")].fronts["irregular"].configurations == tuple("v" + c for c in IRREGULAR)
    assert data.panels[("vgg16", "pgd_acc")].baseline.configuration == "vd0"
    fig = figures.compression_accuracy(data)
    render(fig)
    assert len(fig.axes) == 6
    assert fig.axes[3].get_title() == "vgg16 · Clean"
    assert xy(by_gid(fig, "front:clean_acc:vgg16:irregular"))[1] == [87.0, 83.0, 89.5, 80.0]


# -------------------------------------------------------------------------------------- the drawing


def test_compression_accuracy_figure_draws_the_data(table):
    data = figure_data.compression_accuracy_data(select(table))
    fig = figures.compression_accuracy(data)
    render(fig)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["Clean", "FGSM", "PGD"]
    for (metric, group), (x, y, _) in EXPECTED.items():
        line = by_gid(fig, f"front:{metric}:{group}")
        assert xy(line)[0] == pytest.approx(list(x)) and xy(line)[1] == pytest.approx(list(y))
        assert line.get_color() == GROUP_COLORS[group]
    bars = error_bars(by_gid(fig, "ci:clean_acc:channel"))  # only c1 has seeds
    assert bars == pytest.approx([1.5, C1_CLEAN[0] - C1_CLEAN[1], C1_CLEAN[0] + C1_CLEAN[1]])
    assert all_gids(fig, "ci:") == ["ci:clean_acc:channel", "ci:fgsm_acc:channel", "ci:pgd_acc:channel"]
    for metric, value in BASELINE.items():
        baseline = by_gid(fig, f"baseline:{metric}")
        assert list(baseline.get_ydata()) == [value, value]
        assert baseline.get_linestyle() == "--"
    points = by_gid(fig, "trials:clean_acc").get_offsets()
    assert len(points) == 13
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [1, 2, 5, 10]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1×", "2×", "5×", "10×"]
    assert ax.get_xlabel() == "Compression (×)"
    assert ax.get_ylabel() == "Test accuracy (%)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["irregular", "channel", "dense baseline", figures.CI_LABEL]
    assert fig.get_suptitle() == ""  # chosen on validation: no protocol label needed
    assert fig.get_size_inches()[0] == pytest.approx(3 * 3.4)


def test_baseline_with_seeds_draws_its_interval(table):
    seeds = table[table.trial_id == "d0"].assign(**{"train.seed": 1, "trial_id": "d0b", "clean_acc": 90.0})
    seeds = pd.concat([seeds, seeds.assign(**{"train.seed": 2, "trial_id": "d0c", "clean_acc": 83.0})])
    data = figure_data.compression_accuracy_data(select(pd.concat([table, seeds], ignore_index=True)))
    mean, ci = mean_ci([88.0, 90.0, 83.0])
    assert data.panels[("", "clean_acc")].baseline == Reference("d0", 1.0, pytest.approx(mean), pytest.approx(ci), 3)
    fig = figures.compression_accuracy(data)
    render(fig)
    band = by_gid(fig, "baseline_ci:clean_acc")  # a Rectangle spanning the interval in data units
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((mean - ci, mean + ci))


def test_compression_accuracy_combined_uses_one_axes(table):
    data = figure_data.compression_accuracy_data(select(table, y=("clean_acc", "pgd_acc")))
    fig = figures.compression_accuracy(data, combined=True)
    render(fig)
    assert len(fig.axes) == 1
    assert all_gids(fig, "front:") == sorted(
        f"front:{m}:{g}" for m in ("clean_acc", "pgd_acc") for g in ("irregular", "channel")
    )
    assert by_gid(fig, "front:pgd_acc:irregular").get_linestyle() == "--"
    # objectives now (compression, val clean, val PGD): i7 is dominated by i2 and drops out
    assert xy(by_gid(fig, "front:pgd_acc:irregular"))[1] == [40.0, 42.0, 35.0]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["irregular", "channel", "Clean", "PGD", "dense baseline", figures.CI_LABEL]


def test_channels_present_figure(table):
    fig = figures.channels_present(figure_data.channels_present_data(select(table)))
    render(fig)
    assert xy(by_gid(fig, "front:channels_present:irregular"))[1] == pytest.approx([99.0, 88.0, 90.0, 60.0])
    assert xy(by_gid(fig, "baseline:channels_present")) == ([1.0], [100.0])
    assert len(by_gid(fig, "trials:channels_present").get_offsets()) == 13
    assert error_bars(by_gid(fig, "ci:channels_present:channel")) == pytest.approx(
        [1.5, C1_CHANNELS[0] - C1_CHANNELS[1], C1_CHANNELS[0] + C1_CHANNELS[1]]
    )
    assert fig.axes[0].get_ylabel() == "Channels present (%)"


def test_compression_ticks_only_within_range():
    assert figures.compression_ticks(1.5, 30.0) == ([2.0, 5.0, 10.0, 20.0], ["2×", "5×", "10×", "20×"])
    assert figures.compression_ticks(1.0, 100.0)[1] == ["1×", "2×", "5×", "10×", "20×", "50×", "100×"]
    lo, hi = figures.compression_limits(np.array([1.2, 1.6]))  # too narrow: widened to hold 2 ticks
    assert len(figures.compression_ticks(lo, hi)[0]) >= 2


# ----------------------------------------------------------------------- select_on: test (paper protocol)


@pytest.fixture
def paper_table(table) -> pd.DataFrame:
    """The same trials selected on test: the selection figures are ``test_*_acc``, no ``val_*``."""
    renamed = {f"val_{k}_acc": f"test_{k}_acc" for k in ("clean", "fgsm", "pgd")}
    return table.rename(columns=renamed).assign(selected_on="test")


def test_paper_protocol_chooses_on_test_selection_figures_and_is_labelled(paper_table):
    sel = select(paper_table)
    assert sel.protocol.paper and sel.protocol.label == "selected on test (paper protocol)"
    assert list(sel.objectives) == ["compression", "test_clean_acc", "test_fgsm_acc", "test_pgd_acc"]
    data = figure_data.compression_accuracy_data(sel)
    assert data.panels[("", "pgd_acc")].fronts["irregular"].configurations == IRREGULAR
    for fig in (
        figures.compression_accuracy(data),
        figures.channels_present(figure_data.channels_present_data(sel)),
        figures.layer_density(figure_data.layer_density_data(sel)),
    ):
        render(fig)
        assert fig.get_suptitle() == "selected on test (paper protocol)"


# ----------------------------------------------------------------------------------- other figures


@pytest.fixture
def epochs() -> pd.DataFrame:
    rows = []
    for trial, pruning, density in (("a", "irregular", 0.1), ("b", "channel", 0.5), ("d", "irregular", 1.0)):
        for epoch in (1, 2, 3):
            rows.append(
                {
                    "trial_id": trial,
                    "epoch": epoch,
                    "loss": 3.0 - epoch * density,
                    "density": density,
                    "val_clean_acc": 50.0 + epoch,
                    "val_pgd_acc": 20.0 + epoch,
                    "dnr.pruning": pruning,
                }
            )
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter


def test_training_curves(epochs):
    epochs.loc[(epochs.trial_id == "a") & (epochs.epoch == 2), "val_pgd_acc"] = NAN  # not evaluated
    data = figure_data.training_curves_data(epochs)
    assert data.curves[0].series["val_pgd_acc"] == ((1, 3), (21.0, 23.0))
    assert [(c.trial_id, c.group) for c in data.curves] == [
        ("a", "irregular"),
        ("b", "channel"),
        ("d", "dense"),
    ]
    fig = figures.training_curves(data)
    render(fig)
    assert xy(by_gid(fig, "loss:a")) == ([1, 2, 3], pytest.approx([2.9, 2.8, 2.7]))
    assert xy(by_gid(fig, "acc:val_pgd_acc:b")) == ([1, 2, 3], [21.0, 22.0, 23.0])
    assert xy(by_gid(fig, "acc:val_pgd_acc:a")) == ([1, 3], [21.0, 23.0])
    assert by_gid(fig, "loss:b").get_color() == GROUP_COLORS["channel"]
    assert by_gid(fig, "acc:val_pgd_acc:b").get_linestyle() == "--"
    assert [ax.get_ylabel() for ax in fig.axes] == ["Training loss", "Validation accuracy (%)"]


def test_training_curves_without_accuracy_columns(epochs):
    fig = figures.training_curves(
        figure_data.training_curves_data(epochs.drop(columns=["val_clean_acc", "val_pgd_acc"]))
    )
    render(fig)
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="training_curves needs"):
        figure_data.training_curves_data(epochs[["trial_id", "epoch"]])


def test_attack_strength():
    curves = {
        "t1": {"steps": {"7": 40.0, "1": 50.0, "20": 38.0}, "eps": {str(8 / 255): 40.0, "0.0": 90.0}},
        "t2": {"steps": {"1": 45.0, "7": 30.0}},
    }
    data = figure_data.attack_strength_data(curves, groups={"t1": "irregular", "t2": "channel"})
    assert [(c.label, c.x, c.accuracy) for c in data.steps] == [
        ("t1", (1.0, 7.0, 20.0), (50.0, 40.0, 38.0)),
        ("t2", (1.0, 7.0), (45.0, 30.0)),
    ]
    assert data.eps[0].x == pytest.approx((0.0, 8.0))
    fig = figures.attack_strength(data)
    render(fig)
    assert xy(by_gid(fig, "eps:t1"))[0] == pytest.approx([0.0, 8.0])
    assert by_gid(fig, "steps:t2").get_color() == GROUP_COLORS["channel"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["PGD iterations", "ε (/255)"]
    with pytest.raises(ValueError, match="at least one curve"):
        figures.attack_strength(figure_data.attack_strength_data({"t": {"steps": {}}}))
