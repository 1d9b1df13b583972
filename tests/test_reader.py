"""The one JSON reader (``dnr_sweep/foundation/reader.py``) and its schemas: no module parses JSON or YAML anywhere
else (an AST scan with an allow-list, each entry with its reason); what ``resume`` refuses and what ``status`` and
``report`` leave out, named by file and field. The property-based harness over a real run folder is
``tests/test_reader_harness.py``."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from dnr_sweep.config import load_sweep_config
from dnr_sweep.foundation import reader
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import InputFileError
from dnr_sweep.foundation.schemas import AttackStrength, DataRecord, EpochRecord, SweepFile
from dnr_sweep.foundation.tune_schemas import ExperimentState, ResultLine
from tests.test_hostile import BASE, _run_folder, call, write_yaml
from tests.test_writer import _dotted

REPO = Path(__file__).resolve().parents[1]
FIXTURE_STATE = REPO / "tests" / "fixtures" / "experiment_state.json"

# ------------------------------------------------------------------------------------------------
# Closed by construction: the bypass scan

#: where JSON and YAML may be parsed: the reader, and the YAML parser every YAML file goes through
READER_MODULES = ("dnr_sweep/foundation/reader.py",)

#: calls that parse JSON or YAML text (qualified names after resolving imports), and methods that do (any object)
PARSERS = {
    "json.load", "json.loads", "json.JSONDecoder", "json.decoder.JSONDecoder", "simplejson.loads", "ujson.loads",
    "orjson.loads", "pydantic_core.from_json", "pandas.read_json", "yaml.load", "yaml.safe_load", "yaml.full_load",
    "yaml.unsafe_load", "yaml.load_all", "yaml.safe_load_all", "yaml.full_load_all", "yaml.unsafe_load_all",
    "dnr_sweep.foundation.yaml_safe.load",
}  # fmt: skip
PARSER_METHODS = {"model_validate_json", "validate_json", "raw_decode"}

#: every parse outside the reader, and why it may stay there
ALLOWED = {
    ("dnr_sweep/foundation/yaml_safe.py", "yaml.load"):
        "the YAML parser itself (a SafeLoader with YAML 1.2 floats): every YAML text is read through it",
    ("dnr_sweep/config/load.py", "dnr_sweep.foundation.yaml_safe.load"):
        "a config file: parsed once and validated by the config schema (pydantic) at the boundary",
    ("dnr_sweep/config/overrides.py", "dnr_sweep.foundation.yaml_safe.load"):
        "a --set value, not a file: parsed as YAML, then validated by the config schema with the rest",
    ("dnr_sweep/reports/load.py", "dnr_sweep.foundation.yaml_safe.load"):
        "a run folder's config.yaml read as a mapping for the report's settings: resolve_settings and "
        "cli/report.py's check_settings validate every setting before use (test_hostile_matrix)",
    ("dnr_sweep/foundation/http.py", "json.loads"):
        "an answer of the Ray job API over HTTP, not a file: parsed under a byte cap, its shape checked where each "
        "answer is used (sweep/jobs.py)",
}  # fmt: skip


def _imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it refers to, from the module's imports (function-level imports included)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def parse_calls(root: Path, package: str = "dnr_sweep") -> set[tuple[str, str]]:
    """``(module path, parser)`` for every call that parses JSON or YAML outside :data:`READER_MODULES`."""
    found = set()
    for path in sorted((root / package).rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in READER_MODULES:
            continue
        tree = ast.parse(path.read_text(), filename=relative)
        names = _imports(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func, names)
            if name in PARSERS:
                found.add((relative, name))
            elif isinstance(node.func, ast.Attribute) and node.func.attr in PARSER_METHODS:
                found.add((relative, f".{node.func.attr}"))
    return found


def test_no_module_parses_json_or_yaml_outside_the_reader():
    """A new module that parses a file itself fails here: read it with dnr_sweep.foundation.reader and a schema
    (or, for a reason that holds, add it to ALLOWED with that reason)."""
    found = parse_calls(REPO)
    assert found - set(ALLOWED) == set(), "parse these through dnr_sweep.foundation.reader with a schema"
    assert set(ALLOWED) - found == set(), "stale entries in ALLOWED: remove them"
    assert all(reason.strip() for reason in ALLOWED.values())


def test_the_scan_sees_aliases_function_level_imports_and_parser_methods(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "a.py").write_text(
        "import json as j\nfrom json import loads as parse\nimport yaml\nfrom pydantic_core import from_json\n"
        "def f(text, Model):\n    from dnr_sweep.foundation import yaml_safe\n"
        "    return j.load(text), parse(text), yaml.safe_load(text), from_json(text), yaml_safe.load(text), "
        "Model.model_validate_json(text), json.dumps(text)\n"
    )
    assert parse_calls(tmp_path, "pkg") == {
        ("pkg/sub/a.py", "json.load"), ("pkg/sub/a.py", "json.loads"), ("pkg/sub/a.py", "yaml.safe_load"),
        ("pkg/sub/a.py", "pydantic_core.from_json"), ("pkg/sub/a.py", "dnr_sweep.foundation.yaml_safe.load"),
        ("pkg/sub/a.py", ".model_validate_json"),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------
# The reader: strict names file, field and fix; lenient leaves the smallest part out


def test_strict_names_the_file_the_field_and_the_fix(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text('{"overrides": ["a=1", 2]}')
    with pytest.raises(InputFileError) as info:
        reader.read_strict(path, SweepFile, expected="what run wrote", fix="Restore it.")
    assert str(info.value) == (
        f"{path}: field overrides is a list of 2 item(s), expected a list of texts ('key=value', as given to --set); "
        "expected what run wrote. Restore it."
    )
    path.unlink()
    path.mkdir()
    with pytest.raises(InputFileError, match="sweep.json: is a folder, not a file"):
        reader.read_strict(path, SweepFile, expected="x", fix="y")


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('{"epoch": 1, "val_clean_acc": "high"}', "val_clean_acc is the text 'high', expected an accuracy in [0, 100]"),
        ('{"epoch": 1, "val_clean_acc": 1e999}', "val_clean_acc is infinite, expected an accuracy in [0, 100]"),
        ('{"epoch": 1, "density": 1.5}', "density is the number 1.5, expected a fraction in [0, 1]"),
        ('{"epoch": 1, "this_epoch/phase": "<b>"}', "this_epoch/phase is the text '<b>', expected one of warmup"),
        ('{"epoch": 1, "this_epoch/loss": [1]}', "this_epoch/loss is a list of 1 item(s), expected a finite number"),
        ('{"epoch": 1, "selected_epoch": true}', "selected_epoch is true, expected an integer in [1, 10000]"),
        ('{"epoch": 1, "trial_id": {"a": 1}}', "trial_id is an object, expected text"),
        ('{"epoch": 1, "mystery": {"a": 1}}', "mystery is an object, expected a number, text, true, false or null"),
    ],
)
def test_a_bad_figure_is_left_out_of_its_line_and_named(tmp_path, line, said):
    path = tmp_path / rc.TUNE_RESULT_FILE
    path.write_text('{"epoch": 2, "val_clean_acc": NaN, "compression": Infinity}\n' + line + "\n")
    lines, notes = reader.read_lines(path, ResultLine)
    assert len(lines) == 2 and lines[1].epoch == 1 and len(notes) == 1, notes
    assert notes[0].startswith(f"{path}:2: {said}") and notes[0].endswith("; left out"), notes
    first = lines[0].as_dict()
    assert math.isnan(first["val_clean_acc"]) and first["compression"] == math.inf  # NaN: not measured


def test_a_line_whose_epoch_is_wrong_is_skipped_whole(tmp_path):
    path = tmp_path / rc.TUNE_RESULT_FILE
    path.write_text('{"epoch": "2"}\n5\n{"epoch": 3}\n')
    lines, notes = reader.read_lines(path, ResultLine)
    assert [line.epoch for line in lines] == [3]
    assert notes == [f"{path}:1: epoch is the text '2', expected an integer; skipped",
                     f"{path}:2: is the integer 5, expected a JSON object; skipped"]  # fmt: skip


def test_a_folder_where_a_file_belongs_is_a_note_for_the_lenient_reader(tmp_path):
    (tmp_path / rc.TRIAL_EPOCHS_FILE).mkdir()
    record, notes = reader.read_lenient(tmp_path / rc.TRIAL_EPOCHS_FILE, EpochRecord, unusable="not used")
    assert record is None and notes == [f"{tmp_path / rc.TRIAL_EPOCHS_FILE}: is a folder, not a file; not used"]
    assert reader.read_lenient(tmp_path / "absent.json", EpochRecord, unusable="x") == (None, [])


def test_a_damaged_trial_entry_is_left_out_whole_and_named():
    state = json.loads(FIXTURE_STATE.read_text())
    trial = json.loads(state["trial_data"][0][0])
    good = state["trial_data"][0]
    state["trial_data"] = [good, 5, [json.dumps({**trial, "trial_id": 7}), good[1]], [json.dumps(
        {**trial, "status": "DONE", "trial_id": "b"}), good[1]]]  # fmt: skip
    value, notes = reader.parse_lenient(json.dumps(state), ExperimentState, source="S", unusable="unusable")
    assert value is not None and [t.trial_id for t, _ in value.trial_data] == [trial["trial_id"], "b"]
    assert value.trial_data[1][0].status == "PENDING"  # the bad status left out: Tune's default
    assert notes == [
        "S: trial_data[1] is the integer 5, expected a JSON list; left out",
        "S: trial_data[2][0].trial_id is the integer 7, expected text; trial_data[2] left out",
        "S: trial_data[3][0].status is the text 'DONE', expected 'PENDING', 'RUNNING', 'PAUSED', 'TERMINATED' or "
        "'ERROR'; left out",
    ]


def test_curves_and_records_read_back_what_their_writers_write(tmp_path):
    curves = {"steps": {1: 50.0, 10: 40.0}, "eps": {0.1: 45.0}}
    path = tmp_path / rc.ATTACK_STRENGTH_FILE
    path.write_text(json.dumps(curves))
    read, notes = reader.read_lenient(path, AttackStrength, unusable="x")
    assert notes == [] and read is not None and read.curves() == {"steps": {1.0: 50.0, 10.0: 40.0}, "eps": {0.1: 45.0}}
    path.write_text('{"steps": {"1": 50.0, "ten": 40.0, "20": NaN}}')
    read, notes = reader.read_lenient(path, AttackStrength, unusable="x")
    assert read is not None and read.curves()["steps"] == {1.0: 50.0} and len(notes) == 2
    record = {"dataset": "cifar10", "archive_md5": "0" * 32, "files": {"a/b.bin": [3, 17]}}
    path.write_text(json.dumps(record))
    read, _ = reader.read_lenient(path, DataRecord, unusable="x")
    assert read is not None and read.files == {"a/b.bin": (3, 17)}
    path.write_text(json.dumps({**record, "files": {"../../etc/passwd": [3, 17]}}))
    assert reader.read_lenient(path, DataRecord, unusable="x", prune=False)[0] is None


# ------------------------------------------------------------------------------------------------
# Through the commands: resume refuses before Ray, status goes on


def _state_with(run_dir: Path, change) -> Path:  # noqa: ANN001
    path = next(run_dir.glob("experiment_state-*.json"))
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))
    return path


def test_the_fixture_state_resumes_and_passes_complete(tmp_path):
    from dnr_sweep.sweep.restore import check_restorable

    assert check_restorable(_run_folder(tmp_path / "run")) == "DNRTrainable"  # the name earlier versions gave it
    reader.parse_strict(FIXTURE_STATE.read_bytes(), ExperimentState, source="x", expected="x", fix="x", complete=True)


RESUME_REFUSALS = {
    "a trial entry that is a number": (lambda s: s["trial_data"].append(5), "field trial_data[1] is the integer 5"),
    "a trial entry of one text": (lambda s: s["trial_data"].append([s["trial_data"][0][0]]),
                                  "field trial_data[1] has no item 1 (it is a list of 1 item(s))"),
    "a trial whose JSON is a list": (lambda s: s["trial_data"][0].__setitem__(0, "[1, 2]"),
                                     "field trial_data[0][0] is a list of 2 item(s), expected a JSON object"),
    "a status Tune never writes": (lambda s: _edit_trial(s, status="RUNNING!"), "field trial_data[0][0].status"),
    "a trial folder outside the run": (lambda s: _edit_trial(s, relative_logdir="../elsewhere"),
                                       "field trial_data[0][0].relative_logdir is the text '../elsewhere'"),
    "a key Tune never writes": (lambda s: _edit_trial(s, is_finished=True),
                                "field trial_data[0][0].is_finished is not a field of this file"),
    "sampled values of another sweep": (lambda s: _edit_trial(s, config={"dnr.density": 0.5}),
                                        "holds the sampled values ['dnr.density'], where the sweep searches []"),
    "another trainable": (lambda s: _edit_trial(s, trainable_name="PPO"), "trains 'PPO', not dnr-sweep's"),
    "trials of two trainables": (lambda s: s["trial_data"].append(
        [json.dumps({**json.loads(s["trial_data"][0][0]), "trial_id": "8c833_00001", "trainable_name": "SweepTrainable"}),
         s["trial_data"][0][1]]), "trains 'SweepTrainable', where trial_data[0] trains 'DNRTrainable'"),
    "a controller attribute of the wrong type": (lambda s: s["runner_data"].__setitem__("_iteration", "7"),
                                                 "field runner_data._iteration is the text '7', expected an integer"),
    "NaN as the session's start": (lambda s: s["runner_data"].__setitem__("_start_time", math.nan),
                                   "field runner_data._start_time is NaN, expected a finite number"),
    "no trial": (lambda s: s.__setitem__("trial_data", []), "lists no trial"),
    "a trial twice": (lambda s: s["trial_data"].append(s["trial_data"][0]),
                      "field trial_data[1][0] (trial 8c833_00000) repeats trial 8c833_00000"),
    "a failure count below zero": (lambda s: _edit_meta(s, num_failures=-1), "num_failures is the integer -1"),
    "a last result with text for a figure": (lambda s: _edit_meta(s, last_result={"val_pgd_acc": "high"}),
                                             "last_result.val_pgd_acc is the text 'high'"),
}  # fmt: skip


def _edit_trial(state: dict, **fields) -> None:  # noqa: ANN003
    state["trial_data"][0][0] = json.dumps({**json.loads(state["trial_data"][0][0]), **fields})


def _edit_meta(state: dict, **fields) -> None:  # noqa: ANN003
    state["trial_data"][0][1] = json.dumps({**json.loads(state["trial_data"][0][1]), **fields})


@pytest.mark.parametrize("case", sorted(RESUME_REFUSALS))
def test_resume_refuses_a_state_of_the_wrong_shape_before_ray(tmp_path, case, no_ray):
    run_dir = _run_folder(tmp_path / "run")
    change, said = RESUME_REFUSALS[case]
    path = _state_with(run_dir, change)
    before = path.read_bytes()
    code, err = call(["resume", str(run_dir), "--no-dashboard"])
    assert code == 2 and "Traceback" not in err, err
    fix = "Start the sweep again" if case == "no trial" else "Restore the run folder"
    assert err.startswith(f"{path}: ") and said in err and fix in err, err
    assert path.read_bytes() == before and not (run_dir / rc.LOCK_FILE).exists()


def test_resume_refuses_a_folder_where_the_sweep_keeps_a_file(tmp_path, no_ray):
    run_dir = _run_folder(tmp_path / "run")
    (run_dir / rc.DRIVER_END_FILE).mkdir()
    code, err = call(["resume", str(run_dir), "--no-dashboard"])
    assert code == 2 and f"{run_dir / rc.DRIVER_END_FILE}: is a folder, not a file" in err, err
    (run_dir / rc.DRIVER_END_FILE).rmdir()
    trial = json.loads(json.loads(FIXTURE_STATE.read_text())["trial_data"][0][0])["relative_logdir"]
    (run_dir / trial / rc.TUNE_RESULT_FILE).mkdir(parents=True)
    code, err = call(["resume", str(run_dir), "--no-dashboard"])
    assert code == 2 and f"{trial}/{rc.TUNE_RESULT_FILE}: is a folder, not a file" in err, err


def test_resume_refuses_a_sweep_json_of_the_wrong_shape(tmp_path, no_ray):
    run_dir = _run_folder(tmp_path / "run")
    saved = json.loads((run_dir / rc.SWEEP_FILE).read_text())
    for bad, said in ((3, "field overrides is the integer 3"), ("x" * 64, "field config_sha256 is the text 'xxxx")):
        key = "overrides" if bad == 3 else "config_sha256"
        (run_dir / rc.SWEEP_FILE).write_text(json.dumps({**saved, key: bad}))
        code, err = call(["resume", str(run_dir), "--no-dashboard"])
        assert code == 2 and f"{run_dir / rc.SWEEP_FILE}: {said}" in err and "Restore it" in err, err


def test_status_leaves_a_damaged_trial_entry_out_and_counts_the_trial_from_its_folder(tmp_path):
    """The issue's case for status: a trial entry of the wrong JSON type is a note; the trial is still counted
    once (from its folder), and no trial is counted twice."""
    from dnr_sweep.sweep.status import sweep_status
    from tests.test_hostile_matrix import _status_run

    run = _status_run(tmp_path / "run", epochs_done=2, tune_status="TERMINATED", end="finished", parquet=True)
    path = next(run.glob("experiment_state-*.json"))
    state = json.loads(path.read_text())
    state["trial_data"][1] = 5
    path.write_text(json.dumps(state))
    status = sweep_status(run)
    assert status.trials_total == 2 and status.counts["finished"] == 2, (status.counts, status.notes)
    assert f"{path}: trial_data[1] is the integer 5, expected a JSON list; left out" in status.notes


def test_status_of_a_folder_whose_trials_reported_nothing(tmp_path):
    """A state listing a finished trial that left no result line: nothing left to train and no epoch measured."""
    code, err = call(["status", str(_run_folder(tmp_path / "run"))])
    assert code == 0 and err == "", err


def test_a_run_folder_of_an_earlier_version_resumes_under_the_name_it_recorded(tmp_path):
    """``Tuner.restore`` requires the trainable's recorded name: the trainable built for a folder that
    recorded an earlier name carries it, and a new folder gets today's."""
    from ray.tune.experiment import Experiment

    from dnr_sweep.sweep import trainable
    from dnr_sweep.sweep.tuner import make_trainable

    config = load_sweep_config(str(write_yaml(tmp_path / "c.yaml", BASE)))
    assert Experiment.get_trainable_name(make_trainable(config, "DNRTrainable")) == "DNRTrainable"
    assert issubclass(make_trainable(config, "DNRTrainable"), trainable.SweepTrainable)
    assert Experiment.get_trainable_name(make_trainable(config)) == "SweepTrainable"
