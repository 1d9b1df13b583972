"""Property-based harness of the one JSON reader over a real run folder: a finished two-trial digits sweep (built
once per session, with post-training evaluation, curves, checks and export, so every JSON file kind is there) is
copied per example; one JSON field of one file is replaced by another type (a list, an integer, text, NaN,
1e999, a nested object, null, true, or removed), or a whole file by a folder, optionally with the Parquet tables
removed so that ``report`` rebuilds from the trials' files; then ``status``, ``report`` and ``resume`` run.

Every outcome is exit 0 or 2 with a message, never a traceback; ``resume`` refuses before Ray starts (Ray's start
is replaced by a stop) whenever a folder stands where the sweep keeps a file or a trial entry is damaged, and
otherwise either refuses or reaches Ray's start; nothing is written outside the run folder and nothing of the
user's is lost (what ``report`` sets aside keeps its bytes as ``<name>.unreadable``). Figures are built but not
rendered (``savefig`` writes nothing), to keep the harness bounded; ``test_reports_figures`` renders them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dnr_sweep import cli
from dnr_sweep.foundation import reader
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.tune_schemas import ExperimentState
from tests.test_sweep import BASE

_GONE = object()
_INF_TEXT = "__1e999__"  # written as the literal 1e999 (a float that overflows to infinity)
REPLACEMENTS: dict[str, Any] = {
    "a list": [1, "x"], "an empty list": [], "an integer": 7, "a negative integer": -3, "text": "text", "NaN": math.nan,
    "1e999": _INF_TEXT, "minus infinity": -math.inf, "a nested object": {"nested": {"a": [1, {"b": None}]}},
    "null": None, "true": True, "removed": _GONE,
}  # fmt: skip
#: a trial's files written as JSON lines
LINES = (rc.TUNE_RESULT_FILE,)


class ReachedRay(Exception):
    """``resume`` passed every check and would start Ray now."""


@pytest.fixture(scope="session")
def finished_run(ray_session, tmp_path_factory) -> Path:  # noqa: ARG001 - the session's Ray runs the sweep
    """A finished sweep of two trials (irregular, channel) with every JSON file a run writes."""
    root = tmp_path_factory.mktemp("harness")
    config = {**BASE, "search": {"dnr.pruning": {"grid": ["irregular", "channel"]}},
              "evaluate": {"attacks": ["pgd5x2"], "limit": 32, "curves": True, "curve_eps": [0.05, 0.1],
                           "checks": True},
              "export": True}  # fmt: skip
    (root / "sweep.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    argv = ["run", str(root / "sweep.yaml"), "--storage", str(root / "runs"), "--name", "done", "--no-dashboard"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(argv) == 0
    return root / "runs" / "done"


@pytest.fixture
def no_ray_no_render(monkeypatch):
    from matplotlib.figure import Figure

    from dnr_sweep.sweep import cluster

    def stop(**_: Any) -> None:
        raise ReachedRay

    monkeypatch.setattr(cluster, "start_ray", stop)
    monkeypatch.setattr(Figure, "savefig", lambda self, handle, **_: handle.write(b""))


def _call(argv: list[str]) -> tuple[int | str, str]:
    """``dnr-sweep ARGV`` in this process: (exit code or "ray", stderr). Any other exception is a traceback."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code: int | str = cli.main(argv)
        except ReachedRay:
            code = "ray"
    return code, err.getvalue()


# ------------------------------------------------------------------------------------------------
# Fields of a JSON document (into Tune's trial entries, JSON held as text)


def _load(path: Path) -> Any:
    if path.name in LINES:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def _dump(path: Path, doc: Any) -> None:
    text = "".join(json.dumps(line) + "\n" for line in doc) if path.name in LINES else json.dumps(doc)
    path.write_text(text.replace(json.dumps(json.dumps(_INF_TEXT))[1:-1], "1e999").replace(f'"{_INF_TEXT}"', "1e999"))


