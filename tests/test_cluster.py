"""A real two-node Ray cluster on 127.0.0.1, joined as the README says, with token authentication.

A head and a second raylet (one CPU each, their own ``--temp-dir`` and ``HOME``), started with the
``ray`` CLI: the worker joins with ``RAY_AUTH_MODE=token`` and the head's token, a worker without
the token is refused, and ``dnr-sweep run --address`` runs a 2-trial sweep whose trials land on
both nodes (a trial's ``pid`` in its ``result.json`` names the worker log of the node it ran on).
The sweep's data set (a miniature Tiny-ImageNet zip on a 127.0.0.1 mirror, ``data.root`` under each
node's own ``HOME``: node-local disks) is fetched by the driver and then once per node by the
per-node tasks (:mod:`dnr_sweep.sweep.data_nodes`): two requests in all, none from a trial.
Only this test's own Ray processes are ended: those whose command line names its temp dir or its
GCS port (never ``ray stop``, never by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.test_data_fetch import Mirror, tinyimagenet_archive
from tests.test_sweep import BASE, write_config

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def own_processes(root: Path, gcs_port: int) -> list[psutil.Process]:
    """Processes of this test's cluster: their command line names ``root`` or the GCS address, and
    every child of those (Ray renames some, e.g. ``ray::DashboardAgent``)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if any(str(root) in arg or arg.endswith(f":{gcs_port}") and arg.startswith("--address=") for arg in args):
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                found.update({child.pid: child for child in proc.children(recursive=True)})
    found.pop(os.getpid(), None)
    return list(found.values())


def end_processes(processes: list[psutil.Process]) -> None:
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=15)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=15)


#: ``dnr-sweep ARGV`` with the miniature archive's MD5 in the registry (the per-node tasks get the
#: driver's spec; a miniature cannot match the official MD5)
DRIVER = """
import dataclasses, json, sys
from types import MappingProxyType
from dnr_sweep import cli
from dnr_sweep.data import specs as dataset_specs
a = json.loads(sys.argv[1])
spec = dataset_specs.get(a["dataset"])
spec = dataclasses.replace(spec, archive=dataclasses.replace(spec.archive, md5=a["md5"], size=a["size"]))
dataset_specs.DATASETS = MappingProxyType({**dataset_specs.DATASETS, spec.name: spec})
sys.exit(cli.main(sys.argv[2:]))
"""


def node_of(pid: int, temp_dirs: dict[str, Path]) -> str | None:
    """Which node's temp dir holds the log of worker process ``pid``."""
    for node, temp_dir in temp_dirs.items():
        if any(temp_dir.glob(f"session_*/logs/worker-*-{pid}.out")):
            return node
    return None


@pytest.mark.slow
def test_two_node_cluster_with_token_auth_runs_trials_on_both_nodes(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="dnr2n-", dir="/tmp"))  # short: Ray's socket paths are limited
    homes = {"head": root / "home-head", "worker": root / "home-worker"}
    for home in homes.values():
        home.mkdir()
    temp_dirs = {"head": root / "head", "worker": root / "worker"}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", "--dashboard-agent-listen-port=0",
            "--metrics-export-port=0"]  # fmt: skip

    def ray(*args: str, home: Path, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(RAY), *args], env={**env, "HOME": str(home), **extra}, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    built = tinyimagenet_archive(tmp_path)
    mirror = Mirror({"tiny-imagenet-200.zip": built.data})
    try:
        # the README's steps: a token on the head, the head, then each worker with the head's token
        token = ray("get-auth-token", "--generate", home=homes["head"]).stdout.strip()
        assert len(token) >= 32 and (homes["head"] / ".ray" / "auth_token").is_file()
        head = ray("start", "--head", f"--port={port}", f"--temp-dir={temp_dirs['head']}", "--include-dashboard=false",
                   f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}", *node,
                   home=homes["head"], RAY_AUTH_MODE="token")  # fmt: skip
        assert head.returncode == 0, head.stderr[-3000:]

        refused = ray("start", f"--address=127.0.0.1:{port}", f"--temp-dir={root / 'refused'}", *node,
                      home=homes["worker"])  # fmt: skip
        assert refused.returncode != 0 and "AuthenticationError" in refused.stdout + refused.stderr

        worker = ray("start", f"--address=127.0.0.1:{port}", f"--temp-dir={temp_dirs['worker']}", *node,
                     home=homes["worker"], RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)  # fmt: skip
        assert worker.returncode == 0, worker.stderr[-3000:]

        data = {"dataset": "tinyimagenet", "root": "~/dnr-data", "download": True, "mirror": mirror.url,
                "val_size": 2}  # fmt: skip
        config = write_config(tmp_path, data=data, train={**BASE["train"], "epochs": 3, "batch_size": 7},
                              search={"dnr.density": {"grid": [0.1, 0.2]}},
                              tune={**BASE["tune"], "max_concurrent_trials": 2})  # fmt: skip
        # the driver runs on the head, where `ray get-auth-token` left the token (RAY_AUTH_MODE unset:
        # dnr-sweep turns token mode on when it finds one)
        facts = json.dumps({"dataset": "tinyimagenet", "md5": built.spec.archive.md5, "size": len(built.data)})
        sweep = subprocess.run(
            [sys.executable, "-c", DRIVER, facts, "run", str(config), "--address", f"127.0.0.1:{port}",
             "--storage", str(tmp_path / "runs"), "--name", "two", "--no-dashboard", "--no-report"],
            env={**env, "HOME": str(homes["head"]), "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True,
            text=True, timeout=400,
        )  # fmt: skip
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        results = pd.read_parquet(tmp_path / "runs" / "two" / "results.parquet")
        assert sorted(results["dnr.density"]) == [0.1, 0.2] and set(results["status"]) == {"TERMINATED"}
        pids = {}
        for result_json in (tmp_path / "runs" / "two").glob("*/result.json"):
            lines = [json.loads(line) for line in result_json.read_text().splitlines() if line.strip()]
            pids[result_json.parent.name] = {line["pid"] for line in lines}
        nodes = {trial: {node_of(pid, temp_dirs) for pid in trial_pids} for trial, trial_pids in pids.items()}
        assert len(nodes) == 2 and all(len(found) == 1 and None not in found for found in nodes.values()), nodes
        assert set.union(*nodes.values()) == {"head", "worker"}, nodes
        # the driver fetched into the head's disk; the worker node's task into its own; trials: nothing
        assert mirror.requests == ["tiny-imagenet-200.zip"] * 2
        assert "tinyimagenet on 2 node(s): downloaded on 1, present on 1" in sweep.stdout
        for home in homes.values():
            assert (home / "dnr-data" / "tiny-imagenet-200" / "val" / "val_annotations.txt").is_file()
    finally:
        mirror.close()
        end_processes(own_processes(root, port))
        assert not own_processes(root, port)
        shutil.rmtree(root, ignore_errors=True)
