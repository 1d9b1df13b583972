"""Whatever the README and docs/ promise to refuse is refused (one message, exit code 2, no traceback), never
silently rewritten into something else and never after writing anything.

Every line of README.md and docs/*.md that says "refuse" has its case here, found by a phrase of that line; a new promise
without a case fails :func:`test_every_refusal_the_readme_promises_has_a_case`. Promises about Ray's own
refusals (the cluster's token) are proved by the slow tests named in :data:`ELSEWHERE`.
"""

from __future__ import annotations

import ast
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from dnr_sweep.foundation import locks as folder_lock
from dnr_sweep.foundation import run_contract as rc
from tests.synthetic_runs import write_synthetic_run
from tests.test_hostile import BASE, Hostile, _model_folder, _run_folder, _torch_bytes, call, write_yaml

REPO = Path(__file__).resolve().parents[1]


class Case:
    """A command that must be refused: ``argv`` (``{tmp}`` is the test's folder), the fragments its one
    message holds, and what must hold afterwards (nothing written, a payload never ran)."""

    def __init__(self, prepare: Callable[[Path], list[str]], fragments: list[str],
                 after: Callable[[Path], None] = lambda tmp: None) -> None:  # fmt: skip
        self.prepare, self.fragments, self.after = prepare, fragments, after


def config(tmp: Path, **blocks) -> str:
    return str(write_yaml(tmp / "c.yaml", {**BASE, **blocks}))


def incomparable_runs(tmp: Path) -> list[str]:
    val, test = write_synthetic_run(tmp / "val"), write_synthetic_run(tmp / "test", select_on="test")
    return ["report", str(val), str(test), "--out", str(tmp / "cmp")]


