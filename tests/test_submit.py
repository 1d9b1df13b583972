"""``dnr-sweep submit``: the sweep as a Ray Job on a real local head (dashboard, job API, token auth).

The head is ``ray start --head --block`` on 127.0.0.1 with token authentication on (a token made
for the test, never the user's), started from this virtualenv (its ``python`` first on PATH, the
repository on PYTHONPATH, as a cluster node that has dnr-sweep installed). Only this head's
processes are ended: the ``ray start --block`` process (SIGTERM drains and stops everything it
started), then any process left whose command line names the head's temporary folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dnr_sweep import cli
from dnr_sweep.config import validate_sweep
from dnr_sweep.foundation.errors import UserError
from dnr_sweep.sweep import jobs
from tests.test_hostile import call
from tests.test_http_client import serving_peers
from tests.test_sweep import BASE

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

CONFIG = {**BASE, "name": "job_test", "search": {"dnr.pruning": {"grid": ["irregular", "channel"]}}}


def write_config(folder: Path, **blocks) -> Path:
    path = folder / "job_test.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **blocks}, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------
# A real head


@dataclass
class Head:
    url: str  # the dashboard / job API
    token: str
    metrics_port: int
    folder: Path


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def http_status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0  # nothing listens (yet)


def get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def end_processes_naming(folder: Path) -> None:
    """Backstop: end what is left of this head (processes whose command line names its folder)."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(folder) in arg for arg in proc.info["cmdline"] or []):
            mine += [proc, *proc.children(recursive=True)]
    for proc in mine:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(mine, timeout=15)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.fixture(autouse=True)
def _fresh_ray_token_cache():
    """Ray caches the auth token process-wide; a test that submits in process with its own token must not leave
    it to the session's Ray driver (its next RPC would carry the test's token and the raylet would refuse it)."""
    yield
    from ray._raylet import AuthenticationTokenLoader

    AuthenticationTokenLoader.instance().reset_cache()  # re-read lazily, after monkeypatch restored the environment


