"""Run folders on any storage Ray Tune accepts: a local path, a ``file://`` URI, an S3 bucket.

The S3 bucket is moto's S3-compatible server (the ``test`` extra) on 127.0.0.1, reached through
pyarrow's ``s3://`` URI options; credentials travel in the URI so Ray's worker processes (started
before this module) can reach it too.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
import torch

from dnr_sweep import cli
from dnr_sweep.artifacts import checkpoint
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation import storage
from dnr_sweep.foundation.errors import InputFileError, PathError
from tests.test_sweep import BASE, write_config


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on 127.0.0.1; yields ``uri(path)`` -> ``s3://...`` with the options to reach it."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    options = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1&allow_bucket_creation=true"

    def uri(path: str) -> str:
        return f"s3://testing:testing@{path}?{options}"

    deadline = time.monotonic() + 60
    while True:
        try:
            fs, _ = pafs.FileSystem.from_uri(uri("bucket"))
            fs.create_dir("bucket")
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.3)
    yield uri
    server.terminate()
    server.wait(timeout=30)


# ------------------------------------------------------------------------------------------------
# Locations


def test_local_paths_and_file_uris_are_the_local_folder(tmp_path):
    plain = storage.locate(tmp_path / "runs")
    uri = storage.locate(f"file://{tmp_path}/runs")
    assert plain.local == uri.local == tmp_path / "runs"
    assert str(plain) == str(tmp_path / "runs") and str(uri) == f"file://{tmp_path}/runs"
    assert (uri / "a/b").local == tmp_path / "runs" / "a" / "b"
    assert str((uri / "x").parent) == str(uri)


def test_uri_options_stay_at_the_end_when_joining(s3_server):
    loc = storage.locate(s3_server("bucket/runs"))
    child = loc / "sweep_1" / "trial"
    assert child.path == "bucket/runs/sweep_1/trial" and child.local is None
    assert child.uri.startswith("s3://testing:testing@bucket/runs/sweep_1/trial?endpoint_override=")
    assert child.parent.parent.uri == loc.uri and child.name == "trial"


@pytest.mark.parametrize("text", ["s3://", "nosuchscheme://bucket/x"])
def test_bad_storage_uris_fail_with_a_fix(text):
    with pytest.raises(PathError, match="give a local folder or a filesystem URI"):
        storage.locate(text)


def test_bad_storage_uri_exits_2_before_ray(tmp_path, capsys, monkeypatch):
    from dnr_sweep.sweep import cluster

    monkeypatch.setattr(cluster, "start_ray", lambda **_: pytest.fail("Ray must not start"))
    code = cli.main(["run", str(write_config(tmp_path)), "--storage", "nosuchscheme://bucket/x"])
    err = capsys.readouterr().err
    assert code == 2 and "--storage 'nosuchscheme://bucket/x'" in err and "Traceback" not in err


@pytest.mark.parametrize("where", ["local", "s3"])
def test_files_checkpoints_and_selected_weights_on_any_storage(where, tmp_path, s3_server):
    root = storage.locate(tmp_path if where == "local" else s3_server(f"bucket/{tmp_path.name}"))
    storage.write_text(root / "run" / "a.txt", "one")
    assert storage.read_text(root / "run" / "a.txt") == "one" and storage.is_dir(root / "run")
    assert storage.listdir(root / "run") == ["a.txt"] and storage.listdir(root / "none") == []
    state = {"w": torch.tensor([1.0, -0.0, 2.0])}
    checkpoint.save_to(state, root / "run" / "state.pt")
    assert torch.equal(checkpoint.load_from(root / "run" / "state.pt")["w"], state["w"])
    selected = checkpoint.SelectedWeights(root / "run")
    selected.write(3, state)
    selected.write(5, state)
    selected.retain({5})
    assert selected.epochs() == [5]
    with pytest.raises(InputFileError, match="epoch 3"):
        selected.read(3)
    storage.delete(root / "run" / "a.txt")
    assert not storage.exists(root / "run" / "a.txt")


def test_staged_copies_the_small_files_down_and_what_changed_back(s3_server, tmp_path):
    run = storage.locate(s3_server(f"bucket/{tmp_path.name}/run"))
    storage.write_text(run / "config.yaml", "name: x\n")
    storage.write_text(run / "trial_1" / "result.json", "{}\n")
    storage.write_bytes(run / "trial_1" / "model.pt", b"big")
    storage.write_bytes(run / "trial_1" / "checkpoint_000001" / "state.pt", b"big")
    with storage.staged(run) as folder:
        found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert found == ["config.yaml", "trial_1/result.json"]  # no torch files, no checkpoints
        (folder / "results.parquet").write_bytes(b"table")
        (folder / "report").mkdir()
        (folder / "report" / "index.html").write_text("<html/>")
    assert storage.read_bytes(run / "results.parquet") == b"table"
    assert storage.read_text(run / "report" / "index.html") == "<html/>"
    assert storage.read_bytes(run / "trial_1" / "model.pt") == b"big"


# ------------------------------------------------------------------------------------------------
# Sweeps


def _sweep_config(tmp_path: Path) -> Path:
    return write_config(tmp_path, train={**BASE["train"], "epochs": 2},
                        search={"dnr.density": {"grid": [0.1, 0.2]}})  # fmt: skip


def test_sweep_with_a_file_uri_storage_and_its_checkpoints(ray_session, tmp_path, capsys):
    config = write_config(tmp_path, train={**BASE["train"], "epochs": 3}, search={"dnr.density": {"grid": [0.1, 0.2]}},
                          tune={**BASE["tune"], "checkpoint_every": 2, "keep_checkpoints": 3})  # fmt: skip
    code = cli.main(["run", str(config), "--storage", f"file://{tmp_path}/runs", "--name", "f", "--no-dashboard",
                     "--no-report"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    run_dir = tmp_path / "runs" / "f"
    results = pd.read_parquet(run_dir / rc.RESULTS_FILE)
    assert sorted(results["dnr.density"]) == [0.1, 0.2] and set(results["status"]) == {"TERMINATED"}
    trials = {p.parent for p in run_dir.glob(f"*/{rc.MODEL_FILE}")}
    assert len(trials) == 2
    for trial in trials:
        assert (trial / rc.FINAL_STATE_FILE).is_file() and not (trial / rc.SELECTED_DIR).exists()
        final = torch.load(trial / rc.FINAL_STATE_FILE, weights_only=True)
        assert set(final) == {"result", "epochs"} and final["epochs"] == 3  # a result, not a second full state
        # checkpoint_every: 2 -> after epoch 2, then the end-of-trial marker
        saved = [torch.load(p / rc.TRIAL_STATE_FILE, weights_only=True) for p in sorted(trial.glob("checkpoint_*"))]
        assert len(saved) == 2 and saved[0]["run"]["epoch"] == 2 and saved[1] == {"finished": True}
        assert saved[0]["selected_refs"] == [saved[0]["run"]["selection"]["epoch"]]


@pytest.mark.slow
def test_sweep_report_and_resume_on_s3(ray_session, tmp_path, s3_server, capsys):
    config = _sweep_config(tmp_path)
    runs = s3_server(f"bucket/{tmp_path.name}")
    code = cli.main(["run", str(config), "--storage", runs, "--name", "s3run", "--no-dashboard"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    run_dir = storage.locate(runs) / "s3run"
    results = pd.read_parquet(io.BytesIO(storage.read_bytes(run_dir / rc.RESULTS_FILE)))
    epochs = pd.read_parquet(io.BytesIO(storage.read_bytes(run_dir / rc.EPOCHS_FILE)))
    assert sorted(results["dnr.density"]) == [0.1, 0.2] and set(results["status"]) == {"TERMINATED"}
    assert len(epochs) == 4
    assert storage.read_bytes(run_dir / rc.CONFIG_FILE) == config.read_bytes()
    trials = [name for name in storage.listdir(run_dir) if storage.is_file(run_dir / name / rc.TUNE_RESULT_FILE)]
    assert len(trials) == 2
    for trial in trials:
        folder = run_dir / trial
        model = torch.load(io.BytesIO(storage.read_bytes(folder / rc.MODEL_FILE)), weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in model.values())
        metrics = json.loads(storage.read_text(folder / rc.METRICS_FILE))
        assert metrics["clean_acc"] in results["clean_acc"].tolist()
        assert storage.is_file(folder / rc.FINAL_STATE_FILE) and not storage.exists(folder / rc.SELECTED_DIR)
    assert storage.is_file(run_dir / rc.REPORT_DIR / "index.html")
    assert f"results: {run_dir / rc.RESULTS_FILE}" in captured.out

    # the report can be drawn again from the bucket, and a finished run resumes to the same tables
    assert cli.main(["report", run_dir.uri, "--format", "png"]) == 0
    assert str(run_dir / rc.REPORT_DIR / "compression_accuracy.png") in capsys.readouterr().out.split()
    assert cli.main(["resume", run_dir.uri, "--no-dashboard", "--no-report"]) == 0
    again = pd.read_parquet(io.BytesIO(storage.read_bytes(run_dir / rc.RESULTS_FILE)))
    pd.testing.assert_frame_equal(again, results)
