"""The one chooser: every output of a run shows what reports/chooser.py chose, and only it chooses.

* A scan of dnr_sweep/ fails when a module other than the chooser decides which trials count or
  which form a front (see :data:`FORBIDDEN`).
* For one results table, the terminal summary, ``pareto.csv``, ``index.html`` and ``table2.csv``
  name the same configurations (trial ids).
* Table 2's numbers equal means and Student t intervals computed by hand; its rows are chosen at
  matched compression, on validation figures, with ties never broken by row order.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dnr_sweep.config import validate_sweep
from dnr_sweep.reports import build_report
from dnr_sweep.reports import methods as method_report
from dnr_sweep.reports.chooser import choose_methods, choose_run, finished_mask, ranked, select
from dnr_sweep.reports.compare import compare, write_comparison
from dnr_sweep.reports.labels import METHOD_LABEL
from dnr_sweep.reports.load import load_run
from dnr_sweep.reports.settings import resolve_settings
from dnr_sweep.reports.style import METHOD_COLORS
from dnr_sweep.sweep.results import summary_lines
from tests.synthetic_runs import METHOD_CONFIG, synthetic_method_tables, write_synthetic_method_run

PACKAGE = Path(__file__).resolve().parents[1] / "dnr_sweep"
CHOOSER = "reports/chooser.py"
T_975_4 = 2.7764451051977987  # Student t quantile t(0.975, 4): a 95% interval from 5 seeds
T_975_2 = 4.302652729911275  # t(0.975, 2): 3 seeds

# ------------------------------------------------------------------------- nobody else chooses

#: What only the chooser may do, anywhere in dnr_sweep/:
#: ``pareto_front``: call ``pareto_front`` (which configurations form a front);
#: ``TERMINATED``: compare something (==, !=, in) with the status ``"TERMINATED"``, written as the
#: literal or as a name ``FINISHED``/``STATUS_FINISHED`` (which trials finished);
#: ``early_stopped``: read an ``early_stopped`` value (``x["early_stopped"]``, ``x.get("early_stopped")``)
#: (which trials stopped early).
FORBIDDEN = ("pareto_front", "TERMINATED", "early_stopped")
#: Places that do such a thing for another purpose than choosing what a report shows: each is
#: ``(module, function, what) -> why``. Ray Tune's own trial statuses, counted or mapped, are Tune
#: bookkeeping; writing or normalising the ``early_stopped`` column is the table's bookkeeping.
ALLOWED = {
    ("sweep/live.py", "LiveReport._write_in", "TERMINATED"): "counts Tune's finished trials for the live page",
    ("sweep/outcome.py", "outcome_from_trials", "TERMINATED"): "a Tune trial not TERMINATED: the sweep was cut",
    ("sweep/results.py", "assemble_tables", "TERMINATED"): "maps Tune's status onto results.status",
    ("sweep/results.py", "assemble_tables", "early_stopped"): "marks Tune's TERMINATED-but-stopped rows",
    ("reports/load.py", "normalise_results", "early_stopped"): "the column's dtype (a missing value: stopped)",
    ("sweep/status.py", "_trial_status", "TERMINATED"): "dnr-sweep status: a trial's state from Tune's",
    ("sweep/status.py", "format_status", "early_stopped"): "dnr-sweep status: the count of a trial state",
}


def _is_finished_status(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value == "TERMINATED"
    if isinstance(node, ast.Name | ast.Attribute):
        return (node.id if isinstance(node, ast.Name) else node.attr) in ("FINISHED", "STATUS_FINISHED")
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_finished_status(e) for e in node.elts)
    return False


def choosing_sites(source: str) -> set[tuple[str, str]]:
    """``(function, what)`` for every place in ``source`` that does one of :data:`FORBIDDEN`."""
    found: set[tuple[str, str]] = set()

    class Visitor(ast.NodeVisitor):
        def __init__(self) -> None:
            self.scope: list[str] = []

        def _enter(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
            self.scope.append(node.name)
            self.generic_visit(node)
            self.scope.pop()

        visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _enter

        def _add(self, what: str) -> None:
            found.add((".".join(self.scope) or "<module>", what))

        def visit_Compare(self, node: ast.Compare) -> None:
            if any(_is_finished_status(n) for n in (node.left, *node.comparators)):
                self._add("TERMINATED")
            self.generic_visit(node)

        def visit_Call(self, node: ast.Call) -> None:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name == "pareto_front":
                self._add("pareto_front")
            if name == "get" and node.args and isinstance(node.args[0], ast.Constant):
                if node.args[0].value == "early_stopped":
                    self._add("early_stopped")
            self.generic_visit(node)

        def visit_Subscript(self, node: ast.Subscript) -> None:
            key = node.slice
            if isinstance(key, ast.Constant) and key.value == "early_stopped" and isinstance(node.ctx, ast.Load):
                self._add("early_stopped")
            self.generic_visit(node)

    Visitor().visit(ast.parse(source))
    return found


def test_the_scan_finds_a_module_that_chooses_for_itself():
    """The scan can fail: each forbidden way of choosing, written anew, is found."""
    source = """
