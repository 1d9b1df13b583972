"""Each figure renders, and draws exactly the data computed by hand for a small table."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from reports import figures
from reports.style import GROUP_COLORS

NAN = float("nan")


@pytest.fixture
def table() -> pd.DataFrame:
    """9 trials: a dense baseline, 5 irregular (one stopped early), 3 channel (one without clean acc)."""
    rows = [
        # trial, pruning, target, compression, clean, fgsm, pgd, channels, early_stopped
        ("d0", "irregular", 1.0, 1.0, 90.0, 50.0, 40.0, 1.00, False),
        ("i1", "irregular", 0.5, 2.0, 89.0, 51.0, 41.0, 0.99, False),
        ("i2", "irregular", 0.2, 5.0, 89.5, 49.0, 39.0, 0.90, False),
        ("i3", "irregular", 0.1, 10.0, 85.0, 45.0, 38.0, 0.60, False),
        ("i4", "irregular", 0.1, 10.0, 80.0, 46.0, 30.0, 0.50, False),
        ("i5", "irregular", 0.02, 50.0, 95.0, 60.0, 50.0, 0.30, True),
        ("c1", "channel", 0.5, 1.5, 88.0, 48.0, 37.0, 0.70, False),
        ("c2", "channel", 0.3, 3.0, 80.0, 40.0, 30.0, 0.40, False),
        ("c3", "channel", 0.3, 3.0, NAN, 41.0, 31.0, 0.45, False),
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "trial_id",
            "dnr.pruning",
            "dnr.density",
            "compression",
            "clean_acc",
            "fgsm_acc",
            "pgd_acc",
            "channels_present",
            "early_stopped",
        ],
    )
    df["density"] = df["dnr.density"]
    # per-layer densities in network order: first layer denser
    for k, name in enumerate(["conv1", "block.conv2", "fc"]):
        df[f"layer_density/{name}"] = np.clip(df["density"] * (1.5 - 0.4 * k), 0, 1)
    return df


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
    return sorted(
        a.get_gid() for ax in fig.axes for a in ax.get_children() if (a.get_gid() or "").startswith(prefix)
    )


def xy(line) -> tuple[list[float], list[float]]:
    return list(map(float, line.get_xdata())), list(map(float, line.get_ydata()))


# Fronts (compression max, accuracy max) worked out by hand from the table above.
EXPECTED_FRONTS = {
    ("clean_acc", "irregular"): ([5.0, 10.0], [89.5, 85.0]),  # i1 < i2; i4 < i3; i5 stopped early
    ("fgsm_acc", "irregular"): ([2.0, 5.0, 10.0], [51.0, 49.0, 46.0]),  # i3 < i4
    ("pgd_acc", "irregular"): ([2.0, 5.0, 10.0], [41.0, 39.0, 38.0]),  # i4 < i3
    ("clean_acc", "channel"): ([1.5, 3.0], [88.0, 80.0]),  # c3 has no clean accuracy
    ("fgsm_acc", "channel"): ([1.5, 3.0], [48.0, 41.0]),  # c2 < c3
    ("pgd_acc", "channel"): ([1.5, 3.0], [37.0, 31.0]),
}
BASELINE = {"clean_acc": 90.0, "fgsm_acc": 50.0, "pgd_acc": 40.0}


def test_compression_accuracy_data(table):
    data = figures.compression_accuracy_data(table)
    assert data.groups == ("irregular", "channel")
    for key, (x, y) in EXPECTED_FRONTS.items():
        front = data.fronts[key].rows
        assert front["compression"].tolist() == x
        assert front[key[0]].tolist() == y
    assert data.baseline == BASELINE
    assert data.baseline_trial == "d0"
    assert data.points["clean_acc"].index.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]  # all but c3 (NaN)
    assert data.points["clean_acc"]["group"].tolist() == ["dense"] + ["irregular"] * 5 + ["channel"] * 2


def test_compression_accuracy_figure_draws_the_data(table):
    fig = figures.compression_accuracy(table)
    render(fig)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["Clean", "FGSM", "PGD"]
    for (metric, group), expected in EXPECTED_FRONTS.items():
        line = by_gid(fig, f"front:{metric}:{group}")
        assert xy(line) == (expected[0], expected[1])
        assert line.get_color() == GROUP_COLORS[group]
    for metric, value in BASELINE.items():
        baseline = by_gid(fig, f"baseline:{metric}")
        assert list(baseline.get_ydata()) == [value, value]
        assert baseline.get_linestyle() == "--"
    points = by_gid(fig, "trials:clean_acc").get_offsets()
    finite = table[table["clean_acc"].notna()]
    np.testing.assert_array_equal(points, finite[["compression", "clean_acc"]].to_numpy())
    assert len(by_gid(fig, "trials:fgsm_acc").get_offsets()) == len(table)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [1, 2, 5, 10, 20, 50]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1×", "2×", "5×", "10×", "20×", "50×"]
    assert ax.get_xlabel() == "Compression (×)"
    assert ax.get_ylabel() == "Accuracy (%)"
    assert fig.get_size_inches()[0] == pytest.approx(3 * 3.4)


def test_compression_accuracy_combined_uses_one_axes(table):
    fig = figures.compression_accuracy(table, y=("clean_acc", "pgd_acc"), combined=True)
    render(fig)
    assert len(fig.axes) == 1
    assert all_gids(fig, "front:") == sorted(
        f"front:{m}:{g}" for m in ("clean_acc", "pgd_acc") for g in ("irregular", "channel")
    )
    assert by_gid(fig, "front:pgd_acc:irregular").get_linestyle() == "--"
    assert xy(by_gid(fig, "front:pgd_acc:irregular")) == EXPECTED_FRONTS[("pgd_acc", "irregular")]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["irregular", "channel", "Clean", "PGD", "dense baseline"]


def test_compression_ticks_only_within_range():
    assert figures.compression_ticks(1.5, 30.0) == ([2.0, 5.0, 10.0, 20.0], ["2×", "5×", "10×", "20×"])
    assert figures.compression_ticks(1.0, 100.0)[1] == ["1×", "2×", "5×", "10×", "20×", "50×", "100×"]
    lo, hi = figures.compression_limits(np.array([1.2, 1.6]))  # too narrow: widened to hold 2 ticks
    assert len(figures.compression_ticks(lo, hi)[0]) >= 2


def test_no_group_column_means_one_group(table):
    data = figures.compression_accuracy_data(
        table.drop(columns="dnr.pruning"), group_by=None, y=("clean_acc",)
    )
    assert data.groups == (figures.SINGLE_GROUP,)
    # pooled: c1 (1.5x, 88) is now dominated by i2 (5x, 89.5)
    assert data.fronts[("clean_acc", figures.SINGLE_GROUP)].rows["trial_id"].tolist() == ["i2", "i3"]


def test_missing_column_is_a_clear_error(table):
    with pytest.raises(ValueError, match=r"autoattack_acc.*trial_id"):
        figures.compression_accuracy(table, y=("autoattack_acc",))
    with pytest.raises(ValueError, match="group_by"):
        figures.compression_accuracy(table, group_by="dnr.kind")


def test_channels_present(table):
    data = figures.channels_present_data(table)
    assert data.lines["irregular"]["channels_pct"].tolist() == pytest.approx([90.0, 60.0])
    assert data.lines["channel"]["compression"].tolist() == [1.5, 3.0]
    assert data.lines["channel"]["channels_pct"].tolist() == pytest.approx([70.0, 40.0])
    assert data.baseline == (1.0, 100.0)
    fig = figures.channels_present(table)
    render(fig)
    assert xy(by_gid(fig, "front:channels_present:irregular"))[1] == pytest.approx([90.0, 60.0])
    assert xy(by_gid(fig, "baseline:channels_present")) == ([1.0], [100.0])
    assert len(by_gid(fig, "trials:channels_present").get_offsets()) == len(table)
    assert fig.axes[0].get_ylabel() == "Channels present (%)"


def test_channels_present_labels_the_measured_speedup(table):
    table = table.assign(speedup_cpu=np.nan)
    table.loc[table.trial_id == "c1", "speedup_cpu"] = 1.4  # on the channel front
    table.loc[table.trial_id == "c3", "speedup_cpu"] = 9.9  # not on any front: not labelled
    data = figures.channels_present_data(table)
    assert data.speedups == ((1.5, 70.0, 1.4),)
    fig = figures.channels_present(table)
    render(fig)
    assert [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "speedup"] == ["1.4× CPU"]


def test_layer_density_default_picks_best_per_type_and_target(table):
    data = figures.layer_density_data(table)
    assert data.layers == ("conv1", "block.conv2", "fc")
    panels = {group: [s.trial_id for s in series] for group, series in data.panels}
    assert panels == {"irregular": ["i1", "i2", "i3"], "channel": ["c1", "c2"]}  # i3 beats i4 at 10 %
    assert [g for g, _ in data.panels] == ["irregular", "channel"]
    fig = figures.layer_density(table)
    render(fig)
    bars = [a for a in fig.axes[0].patches if a.get_gid() == "layer_density:irregular:i2"]
    expected = table.loc[table.trial_id == "i2", [c for c in table if c.startswith("layer_density/")]]
    np.testing.assert_allclose([b.get_height() for b in bars], expected.to_numpy()[0] * 100)
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["conv1", "block.conv2", "fc"]


def test_layer_density_explicit_trial(table):
    data = figures.layer_density_data(table, "c2")
    assert [(g, [s.trial_id for s in series]) for g, series in data.panels] == [("channel", ["c2"])]
    assert data.panels[0][1][0].label == "30% target (3.0×)"
    render(figures.layer_density(table, ["i3", "c2"]))
    with pytest.raises(ValueError, match="unknown trial_id"):
        figures.layer_density(table, "nope")


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
    data = figures.training_curves_data(epochs)
    assert data.curves[0].series["val_pgd_acc"] == ((1, 3), (21.0, 23.0))
    assert [(c.trial_id, c.group) for c in data.curves] == [
        ("a", "irregular"),
        ("b", "channel"),
        ("d", "dense"),
    ]
    fig = figures.training_curves(epochs)
    render(fig)
    assert xy(by_gid(fig, "loss:a")) == ([1, 2, 3], pytest.approx([2.9, 2.8, 2.7]))
    assert xy(by_gid(fig, "acc:val_pgd_acc:b")) == ([1, 2, 3], [21.0, 22.0, 23.0])
    assert xy(by_gid(fig, "acc:val_pgd_acc:a")) == ([1, 3], [21.0, 23.0])
    assert by_gid(fig, "loss:b").get_color() == GROUP_COLORS["channel"]
    assert by_gid(fig, "acc:val_pgd_acc:b").get_linestyle() == "--"
    assert [ax.get_ylabel() for ax in fig.axes] == ["Training loss", "Validation accuracy (%)"]


def test_training_curves_without_accuracy_columns(epochs):
    fig = figures.training_curves(epochs.drop(columns=["val_clean_acc", "val_pgd_acc"]))
    render(fig)
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="training_curves needs"):
        figures.training_curves(epochs[["trial_id", "epoch"]])


def test_attack_strength():
    curves = {
        "t1": {"steps": {"7": 40.0, "1": 50.0, "20": 38.0}, "eps": {str(8 / 255): 40.0, "0.0": 90.0}},
        "t2": {"steps": {"1": 45.0, "7": 30.0}},
    }
    data = figures.attack_strength_data(curves, groups={"t1": "irregular", "t2": "channel"})
    assert [(c.label, c.x, c.accuracy) for c in data.steps] == [
        ("t1", (1.0, 7.0, 20.0), (50.0, 40.0, 38.0)),
        ("t2", (1.0, 7.0), (45.0, 30.0)),
    ]
    assert data.eps[0].x == pytest.approx((0.0, 8.0))
    fig = figures.attack_strength(curves, groups={"t1": "irregular", "t2": "channel"})
    render(fig)
    assert xy(by_gid(fig, "eps:t1"))[0] == pytest.approx([0.0, 8.0])
    assert by_gid(fig, "steps:t2").get_color() == GROUP_COLORS["channel"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["PGD iterations", "ε (/255)"]
    with pytest.raises(ValueError, match="at least one curve"):
        figures.attack_strength({"t": {"steps": {}}})