def nothing_at(*names: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        for name in names:
            assert not (tmp / name).exists(), name

    return check


def bad_mirror(tmp: Path) -> list[str]:
    (tmp / "mirror").mkdir()
    (tmp / "mirror" / "cifar-10-python.tar.gz").write_bytes(b"not the archive" * 100)
    return ["data", "fetch", "cifar10", "--root", str(tmp / "root"), "--mirror", str(tmp / "mirror")]


def nothing_kept(tmp: Path) -> None:
    kept = [p.name for p in (tmp / "root").iterdir() if p.name != ".cifar-10-batches-py.lock"]
    assert not kept, kept


def file_for_folder(tmp: Path) -> list[str]:
    (tmp / "root").mkdir()
    (tmp / "root" / "cifar-10-batches-py").write_text("a file where the data set's folder goes")
    return ["data", "check", "cifar10", "--root", str(tmp / "root")]


def link_loop(tmp: Path) -> list[str]:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return ["train", str(tmp / "a"), "--out", str(tmp / "out")]


def held_folder(tmp: Path) -> list[str]:
    held = folder_lock.hold(tmp / "out", purpose="a test")
    held.__enter__()  # released when the test's process ends; flock conflicts between two opens of the file
    HELD.append(held)
    return ["train", config(tmp), "--out", str(tmp / "out")]


HELD: list = []


def unrebuildable_tables(tmp: Path) -> list[str]:
    (tmp / "run").mkdir()
    (tmp / "run" / rc.RESULTS_FILE).write_bytes(b"PAR1 not a table")
    return ["report", str(tmp / "run"), "--out", str(tmp / "rep")]


def hostile_model(tmp: Path) -> list[str]:
    folder = _model_folder(tmp / "model")
    (folder / rc.MODEL_FILE).write_bytes(_torch_bytes({"conv.weight": Hostile(tmp / "PWNED")}))
    return ["export", str(folder), "--out", str(tmp / "m.pt2")]


def hostile_run_folder(tmp: Path) -> list[str]:
    run_dir = _run_folder(tmp / "run")
    (run_dir / "tuner.pkl").write_bytes(pickle.dumps(Hostile(tmp / "PWNED")))
    return ["resume", str(run_dir), "--no-dashboard"]


#: a phrase of each README line that promises a refusal -> the case that proves it
CASES: dict[str, Case] = {
    "runs whose numbers are not comparable": Case(incomparable_runs, ["split that chose"], nothing_at("cmp")),
    "is refused naming the flag": Case(
        lambda tmp: ["export", str(_model_folder(tmp / "model")), "--out", str(tmp / "m.pt2"), "--input-size", "3,2,2"],
        ["--input-size 3,2,2", "give at least 3,4,4"], nothing_at("m.pt2", "m.json")),
    "Giving both is refused": Case(
        lambda tmp: ["validate", config(tmp, method="lasso", lasso={"density": 0.2, "threshold": 0.01})],
        ["lasso.density and lasso.threshold are both given"]),
    "A target below that floor is refused": Case(
        lambda tmp: ["validate", config(tmp, dnr={"pruning": "channel", "density": 0.01})],
        ["dnr.density", "minimum for channel pruning"]),
    "a test figure named there is refused": Case(
        lambda tmp: ["validate", config(tmp, tune={**BASE["tune"], "metric": "pgd_acc"})], ["val_pgd_acc"]),
    "test figures are refused here": Case(
        lambda tmp: ["validate", config(tmp, tune={**BASE["tune"], "metric": "test_pgd_acc"})], ["val_pgd_acc"]),
    "not matching: refused, nothing kept": Case(bad_mirror, ["MD5", "Nothing was kept"], nothing_kept),
    "is refused naming the file and the fix": Case(file_for_folder, ["cifar-10-batches-py: is a file", "Fix:"]),
    "refused, naming the method": Case(
        lambda tmp: ["validate", config(tmp, train={k: v for k, v in BASE["train"].items() if k != "epochs"},
                                        search={"train.epochs": {"grid": [2, 3]}}), "--set", "method=admm"],
        ["search.train.epochs: method admm does not read train.epochs"]),
    "can ever satisfy is refused at once": Case(
        lambda tmp: ["run", config(tmp, tune={**BASE["tune"], "resources_per_trial": {"cpu": 1000}}), "--storage",
                     str(tmp / "runs"), "--name", "big", "--no-dashboard"],
        ["resources_per_trial", "1000"], nothing_at("runs/big")),
    "loop in any path argument is refused": Case(link_loop, ["symbolic-link loop"], nothing_at("out")),
    "refused with who holds it": Case(held_folder, ["out is in use: pid"]),
    "exactly one is refused": Case(held_folder, ["out is in use: pid"]),
    "Only what cannot be rebuilt is refused": Case(unrebuildable_tables, [rc.RESULTS_FILE]),
    "Checkpoints that torch refuses to load safely": Case(
        hostile_model, ["not a checkpoint dnr-sweep wrote"], nothing_at("PWNED", "m.pt2")),
    "A folder that fails is refused with exit 2 and nothing runs": Case(
        hostile_run_folder, ["tuner.pkl", "allowlist"], nothing_at("PWNED")),
    "a registry that refuses an unknown name listing the": Case(
        lambda tmp: ["validate", config(tmp, data={"dataset": "imagenet", "val_size": 100})],
        ["data.dataset", "imagenet", "digits", "cifar10", "tinyimagenet"]),
    "the filesystem's refusals as one message": Case(
        lambda tmp: ["train", config(tmp), "--out", "/proc/dnr-sweep-out"], ["/proc/dnr-sweep-out"]),
}  # fmt: skip

#: promises proved by a test of their own class elsewhere (a matrix, or a slow test that starts Ray):
#: phrase -> (file, test function)
ELSEWHERE = {
    "link there is refused with one message": (
        "tests/test_writer.py", "test_a_link_at_the_target_is_refused_and_left_alone"),
    "refuse a folder holding a link anywhere": (
        "tests/test_symlink_matrix.py", "test_resume_refuses_a_run_folder_holding_a_link_before_ray"),
    "sampled values the sweep's config refuses": (
        "tests/test_reader.py", "test_resume_refuses_a_state_of_the_wrong_shape_before_ray"),
    "a node or client without the head's token is refused": (
        "tests/test_cluster.py", "test_two_node_cluster_with_token_auth_runs_trials_on_both_nodes"),
    "its job API refuses": ("tests/test_reliability.py", "test_dashboard_listens_on_loopback_and_requires_the_token"),
}  # fmt: skip


def promising_lines() -> list[str]:
    """Every line of the README and of docs/ that says "refuse"."""
    texts = [(REPO / "README.md").read_text(), *(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))]
    return [line for text in texts for line in text.splitlines() if re.search(r"refus", line, re.I)]


def test_every_refusal_the_readme_promises_has_a_case():
    lines = promising_lines()
    assert len(lines) >= len(CASES) - 1  # two phrases share a case
    for line in lines:
        assert any(phrase in line for phrase in (*CASES, *ELSEWHERE)), f"no test for the README's promise: {line}"
    for phrase in (*CASES, *ELSEWHERE):
        assert any(phrase in line for line in lines), f"the README no longer says {phrase!r}: drop its case"


@pytest.mark.parametrize("phrase", list(ELSEWHERE))
def test_promises_proved_elsewhere_have_their_tests(phrase):
    path, name = ELSEWHERE[phrase]
    tree = ast.parse((REPO / path).read_text())
    assert name in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("phrase", list(CASES))
def test_the_readme_promise_is_kept(phrase, tmp_path, no_ray):
    case = CASES[phrase]
    argv = case.prepare(tmp_path)
    try:
        code, err = call(argv)
    finally:
        while HELD:
            HELD.pop().__exit__(None, None, None)
    message = [line for line in err.splitlines() if line.strip()][-1]  # after a download's progress, if any
    assert code == 2 and "Traceback" not in err, err
    for fragment in case.fragments:
        assert fragment in message, (fragment, err)
    case.after(tmp_path)
    assert not (tmp_path / "PWNED").exists(), "the hostile payload ran"