def fields(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every part of ``doc`` (its path), the parts of JSON held as text included."""
    found = [prefix] if prefix else []
    node = reader.embedded(doc) if isinstance(doc, str) else doc
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found += fields(value, (*prefix, key))
    return found


def replaced(doc: Any, path: tuple, value: Any) -> Any:
    """``doc`` with the part at ``path`` replaced by ``value`` (removed for ``_GONE``)."""
    if isinstance(doc, str):  # JSON held as text: edited as data, written back as text
        return json.dumps(replaced(json.loads(doc), path, value), indent=2)
    head, rest = path[0], path[1:]
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    if rest:
        copy[head] = replaced(doc[head], rest, value)
    elif value is _GONE:
        del copy[head]
    else:
        copy[head] = value
    return copy


def json_files(run: Path) -> dict[str, list[tuple]]:
    """The run's JSON files (relative path -> the paths of their fields)."""
    names = ("*.json", f"*/{rc.TUNE_RESULT_FILE}", "*/*.json")
    paths = sorted({p for pattern in names for p in run.glob(pattern) if "basic-variant-state" not in p.name})
    return {p.relative_to(run).as_posix(): fields(_load(p)) for p in paths}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


#: what the commands themselves rewrite in a run folder: the tables and the report (``report``), the lock (``resume``)
_REWRITTEN = (rc.RESULTS_FILE, rc.EPOCHS_FILE, rc.LOCK_FILE)


def _check_nothing_lost(before: dict[str, bytes], sandbox: Path, run: Path) -> None:
    after = _snapshot(sandbox)
    prefix = run.relative_to(sandbox).as_posix() + "/"
    outside = {k for k in set(after) | set(before) if not k.startswith(prefix)}
    assert {k: after.get(k) for k in outside} == {k: before.get(k) for k in outside}, "written outside the run folder"
    for name, data in before.items():
        relative = name.removeprefix(prefix)
        if relative in _REWRITTEN or relative.startswith(f"{rc.REPORT_DIR}/"):
            continue
        kept = after.get(name) == data or after.get(f"{name}.unreadable") == data
        assert kept, f"{relative} was changed or deleted"


# ------------------------------------------------------------------------------------------------
# The properties


def _run_commands(run: Path, sandbox: Path, *, must_refuse: bool) -> dict[str, int | str]:
    before = _snapshot(sandbox)
    outcomes: dict[str, int | str] = {}
    for argv in (["status", str(run)], ["status", str(run), "--json"], ["report", str(run), "--format", "png"],
                 ["resume", str(run), "--no-dashboard", "--no-report"]):  # fmt: skip
        code, err = _call(argv)
        outcomes[" ".join(argv[:1] + argv[2:])] = code
        assert "Traceback" not in err, (argv, err)
        assert code in ((0, 2) if argv[0] != "resume" else (2, "ray")), (argv, code, err)
        if code == 2:
            assert err.strip() and "\n" not in err.strip().split("warning: ")[-1].strip(), (argv, err)
        if argv[0] == "resume" and must_refuse:
            assert code == 2, ("resume reached Ray's start", err)
        _check_nothing_lost(before, sandbox, run)
    return outcomes


def _damage_and_run(finished_run: Path, data: st.DataObject) -> None:
    files = json_files(finished_run)
    state = next(name for name in files if name.startswith("experiment_state"))  # what resume reads: a third
    relative = state if data.draw(st.integers(0, 2), label="Tune state") == 0 else data.draw(
        st.sampled_from(sorted(files)), label="file")  # fmt: skip
    as_folder = data.draw(st.integers(0, 7), label="folder") == 0 or not files[relative]  # {} has no field
    drop_tables = data.draw(st.booleans(), label="tables removed")
    sandbox = Path(tempfile.mkdtemp(prefix="dnr-harness-"))
    cwd = os.getcwd()
    try:
        run = sandbox / finished_run.name
        shutil.copytree(finished_run, run)
        target = run / relative
        if drop_tables:
            for name in (rc.RESULTS_FILE, rc.EPOCHS_FILE):
                (run / name).unlink()
        if as_folder:
            target.unlink()
            (target / "inside").mkdir(parents=True)
            event("a folder in place of a file")
            must_refuse = True
        else:
            path = data.draw(st.sampled_from(files[relative]), label="field")
            how = data.draw(st.sampled_from(sorted(REPLACEMENTS)), label="replacement")
            _dump(target, replaced(_load(target), path, REPLACEMENTS[how]))
            # a trial entry itself (not a field inside it) damaged: what Tune would restore as no trial at all
            # (a removed entry is no trial to restore: Tune restores the others, as it would)
            must_refuse = (relative.startswith("experiment_state") and path[0] == "trial_data" and len(path) <= 3
                           and not (how == "removed" and len(path) == 2))  # fmt: skip
            event(f"{Path(relative).name}: {how}")
        os.chdir(sandbox)
        outcomes = _run_commands(run, sandbox, must_refuse=must_refuse)
        event(f"resume: {outcomes['resume --no-dashboard --no-report']}")
    finally:
        os.chdir(cwd)
        shutil.rmtree(sandbox, ignore_errors=True)


def test_a_finished_run_reads_without_a_single_note(finished_run, no_ray_no_render):
    """Each schema accepts exactly what a real run writes: no note, no warning, and resume reaches Ray."""
    from dnr_sweep.sweep.status import sweep_status

    assert json_files(finished_run).keys() >= {rc.SWEEP_FILE, rc.DRIVER_END_FILE}
    kinds = {Path(name).name for name in json_files(finished_run)}
    for name in (rc.TRIAL_EPOCHS_FILE, rc.TUNE_PARAMS_FILE, rc.METRICS_FILE, rc.EVALUATION_FILE,
                 rc.ATTACK_STRENGTH_FILE, rc.EXPORT_SUMMARY_FILE, rc.TUNE_RESULT_FILE):  # fmt: skip
        assert name in kinds, name
    assert sweep_status(finished_run).notes == []
    state = next(finished_run.glob("experiment_state-*.json"))
    reader.read_strict(state, ExperimentState, expected="x", fix="x", complete=True)
    sandbox = Path(tempfile.mkdtemp(prefix="dnr-harness-"))
    try:
        run = sandbox / finished_run.name
        shutil.copytree(finished_run, run)
        for name in (rc.RESULTS_FILE, rc.EPOCHS_FILE):  # the report rebuilds from every trial file
            (run / name).unlink()
        code, err = _call(["report", str(run), "--format", "png"])
        assert code == 0 and err == "", err
        assert _call(["resume", str(run), "--no-dashboard"]) == ("ray", "")
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


_SETTINGS = {"deadline": None, "derandomize": True, "database": None,
             "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}  # fmt: skip


@settings(max_examples=12, **_SETTINGS)
@given(data=st.data())
def test_damaged_fields_and_files_end_in_exit_0_or_2_and_lose_nothing(finished_run, no_ray_no_render, data):
    _damage_and_run(finished_run, data)


@pytest.mark.slow
@settings(max_examples=60, **_SETTINGS)
@given(data=st.data())
def test_damaged_fields_and_files_end_in_exit_0_or_2_and_lose_nothing_many_more(finished_run, no_ray_no_render, data):
    _damage_and_run(finished_run, data)