@pytest.fixture(scope="module")
def head():
    # short path: Ray's unix sockets live under the temp dir and must stay under ~107 characters
    folder = Path(tempfile.mkdtemp(prefix="dnrhead", dir="/tmp"))
    token = secrets.token_hex(32)
    token_file = folder / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    gcs, dashboard, client, agent, metrics = free_ports(5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file), RAY_AIR_NEW_OUTPUT="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))  # fmt: skip
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=2", f"--temp-dir={folder}/ray",
        "--include-dashboard=true", "--disable-usage-stats", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", f"--metrics-export-port={metrics}",
    ]  # fmt: skip
    log = open(folder / "head.log", "w")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while http_status(url + "/api/version", token) != 200:
            assert process.poll() is None, (folder / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the head's job API did not answer in 120 s"
            time.sleep(1)
        yield Head(url=url, token=token, metrics_port=metrics, folder=folder)
    finally:
        process.terminate()  # `ray start --block` drains the node and stops every process it started
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        end_processes_naming(folder)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def client_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A laptop's environment: no Ray variables, a home without ~/.ray/auth_token, unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO), **extra)
    return env


def submit(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnr_sweep.cli", "submit", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Against the real head


@pytest.mark.slow
def test_submit_runs_the_sweep_as_a_ray_job(head, tmp_path):
    config = write_config(tmp_path)
    storage = tmp_path / "runs"
    env = client_env(tmp_path, RAY_AUTH_TOKEN=head.token)  # no RAY_AUTH_MODE on the laptop
    done = submit([str(config), "--address", head.url, "--storage", str(storage), "--name", "viajob",
                   "--follow", "--no-report", "--set", "train.batch_size=64"], env, cwd=tmp_path)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert head.token not in out
    job_id = "dnr-sweep_viajob"
    assert f"submitted Ray job {job_id} to {head.url} (token from $RAY_AUTH_TOKEN)" in done.stdout
    assert f"RAY_AUTH_MODE=token ray job logs -f {job_id} --address {head.url}" in done.stdout
    assert f"run folder on the cluster: {storage}/viajob" in done.stdout
    assert f"--- job {job_id}: SUCCEEDED ---" in done.stdout
    assert "Number of trials: 2/2 (2 TERMINATED)" in done.stdout  # the driver's log, streamed

    run_dir = storage / "viajob"
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 2 and set(results["status"]) == {"TERMINATED"}
    assert sorted(results["dnr.pruning"]) == ["channel", "irregular"]
    assert json.loads((run_dir / "sweep.json").read_text())["overrides"] == ["train.batch_size=64"]
    assert (run_dir / "config.yaml").read_text() == config.read_text()
    models = sorted(run_dir.glob("*/model.pt"))
    assert len(models) == 2
    assert all(isinstance(t, torch.Tensor) for t in torch.load(models[0], weights_only=True).values())

    # the job API (the dashboard's Jobs tab) knows the job, its entrypoint and where the run went
    job = get_json(f"{head.url}/api/jobs/{job_id}", head.token)
    assert job["status"] == "SUCCEEDED"
    assert job["entrypoint"].startswith("python -m dnr_sweep.cli run job_test.yaml --address auto --storage ")
    assert job["metadata"]["dnr_sweep_run_dir"] == str(run_dir)
    # and refuses a request without the token, or with a wrong one
    assert http_status(f"{head.url}/api/jobs/") == 401
    assert http_status(f"{head.url}/api/jobs/", token="0" * 64) == 403

    # dnr-sweep status reads the job's run folder like any other
    assert cli.main(["status", str(run_dir), "--json"]) == 0


@pytest.mark.slow
def test_submit_without_the_right_token_is_refused_clearly(head, tmp_path):
    config = write_config(tmp_path)
    args = [str(config), "--address", head.url, "--storage", str(tmp_path / "runs")]
    wrong = submit(args, client_env(tmp_path, RAY_AUTH_TOKEN="f" * 64), cwd=tmp_path, timeout=120)
    assert wrong.returncode == 2, wrong.stderr[-3000:]
    assert "refused the request (the token from $RAY_AUTH_TOKEN is not this cluster's)" in wrong.stderr
    assert "ray get-auth-token" in wrong.stderr and "Traceback" not in wrong.stderr
    none = submit(args, client_env(tmp_path), cwd=tmp_path, timeout=120)
    assert none.returncode == 2 and "refused the request (no token was found)" in none.stderr, none.stderr[-3000:]
    listed = get_json(f"{head.url}/api/jobs/", head.token)
    assert not any(j.get("submission_id", "").startswith("dnr-sweep_job_test") for j in listed)  # nothing got in


METRICS_PROBE = textwrap.dedent("""
    import sys, time, urllib.request
    import ray
    from dnr_sweep.sweep.dashboard_metrics import report_epoch
    ray.init(address="auto", logging_level="WARNING")
    report_epoch({"epoch": 3, "this_epoch/val_clean_acc": 91.5, "this_epoch/val_pgd_acc": 40.25,
                  "this_epoch/density": 0.1, "this_epoch/epoch_time_s": 1.75}, run="probe_run", trial_id="t_00001")
    deadline = time.time() + 90
    while time.time() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
        found = [line for line in text.splitlines() if line.startswith("ray_dnr_sweep_") and "probe_run" in line]
        if len(found) == 5:
            print("\\n".join(found))
            break
        time.sleep(1)
""")


@pytest.mark.slow
def test_dashboard_gauges_reach_the_clusters_prometheus_endpoint(head, tmp_path):
    """What Prometheus (and the dashboard's Metrics view) scrapes: the gauges with their tags."""
    from ray.job_submission import JobSubmissionClient

    (tmp_path / "probe.py").write_text(METRICS_PROBE)
    client = JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {head.token}"})
    job_id = client.submit_job(entrypoint=f"python probe.py {head.metrics_port}",
                               runtime_env={"working_dir": str(tmp_path)})  # fmt: skip
    deadline = time.monotonic() + 180
    while (status := client.get_job_status(job_id).value) not in jobs.TERMINAL and time.monotonic() < deadline:
        time.sleep(1)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-3000:]
    values = {}
    for line in logs.splitlines():
        if line.startswith("ray_dnr_sweep_"):
            name, value = line.split("{")[0], float(line.rsplit(" ", 1)[1])
            assert 'run="probe_run"' in line and 'trial_id="t_00001"' in line, line
            values[name] = value
    assert values == {"ray_dnr_sweep_epoch": 3.0, "ray_dnr_sweep_val_clean_acc": 91.5,
                      "ray_dnr_sweep_val_pgd_acc": 40.25, "ray_dnr_sweep_density": 0.1,
                      "ray_dnr_sweep_epoch_time_s": 1.75}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Without a cluster


def test_a_bad_config_never_reaches_the_cluster(tmp_path, capsys):
    config = write_config(tmp_path, dnr={"density": 1.5})
    # nothing listens on port 9: had it tried to connect, the error would be about the address
    assert cli.main(["submit", str(config), "--address", "http://127.0.0.1:9", "--storage", "/shared/runs"]) == 2
    err = capsys.readouterr().err
    assert "dnr.density" in err and "job API" not in err and "Traceback" not in err


def test_the_job_is_planned_for_the_cluster():
    config = validate_sweep(CONFIG)
    job = jobs.plan_job(config, Path("/home/me/sweeps/my sweep.yaml"), storage="/shared/runs/", name="n1",
                        overrides=["dnr.beta=0.7", "train.epochs=3"], report=False)  # fmt: skip
    assert shlex.split(job.entrypoint) == [
        "python", "-m", "dnr_sweep.cli", "run", "my sweep.yaml", "--address", "auto", "--storage", "/shared/runs",
        "--name", "n1", "--set", "dnr.beta=0.7", "--set", "train.epochs=3", "--no-report",
    ]  # fmt: skip
    assert job.run_dir == "/shared/runs/n1" and job.submission_id == "dnr-sweep_n1"
    assert job.metadata == {"dnr_sweep_run_dir": "/shared/runs/n1", "dnr_sweep_config": "job_test"}
    plan = {"storage": "/s", "name": "n", "overrides": [], "report": True}
    with pytest.raises(UserError, match="--storage 'runs': give an absolute path"):
        jobs.plan_job(config, Path("c.yaml"), **{**plan, "storage": "runs"})
    with pytest.raises(UserError, match="--name"):
        jobs.plan_job(config, Path("c.yaml"), **{**plan, "name": "../escape"})
    relative = validate_sweep({**CONFIG, "data": {**CONFIG["data"], "root": "data"}})
    with pytest.raises(UserError, match="data.root 'data' is relative"):
        jobs.plan_job(relative, Path("c.yaml"), **plan)
    assert jobs.plan_job(config, Path("c.yaml"), **{**plan, "storage": "~/runs"}).run_dir == "~/runs/n"
    assert jobs.plan_job(config, Path("c.yaml"), **plan, python="/opt/env/bin/python3").entrypoint.startswith(
        "/opt/env/bin/python3 -m dnr_sweep.cli run c.yaml "
    )
    for bad in ("127.0.0.1:6379", "ray://head:10001", "", None):
        with pytest.raises(UserError, match="--address"):
            jobs.check_address(bad)
    assert jobs.check_address("http://head:8265/") == "http://head:8265"


TOKEN_PROBE = textwrap.dedent("""
    import json, os
    from dnr_sweep.foundation.errors import UserError
    from dnr_sweep.sweep.jobs import auth_headers, token_source
    out = {}
    for case in ("env", "path", "home", "none", "bad_path"):
        for key in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            os.environ.pop(key, None)
        home = os.path.expanduser("~/.ray/auth_token")
        if case in ("env", "path", "home"):
            os.makedirs(os.path.dirname(home), exist_ok=True)
            open(home, "w").write("home-token")
        elif os.path.exists(home):
            os.remove(home)
        if case == "env":
            os.environ["RAY_AUTH_TOKEN"] = "env-token"
        if case in ("env", "path"):
            open("token-file", "w").write("path-token")
            os.environ["RAY_AUTH_TOKEN_PATH"] = os.path.abspath("token-file")
        if case == "bad_path":
            os.environ["RAY_AUTH_TOKEN_PATH"] = os.path.abspath("missing-file")
        try:
            out[case] = [auth_headers(), token_source()]
        except UserError as exc:
            out[case] = ["UserError", str(exc)]
    print(json.dumps(out))
""")


def test_the_token_is_found_where_ray_looks_for_it(tmp_path):
    env = client_env(tmp_path)
    done = subprocess.run([sys.executable, "-c", TOKEN_PROBE], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    token_path = str(tmp_path / "token-file")
    assert got["env"] == [{"authorization": "Bearer env-token"}, "$RAY_AUTH_TOKEN"]
    assert got["path"] == [{"authorization": "Bearer path-token"}, token_path]
    assert got["home"] == [{"authorization": "Bearer home-token"}, "~/.ray/auth_token"]
    assert got["none"] == [{}, None]
    assert got["bad_path"][0] == "UserError" and "RAY_AUTH_TOKEN_PATH=" in got["bad_path"][1]


# ------------------------------------------------------------------------------------------------
# Against peers that are no Ray job API, and a stand-in that is one (127.0.0.1, a second or two each)

FAKE_TOKEN = "f00dfacecafe" * 5


@pytest.fixture
def peer():
    yield from serving_peers()


@pytest.fixture
def laptop(tmp_path, monkeypatch):
    """This process as a laptop with a token and short job-API deadlines; the config to submit."""
    for key in [k for k in os.environ if k.startswith("RAY_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_AUTH_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(jobs, "CONNECT_S", 1.0)
    monkeypatch.setattr(jobs, "REQUEST_S", 1.0)
    monkeypatch.setattr(jobs, "LOG_S", 1.0)
    return write_config(tmp_path)


def _no_ray_api() -> dict[str, tuple[object, str]]:
    """scenario -> (the peer's script, a fragment of the one message)."""
    from tests import test_http_client as peers

    def echo_token(sock, request, stop):
        text = f"<pre>bad request from {request.headers.get('authorization')}</pre>".encode()
        sock.sendall(peers.head("500 Internal Server Error", [("Content-Length", str(len(text)))]) + text)

    nothing = "no Ray dashboard at {url}: /api/version"
    return {
        "a web page": (peers.answer(body=b"<html>welcome</html>", headers=[("Content-Type", "text/html")]),
                       f"{nothing} answered a web page (text/html), not the job API's JSON"),
        "JSON of something else": (peers.json_answer({"status": "ok", "service": "grafana"}),
                                   f"{nothing} answered JSON without the job API's fields"),
        "a JSON list": (peers.json_answer([1, 2, 3]), f"{nothing} answered JSON without the job API's fields"),
        "broken JSON": (peers.answer(body=b"{'ray_version':", headers=[("Content-Type", "application/json")]),
                        f"{nothing} answered no JSON"),
        "plain text": (peers.answer(body=b"hello"), f"{nothing} answered no JSON"),
        "HTTP 404": (peers.answer("404 Not Found", b"File not found"), f"{nothing} answered HTTP 404 Not Found"),
        "a 500 that echoes the token": (echo_token, f"{nothing} answered HTTP 500 Internal Server Error"),
        "a redirect": (peers.redirect("http://127.0.0.1:9/login"),
                       f"{nothing} answered HTTP 302 Found to http://127.0.0.1:9/login"),
        "not HTTP": (lambda sock, request, stop: sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n"),
                     f"{nothing} failed: not a well-formed HTTP answer"),
        "Content-Length: abc": (peers.answer(body=b"{}", headers=[("Content-Length", "abc")]),
                                f"{nothing} failed: its answer's Content-Length 'abc' is not a byte count"),
        "a stalled header": (peers.stalled, "--address {url}: GET /api/version: no complete answer within 1 s"),
        "a drip-feed": (peers.drip(b'{"ray_version": "2.60.0", "version": "4"}', 0.2, "application/json"),
                        "--address {url}: GET /api/version: no complete answer within 1 s"),
    }  # fmt: skip


@pytest.mark.parametrize("scenario", list(_no_ray_api()))
def test_an_address_that_is_no_ray_job_api_is_one_message_within_the_deadline(laptop, peer, scenario):
    script, fragment = _no_ray_api()[scenario]
    p = peer(script)
    code, err = call(["submit", str(laptop), "--address", p.url, "--storage", "/shared/runs"])
    assert code == 2 and "Traceback" not in err, err
    assert fragment.format(url=p.url) in err, err
    assert FAKE_TOKEN not in err
    assert [r.path for r in p.requests] == ["/api/version"]  # nothing followed, nothing submitted
    assert p.requests[0].headers["authorization"] == f"Bearer {FAKE_TOKEN}"


def test_a_refused_token_and_a_closed_port_are_named(laptop, peer):
    from tests.test_http_client import answer, closed_port

    p = peer(answer("403 Forbidden", b"Invalid token"))
    code, err = call(["submit", str(laptop), "--address", p.url, "--storage", "/shared/runs"])
    assert code == 2 and "refused the request (the token from $RAY_AUTH_TOKEN is not this cluster's)" in err
    url = f"http://127.0.0.1:{closed_port()}"
    code, err = call(["submit", str(laptop), "--address", url, "--storage", "/shared/runs"])
    assert code == 2 and f"--address {url}: no Ray job API answers there (Connection refused)" in err, err


def test_credentials_in_the_address_are_never_shown(laptop, peer):
    from tests.test_http_client import answer

    p = peer(answer(body=b"<html></html>", headers=[("Content-Type", "text/html")]))
    address = p.url.replace("http://", "http://admin:pa55word-here@")
    code, err = call(["submit", str(laptop), "--address", address, "--storage", "/shared/runs"])
    assert code == 2 and "pa55word-here" not in err and "no Ray dashboard at http://***@127.0.0.1" in err, err
    code, err = call(["submit", str(laptop), "--address", "http://admin:pa55word-here@host:port", "--storage", "/s"])
    assert code == 2 and "pa55word-here" not in err and "--address" in err, err


class FakeJobAPI:
    """The job API's REST endpoints as Ray 2.60's dashboard answers them, with a job that runs and ends."""

    def __init__(self, peer_factory, *, duplicate: bool = False) -> None:
        from tests import test_http_client as peers

        self.packages: dict[str, bytes] = {}
        self.submitted: list[dict] = []
        self.polls = 0
        api = self

        def script(sock, request, stop):
            path = request.path
            if path == "/api/version":
                reply = peers.json_answer({"version": "4", "ray_version": "2.60.0", "ray_commit": "x",
                                           "session_name": "s"})  # fmt: skip
            elif path.startswith("/api/packages/gcs/") and request.method == "GET":
                name = path.rsplit("/", 1)[1]
                reply = peers.answer("200 OK") if name in api.packages else peers.answer("404 Not Found", b"no")
            elif path.startswith("/api/packages/gcs/") and request.method == "PUT":
                api.packages[path.rsplit("/", 1)[1]] = request.body
                reply = peers.answer("200 OK")
            elif path == "/api/jobs/" and request.method == "POST":
                body = json.loads(request.body)
                api.submitted.append(body)
                if duplicate:
                    text = ("Traceback (most recent call last):\n" + "  File x\n" * 500 + "ValueError: Job with "
                            f"submission_id {body['submission_id']} already exists. Please use a different one.\n")  # fmt: skip
                    reply = peers.answer("400 Bad Request", text.encode())
                else:
                    reply = peers.json_answer({"job_id": None, "submission_id": body["submission_id"]})
            elif path.endswith("/logs"):
                lines = ["driver: starting\n", "Number of trials: 2/2 (2 TERMINATED)\n", "driver: done\n"]
                reply = peers.json_answer({"logs": "".join(lines[: min(api.polls, 3)])})
            elif path.startswith("/api/jobs/"):
                api.polls += 1
                reply = peers.json_answer({"status": "RUNNING" if api.polls < 3 else "SUCCEEDED", "job_id": None})
            else:
                reply = peers.answer("404 Not Found", b"Not Found")
            reply(sock, request, stop)

        self.peer = peer_factory(script)
        self.url = self.peer.url


def test_submit_and_follow_speak_the_job_api(laptop, peer, capsys):
    import io
    import zipfile

    api = FakeJobAPI(peer)
    code = cli.main(["submit", str(laptop), "--address", api.url, "--storage", "/shared/runs", "--name", "n",
                     "--follow", "--no-report"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"submitted Ray job dnr-sweep_n to {api.url} (token from $RAY_AUTH_TOKEN)" in out.out
    assert (
        out.out.count("Number of trials: 2/2 (2 TERMINATED)") == 1 and "--- job dnr-sweep_n: SUCCEEDED ---" in out.out
    )
    assert all(r.headers["authorization"] == f"Bearer {FAKE_TOKEN}" for r in api.peer.requests)
    (body,) = api.submitted
    assert body["submission_id"] == "dnr-sweep_n" and body["metadata"]["dnr_sweep_run_dir"] == "/shared/runs/n"
    assert body["entrypoint"].startswith("python -m dnr_sweep.cli run job_test.yaml --address auto")
    ((name, package),) = api.packages.items()
    assert body["runtime_env"] == {"working_dir": f"gcs://{name}"} and name.startswith("_ray_pkg_")
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        assert z.read("job_test.yaml") == laptop.read_bytes()
    # the same config again: the package is there, not uploaded twice
    assert cli.main(["submit", str(laptop), "--address", api.url, "--storage", "/shared/runs", "--name", "m"]) == 0
    assert sum(r.method == "PUT" for r in api.peer.requests) == 1


def test_a_job_name_the_cluster_has_is_refused_by_name(laptop, peer):
    api = FakeJobAPI(peer, duplicate=True)
    code, err = call(["submit", str(laptop), "--address", api.url, "--storage", "/shared/runs", "--name", "n"])
    assert code == 2 and err.strip() == "the cluster already has a job dnr-sweep_n: choose another --name", err
