"""One look for every figure: Okabe-Ito colours, paper-column sizes, readable fonts.

The same pruning type has the same colour and marker in every figure, and so has each method of the
methods figure (DNR, ADMM, ADMM naive, L1 Lasso, HYDRA), from the same palette. Nothing here touches pyplot or
global rcParams; figures apply :data:`RC` through ``matplotlib.rc_context`` while they are built and
saved.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
DENSE = "dense"
GROUP_COLORS = {
    "irregular": OKABE_ITO["blue"], "channel": OKABE_ITO["vermillion"], "channel_group": OKABE_ITO["bluish_green"],
    DENSE: "#555555",
}  # fmt: skip
GROUP_MARKERS = {"irregular": "o", "channel": "s", "channel_group": "^", DENSE: "D"}
#: the methods figure: one colour and marker per method label (Table 2's names)
METHOD_COLORS = {
    "DNR": OKABE_ITO["blue"], "ADMM": OKABE_ITO["vermillion"], "ADMM naive": OKABE_ITO["orange"],
    "L1 Lasso": OKABE_ITO["bluish_green"], "HYDRA": OKABE_ITO["reddish_purple"],
}  # fmt: skip
METHOD_MARKERS = {"DNR": "o", "ADMM": "s", "ADMM naive": "D", "L1 Lasso": "^", "HYDRA": "v"}
_SPARE_METHOD_COLORS = [OKABE_ITO[k] for k in ("sky_blue", "black", "yellow")]
_SPARE_COLORS = [OKABE_ITO[k] for k in ("bluish_green", "orange", "reddish_purple", "sky_blue", "yellow")]
_SPARE_MARKERS = ["^", "v", "P", "X", "h"]

METRIC_LABELS = {
    "clean_acc": "Clean",
    "fgsm_acc": "FGSM",
    "pgd_acc": "PGD",
    "autoattack_acc": "AutoAttack",
    "val_clean_acc": "Val. clean",
    "val_fgsm_acc": "Val. FGSM",
    "val_pgd_acc": "Val. PGD",
}
METRIC_LINESTYLES = ["-", "--", ":", "-."]
METRIC_MARKERS = ["o", "s", "^", "v", "D"]

PANEL_WIDTH_IN = 3.4  # one paper column
PANEL_HEIGHT_IN = 2.5

RC = {
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 3,
    "ytick.major.size": 3,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "grid.linewidth": 0.4,
    "grid.color": "#dddddd",
    "pdf.fonttype": 42,  # embed TrueType: editable text, accepted by paper systems
    "ps.fonttype": 42,
    "savefig.dpi": 300,
}


def metric_label(column: str) -> str:
    """Human name of a metric column: ``pgd_acc`` -> ``PGD``, ``pgd50x10_acc`` -> ``PGD50x10``."""
    if column in METRIC_LABELS:
        return METRIC_LABELS[column]
    stem = column.removesuffix("_acc")
    return stem.upper() if stem.isalnum() else stem.replace("_", " ")


def group_styles(groups: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``group -> (colour, marker)``: fixed ones for the pruning modes and dense, a method's colour (and its
    pruning type's marker) for a method's group (``"irregular · HYDRA"``), spare ones in order."""
    styles: dict[str, tuple[str, str]] = {}
    spare = 0
    for group in groups:
        if group in styles:
            continue
        pruning, _, method = str(group).rpartition(" · ")  # "irregular · ADMM naive": a method's own group
        if group in GROUP_COLORS:
            styles[group] = (GROUP_COLORS[group], GROUP_MARKERS[group])
        elif method in METHOD_COLORS:
            styles[group] = (METHOD_COLORS[method], GROUP_MARKERS.get(pruning, METHOD_MARKERS[method]))
        else:
            styles[group] = (
                _SPARE_COLORS[spare % len(_SPARE_COLORS)],
                _SPARE_MARKERS[spare % len(_SPARE_MARKERS)],
            )
            spare += 1
    return styles


def method_styles(labels: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``method label -> (colour, marker)``: fixed ones for the known methods, spare ones in order."""
    styles: dict[str, tuple[str, str]] = {}
    spare = 0
    for label in labels:
        if label in styles:
            continue
        if label in METHOD_COLORS:
            styles[label] = (METHOD_COLORS[label], METHOD_MARKERS[label])
        else:
            styles[label] = (_SPARE_METHOD_COLORS[spare % len(_SPARE_METHOD_COLORS)],
                             _SPARE_MARKERS[spare % len(_SPARE_MARKERS)])  # fmt: skip
            spare += 1
    return styles


def group_order(groups: Iterable[str]) -> list[str]:
    """Groups in display order: irregular, channel, other channel modes, others sorted, dense last."""
    unique = set(groups)
    fixed = [g for g in ("irregular", "channel") if g in unique]
    rest = sorted(g for g in unique if g not in ("irregular", "channel", DENSE))
    channel_modes = [g for g in rest if g.startswith("channel")]
    others = [g for g in rest if not g.startswith("channel")]
    return fixed + channel_modes + others + ([DENSE] if DENSE in unique else [])