def summary(df, rows):
    done = df[df["status"] == "TERMINATED"]
    kept = done[~done["early_stopped"]]
    return pareto_front(kept, {"val_pgd_acc": "max"}), [r for r in rows if r.status in (FINISHED,)]
"""
    assert choosing_sites(source) == {("summary", "TERMINATED"), ("summary", "early_stopped"),
                                      ("summary", "pareto_front")}  # fmt: skip
    assert choosing_sites("x = row.get('early_stopped')\ny = s.status != STATUS_FINISHED") == {
        ("<module>", "early_stopped"), ("<module>", "TERMINATED")}  # fmt: skip
    assert choosing_sites("df['early_stopped'] = True\nlabel = {'TERMINATED': 'finished'}") == set()


def test_only_the_chooser_decides_which_trials_count_and_which_form_a_front():
    sites = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for function, what in choosing_sites(path.read_text()):
            sites[(module, function, what)] = path
    outside = sorted(k for k in sites if k[0] != CHOOSER and k not in ALLOWED)
    assert not outside, f"choose through dnr_sweep/{CHOOSER} (finished_mask, select, ranked, choose_methods): {outside}"
    assert {(m, w) for m, _, w in sites if m == CHOOSER} == {(CHOOSER, w) for w in FORBIDDEN}
    stale = sorted(set(ALLOWED) - set(sites))
    assert not stale, f"ALLOWED lists places that no longer exist: {stale}"


# ------------------------------------------------------- one choice: summary, pareto.csv, html, table2


def _html_table_first_cells(html: str, title: str) -> list[str]:
    section = html.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]
    return [re.sub(r"\s+", " ", cell).strip() for cell in re.findall(r"<tr>\s*<td>(.*?)</td>", section, re.S)]


def _ids_in_order(text: str) -> list[str]:
    return re.findall(r"\bm\d{3}\b", text)


def test_summary_pareto_csv_index_html_and_table2_name_the_same_configurations(tmp_path):
    run_dir = write_synthetic_method_run(tmp_path / "run")
    run = load_run(run_dir)
    lines = summary_lines(run.results, run.epochs, run.config, metric="val_pgd_acc")
    build_report(run_dir)
    report = run_dir / "report"

    pareto = pd.read_csv(report / "pareto.csv")
    expected = [t for row in pareto["Trial"] for t in row.split()]
    assert len(pareto) >= 6 and len(set(pareto["Pruning type"])) >= 4  # a front per method, and the baseline
    pareto_block = lines[1]  # the table printed under "Pareto set per pruning type"
    assert lines[0].startswith("Pareto set per pruning type (report/pareto.csv)")
    assert _ids_in_order(pareto_block) == expected
    html = (report / "index.html").read_text()
    assert _html_table_first_cells(html, "Pareto-optimal models") == list(pareto["Trial"])

    table2 = pd.read_csv(report / "table2.csv")
    chosen = choose_run(run.results, run.epochs, run.config).methods
    assert list(table2["Trials"]) == [" ".join(ids) for ids in chosen.rows["trial_ids"]]
    assert list(table2["Method"]) == ["DNR", "ADMM naive", "L1 Lasso", "HYDRA"]
    assert lines[2].startswith("Table 2 (report/table2.csv)")
    printed = [t for row in table2.itertuples() for t in (row.Configuration, *row.Trials.split())]
    assert _ids_in_order(lines[3]) == printed  # each row's Configuration, then its Trials
    html_methods = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(
        r"<tr>(.*?)</tr>", html.split("<h2>Table 2: methods at matched compression</h2>", 1)[1].split("<h2>")[0], re.S)]  # fmt: skip
    assert [cells[-1] for cells in html_methods if cells] == list(table2["Trials"])
    # the best configuration by tune.metric is one of the chooser's configurations, chosen on validation
    configs = choose_run(run.results, run.epochs, run.config).selection.configurations
    best = configs.loc[configs["val_pgd_acc"].idxmax(), "trial_ids"]
    assert lines[-1] == f"best configuration by val_pgd_acc (max): {' '.join(best)} (3 seeds)"


def test_summary_follows_the_runs_report_settings():
    results, epochs = synthetic_method_tables()
    config = {**METHOD_CONFIG, "report": {"y": ["pgd_acc"], "objectives": {"compression": "max", "pgd_acc": "max"}}}
    lines = summary_lines(results, epochs, config)
    assert "objectives: compression (max), val_pgd_acc (max)" in lines[0]
    header = lines[1].splitlines()[0]
    assert "PGD" in header and "Clean" not in header and "FGSM" not in header


# ------------------------------------------------------------------------------------------ Table 2


def _trials(rows: list[dict], **common) -> pd.DataFrame:
    base = {"status": "TERMINATED", "early_stopped": False, "model.arch": "vgg16", "data.dataset": "cifar10",
            "selected_on": "val", "select_metric": "val_pgd_acc", "pruning_type": "irregular",
            "dnr.pruning": "irregular", "fgsm_acc": 50.0, "val_fgsm_acc": 50.0}  # fmt: skip
    return pd.DataFrame([{**base, **common, **row} for row in rows])


def _config(method: str, density: float, seed: int, trial: str, compression: float, val_pgd: float, **extra):
    return {"trial_id": trial, "method": method, f"{method}.density": density, "train.seed": seed,
            "compression": compression, "val_pgd_acc": val_pgd, "val_clean_acc": 80.0, "clean_acc": 79.0,
            "pgd_acc": val_pgd - 1.0, **extra}  # fmt: skip


def test_table2_mean_and_ci_over_five_seeds_equal_a_hand_computation():
    clean = [84.1, 85.3, 83.7, 86.0, 84.9]
    pgd = [41.2, 42.8, 40.9, 43.1, 42.0]
    compression = [19.8, 20.1, 19.9, 20.4, 20.0]
    fe = [5400.0, 5400.0, 5400.0, 5400.0, 5400.0]
    rows = [_config("dnr", 0.05, s, f"d{s}", compression[s], 40.0 + s, clean_acc=clean[s], pgd_acc=pgd[s],
                    train_fwd_equiv=fe[s], train_adv_epochs=195, epochs=200, epochs_warmup=5, epochs_hybrid=195)
            for s in range(5)]  # fmt: skip
    rows += [_config("admm", 0.05, s, f"a{s}", 19.7, 39.0, clean_acc=83.0 + s, pgd_acc=40.0) for s in range(2)]
    epochs = pd.DataFrame({"trial_id": ["d0", "d0", "d1"], "epoch": [1, 2, 1], "epoch_time_s": [10.0, 12.0, 30.0]})
    choice = choose_methods(select(_trials(rows), y=["clean_acc", "fgsm_acc", "pgd_acc"]))
    table = method_report.table2(choice, epochs)
    dnr = table[table["Method"] == "DNR"].iloc[0]

    def by_hand(values: list[float]) -> tuple[float, float]:
        n = len(values)
        mean = sum(values) / n
        s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        return mean, T_975_4 * s / math.sqrt(n)

    for column, values in (("Clean", clean), ("PGD", pgd), ("Compression (×)", compression)):
        mean, ci = by_hand(values)
        assert dnr[column] == pytest.approx(mean, rel=1e-12), column
        assert dnr[f"{column} ±95% CI"] == pytest.approx(ci, rel=1e-12), column
    assert dnr["Seeds"] == 5 and dnr["Trials"] == "d0 d1 d2 d3 d4" and dnr["Configuration"] == "d0"
    assert dnr["FE per image"] == 5400.0 and dnr["Adversarial epochs"] == 195
    assert dnr["Epochs per phase"] == "warmup 5 + hybrid 195" and dnr["Training epochs"] == 200
    assert dnr["Wall time (s)"] == pytest.approx((22.0 + 30.0) / 2)  # the mean over the seeds it has
    assert dnr["Chosen on"] == "val_pgd_acc" and dnr["Matched compression"] == "yes"
    admm = table[table["Method"] == "ADMM naive"].iloc[0]
    assert admm["Clean"] == 83.5 and admm["Clean ±95% CI"] == pytest.approx(12.706204736174703 * 0.5)
    tex = method_report.to_latex(table, choice)
    mean, ci = by_hand(clean)
    assert f"{mean:.2f} $\\pm$ {ci:.2f}" in tex and r"\toprule" in tex


def test_matched_compression_chooses_within_ten_percent_of_the_reference_or_says_not_matched():
    rows = [
        _config("dnr", 0.125, 0, "d1", 8.0, 45.0),  # DNR's chosen configuration: the reference is 8x
        _config("dnr", 0.5, 0, "d2", 1.9, 44.0),
        _config("admm", 0.66, 0, "a1", 1.5, 48.0),  # ADMM's best overall, far from 8x
        _config("admm", 0.13, 0, "a2", 8.6, 41.0),  # within +-10% of 8x: ADMM's row
        _config("admm", 0.12, 0, "a3", 7.1, 46.0),  # 11% below 8x: not matched
        _config("admm", 0.08, 0, "a4", 12.0, 40.0),
        _config("lasso", 0.66, 0, "l1", 1.5, 47.0),  # Lasso has nothing near 8x
        _config("lasso", 0.33, 0, "l2", 3.0, 46.5),
    ]
    selection = select(_trials(rows), y=["clean_acc", "pgd_acc"])
    choice = choose_methods(selection)
    chosen = dict(zip(choice.rows[METHOD_LABEL], choice.rows["configuration"], strict=True))
    matched = dict(zip(choice.rows[METHOD_LABEL], choice.rows["matched"], strict=True))
    assert choice.references == {"": 8.0} and choice.reference_from[""] == "DNR's chosen configuration"
    assert chosen == {"DNR": "d1", "ADMM naive": "a2", "L1 Lasso": "l1"}
    assert matched == {"DNR": True, "ADMM naive": True, "L1 Lasso": False}
    table = method_report.table2(choice, pd.DataFrame())
    assert list(table["Matched compression"]) == ["yes", "yes", "no"]
    assert r"1.50$\times$$^\dagger$" in method_report.to_latex(table, choice)  # not matched: marked

    # the report.table2_compression setting moves the reference; DNR is then matched like the others
    at_12 = choose_methods(selection, compression=12.0)
    chosen = dict(zip(at_12.rows[METHOD_LABEL], at_12.rows["configuration"], strict=True))
    assert chosen == {"DNR": "d1", "ADMM naive": "a4", "L1 Lasso": "l1"}
    assert list(at_12.rows["matched"]) == [False, True, False]
    # without DNR: the median of the methods' chosen configurations (1.5x and 1.5x)
    without = choose_methods(select(_trials(rows[2:]), y=["clean_acc", "pgd_acc"]))
    assert without.references == {"": 1.5} and list(without.rows["configuration"]) == ["a1", "l1"]


def test_ties_are_broken_by_the_other_validation_accuracy_then_the_trial_id_never_the_row_order():
    rows = [
        _config("admm", 0.10, 0, "z9", 10.0, 45.0, val_clean_acc=80.0),  # first row, same val PGD, worse val clean
        _config("admm", 0.11, 0, "b2", 10.0, 45.0, val_clean_acc=81.0),  # a full tie with a1 ...
        _config("admm", 0.12, 0, "a1", 10.0, 45.0, val_clean_acc=81.0),  # ... broken by the smaller trial id
        _config("lasso", 0.10, 0, "y5", 10.0, 45.0),  # a full tie: the smaller trial id wins
        _config("lasso", 0.11, 0, "c3", 10.0, 45.0),
    ]
    for order in (rows, rows[::-1]):
        choice = choose_methods(select(_trials(order), y=["clean_acc", "pgd_acc"]))
        chosen = dict(zip(choice.rows[METHOD_LABEL], choice.rows["configuration"], strict=True))
        assert chosen == {"ADMM naive": "a1", "L1 Lasso": "c3"}
    configs = select(_trials(rows), y=["clean_acc", "pgd_acc"]).configurations
    assert list(ranked(configs, "val_pgd_acc", ties=("val_clean_acc",))["configuration"]) == [
        "a1", "b2", "c3", "y5", "z9"]  # fmt: skip


def test_paper_protocol_table2_chooses_on_test_selection_figures_and_says_so():
    rows = [_config("dnr", 0.1, 0, "d0", 10.0, 0.0), _config("admm", 0.1, 0, "a0", 10.0, 0.0),
            _config("admm", 0.2, 0, "a1", 10.0, 0.0)]  # fmt: skip
    paper = _trials(rows, selected_on="test", select_metric="test_clean_acc").drop(
        columns=["val_pgd_acc", "val_clean_acc", "val_fgsm_acc"]
    )
    paper = paper.assign(test_clean_acc=[90.0, 80.0, 85.0], test_fgsm_acc=50.0, test_pgd_acc=40.0)
    choice = choose_methods(select(paper, y=["clean_acc", "pgd_acc"]))
    assert list(choice.rows["configuration"]) == ["d0", "a1"] and set(choice.rows["chosen_on"]) == {"test_clean_acc"}
    table = method_report.table2(choice, pd.DataFrame())
    assert set(table["Chosen on"]) == {"test_clean_acc (paper protocol)"}
    assert "selected on test (paper protocol)" in method_report.caption(choice)


def test_seeds_of_different_methods_are_never_one_configuration():
    rows = [_config("dnr", 0.1, 0, "d0", 10.0, 45.0), _config("admm", 0.1, 0, "a0", 10.0, 44.0)]
    table = _trials(rows).drop(columns=["dnr.density", "admm.density"])  # only the method tells them apart
    configs = select(table, y=["clean_acc", "pgd_acc"]).configurations
    assert sorted(configs["configuration"]) == ["a0", "d0"] and set(configs["n_seeds"]) == {1}


def test_unfinished_trials_never_represent_a_method():
    rows = [_config("dnr", 0.1, 0, "d0", 10.0, 45.0), _config("admm", 0.1, 0, "a0", 10.0, 44.0),
            _config("admm", 0.1, 1, "a1", 10.0, 99.0), _config("admm", 0.2, 0, "a2", 10.0, 99.0)]  # fmt: skip
    table = _trials(rows)
    table.loc[2, "early_stopped"] = True
    table.loc[3, "status"] = "ERROR"
    assert finished_mask(table).tolist() == [True, True, False, False]
    choice = choose_methods(select(table, y=["clean_acc", "pgd_acc"]))
    assert list(choice.rows["trial_ids"]) == [("d0",), ("a0",)]


# ------------------------------------------------------------------------------- the methods figure


def test_methods_figure_draws_each_methods_validation_front_with_seed_intervals():
    from dnr_sweep.reports import figures

    rows = []
    for s, (v1, t1, v2, t2) in enumerate(
        [(45.0, 44.0, 40.0, 39.0), (46.0, 45.0, 41.0, 40.0), (47.0, 43.0, 39.0, 41.0)]
    ):
        rows += [_config("dnr", 0.1, s, f"d{s}", 10.0, v1, pgd_acc=t1),
                 _config("dnr", 0.05, s, f"e{s}", 20.0, v2, pgd_acc=t2)]  # fmt: skip
    rows += [_config("admm", 0.1, 0, "a0", 10.0, 44.0, pgd_acc=48.0),  # dominated on validation: not drawn
             _config("admm", 0.05, 0, "a1", 20.0, 44.5, pgd_acc=30.0)]  # fmt: skip
    selection = select(_trials(rows), y=["clean_acc", "pgd_acc"])
    choice = choose_methods(selection)
    data = method_report.methods_figure_data(choice, selection)
    panel = data.panels[("", "pgd_acc")]
    assert panel.chosen_on == "val_pgd_acc"
    dnr = panel.fronts["DNR"]
    assert dnr.configurations == ("d0", "e0") and dnr.x == (10.0, 20.0) and dnr.n_seeds == (3, 3)
    for got, values in zip(dnr.ci, ([44.0, 45.0, 43.0], [39.0, 40.0, 41.0]), strict=True):
        mean = sum(values) / 3
        assert got == pytest.approx(T_975_2 * math.sqrt(sum((v - mean) ** 2 for v in values) / 2) / math.sqrt(3))
    assert dnr.y == pytest.approx((44.0, 40.0))
    assert panel.fronts["ADMM naive"].configurations == ("a1",)  # a0 is dominated by a1 on validation
    assert len(panel.points.x) == 8  # every finished trial, one point per seed

    fig = figures.methods(data)
    line = next(a for ax in fig.axes for a in ax.get_lines() if a.get_gid() == "method:pgd_acc:DNR")
    assert line.get_color() == METHOD_COLORS["DNR"]
    assert any(a.get_gid() == "ci:pgd_acc:DNR" for ax in fig.axes for a in ax.get_children())


# ---------------------------------------------------------------------------- settings and many runs


def test_table2_compression_is_a_report_setting_of_the_schema_and_the_report():
    assert resolve_settings({"report": {"table2_compression": 20}}).table2_compression == 20.0
    assert resolve_settings({"report": {"table2_compression": 20}}, table2_compression=8.0).table2_compression == 8.0
    with pytest.raises(ValueError, match="table2_compression must be a compression > 0"):
        resolve_settings({"report": {"table2_compression": -1}})
    base = {"data": {"dataset": "digits"}, "model": {"arch": "smallcnn"}}
    assert validate_sweep({**base, "report": {"table2_compression": 12.5}}).report.table2_compression == 12.5
    with pytest.raises(ValueError, match="table2_compression"):
        validate_sweep({**base, "report": {"table2_compression": 0}})


def test_the_reference_compression_setting_reaches_table2_csv(tmp_path):
    run_dir = write_synthetic_method_run(tmp_path / "run")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["report"]["table2_compression"] = 10.26
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    build_report(run_dir, formats=["png"])
    table = pd.read_csv(run_dir / "report" / "table2.csv")
    assert set(table["Reference compression (×)"]) == {10.26}
    assert list(table["Matched compression"]) == ["yes", "yes", "no", "yes"]  # Lasso lands at 1.9x or 3.5x
    assert np.allclose(table.loc[table["Matched compression"] == "yes", "Compression (×)"], 10.2564, atol=1e-3)


def test_several_runs_share_one_table2_through_the_same_chooser(tmp_path):
    results, epochs = synthetic_method_tables()
    results["dnr.pruning"] = "irregular"  # a column config.yaml need not add (ADMM's ratios: the default)
    config = {k: v for k, v in METHOD_CONFIG.items() if k != "admm"}
    parts = {"dnr_run": results["method"] == "dnr", "baselines": results["method"] != "dnr"}
    folders = []
    for name, rows in parts.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        results[rows].to_parquet(folder / "results.parquet", index=False)
        epochs[epochs["trial_id"].isin(results.loc[rows, "trial_id"])].to_parquet(folder / "epochs.parquet")
        folders.append(folder)
    comparison = compare(folders, labels=["dnr_run", "baselines"])
    assert not comparison.runs["dnr_run"].results["trial_id"].str.contains(":").any()  # each run's own table kept
    single = choose_run(results, epochs, config).methods
    assert list(comparison.methods.rows[METHOD_LABEL]) == list(single.rows[METHOD_LABEL])
    prefixed = [tuple(t.split(":", 1)[1] for t in ids) for ids in comparison.methods.rows["trial_ids"]]
    assert prefixed == list(single.rows["trial_ids"])  # the same configurations as one run of all methods
    written = {p.name for p in write_comparison(comparison, tmp_path / "out", formats=["png"])}
    assert {"table2.csv", "table2.tex", "methods.png", "pareto.csv"} <= written
    assert pd.read_csv(tmp_path / "out" / "table2.csv")["Trials"].str.startswith(("dnr_run:", "baselines:")).all()


def test_the_summary_and_table2_are_computed_without_plotting_or_torch():
    import subprocess
    import sys

    code = """
import sys
from dnr_sweep.reports import methods
from dnr_sweep.reports.chooser import choose_run
from tests.synthetic_runs import METHOD_CONFIG, synthetic_method_tables
from dnr_sweep.sweep.results import summary_lines
results, epochs = synthetic_method_tables()
summary_lines(results, epochs, METHOD_CONFIG)
choice = choose_run(results, epochs, METHOD_CONFIG)
methods.methods_figure_data(choice.methods, choice.selection)
bad = {'matplotlib', 'torch', 'ray'} & {m.split('.')[0] for m in sys.modules}
assert not bad, bad
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)
