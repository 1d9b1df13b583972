"""A broken machine setup is one message, exit 2, before any work (:mod:`dnr_sweep.cli._environment`): a
deleted working directory, HOME that is a file (or missing, or unwritable, for commands that write under
it), TMPDIR that does not exist, a non-UTF-8 filesystem encoding with a non-ASCII path. Each through the
command line in a fresh interpreter, as a user meets it; and each only for the commands that need it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dnr_sweep.cli import _environment
from tests.test_hostile import call

REPO = Path(__file__).resolve().parents[1]

#: the cheapest config `validate` accepts (its dry preparation builds the model on 8x8 images)
CONFIG = {"name": "env", "data": {"dataset": "digits", "val_size": 100}, "model": {"arch": "smallcnn", "width": 0.25}}


def dnr_sweep(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
              delete_cwd: bool = False) -> subprocess.CompletedProcess:  # fmt: skip
    """``python -m dnr_sweep.cli ARGS`` in ``cwd`` (deleted first, from inside, when asked)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    command = [sys.executable, "-m", "dnr_sweep.cli", *args]
    if delete_cwd:  # the shell enters the folder, the folder goes, then dnr-sweep starts there
        command = ["sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh", str(cwd), *command]
        cwd = cwd.parent
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def refused(done: subprocess.CompletedProcess, *fragments: str) -> str:
    err = done.stderr
    assert done.returncode == 2, (done.returncode, err[-3000:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.mark.parametrize("args", [["validate", "{config}"], ["data", "fetch", "cifar10", "--root", "data"],
                                  ["report", "run"], ["status", "run"]])  # fmt: skip
def test_a_deleted_working_directory_is_one_message(tmp_path, config, args):
    gone = tmp_path / "gone"
    gone.mkdir()
    done = dnr_sweep([a.format(config=config) for a in args], cwd=gone, delete_cwd=True)
    refused(done, "the working directory no longer exists", "`cd` to an existing folder")


def test_home_that_is_a_file_stops_the_commands_that_use_it(tmp_path, config):
    home = tmp_path / "home"
    home.write_text("not a folder")
    for args in (["data", "fetch", "cifar10"], ["train", str(config), "--out", str(tmp_path / "out")]):
        refused(dnr_sweep(args, cwd=tmp_path, env={"HOME": str(home)}), f"HOME={home} is a file, not a folder",
                "export HOME=")  # fmt: skip
    assert not (tmp_path / "out").exists()
    done = dnr_sweep(["validate", str(config)], cwd=tmp_path, env={"HOME": str(home)})  # needs no HOME
    assert done.returncode == 0, done.stderr[-3000:]


def test_home_that_is_missing_or_unwritable_stops_the_commands_that_write_under_it(tmp_path, monkeypatch):
    missing = tmp_path / "nohome"
    monkeypatch.setenv("HOME", str(missing))
    code, err = call(["data", "fetch", "cifar10"])
    assert code == 2 and f"HOME={missing} does not exist" in err and "Traceback" not in err, err
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setenv("HOME", str(locked))
    monkeypatch.setattr(_environment, "_writable", lambda folder: folder != str(locked))  # root writes anywhere
    code, err = call(["data", "fetch", "cifar10"])
    assert code == 2 and f"HOME={locked} is not writable by this user" in err and "--root" in err, err
    assert not missing.exists() and list(locked.iterdir()) == []


def test_a_tmpdir_that_does_not_exist_stops_the_commands_that_write_temporary_files(tmp_path, config):
    missing = tmp_path / "no" / "tmp"
    env = {"TMPDIR": str(missing)}
    err = refused(dnr_sweep(["run", str(config), "--storage", str(tmp_path / "runs")], cwd=tmp_path, env=env),
                  f"TMPDIR={missing} does not exist", "Ray's session folder", f"mkdir -p {missing}")  # fmt: skip
    assert "unset TMPDIR" in err and not (tmp_path / "runs").exists() and not missing.exists()
    refused(dnr_sweep(["submit", str(config), "--address", "http://127.0.0.1:9", "--storage", "/s"], cwd=tmp_path,
                      env=env), f"TMPDIR={missing} does not exist")  # fmt: skip
    refused(dnr_sweep(["run", str(config)], cwd=tmp_path, env={"RAY_TMPDIR": str(missing)}), "RAY_TMPDIR=")
    done = dnr_sweep(["validate", str(config)], cwd=tmp_path, env=env)  # writes no temporary file
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_non_ascii_path_under_an_ascii_encoding_is_one_message(tmp_path, config):
    folder = tmp_path / "données-ü"
    folder.mkdir()
    (folder / "env.yaml").write_text(config.read_text())
    path = str(folder / "env.yaml")
    # LC_ALL=C alone: Python 3.11 reads and writes UTF-8 names by itself; the path works
    done = dnr_sweep(["validate", path], cwd=tmp_path, env={"LC_ALL": "C", "LANG": "C"})
    assert done.returncode == 0, done.stderr[-3000:]
    # with UTF-8 mode off, the name cannot be carried: refused before anything reads it
    done = dnr_sweep(["validate", path], cwd=tmp_path, env={"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"})
    refused(done, "is not ASCII", "filesystem encoding is ascii", "LC_ALL=C", "PYTHONUTF8=0", "LC_ALL=C.UTF-8")
    assert "donn\\xe9es-\\xfc" in done.stderr
    done = dnr_sweep(["validate", str(config)], cwd=folder, env={"LC_ALL": "C", "PYTHONUTF8": "0"})
    refused(done, "the working directory", "is not ASCII")
    done = dnr_sweep(["validate", str(config)], cwd=tmp_path, env={"LC_ALL": "C", "PYTHONUTF8": "0"})
    assert done.returncode == 0, done.stderr[-3000:]  # ASCII everywhere: nothing to refuse
