"""A sweep as a Ray Job: submit ``dnr-sweep run`` to a cluster's job API from any machine.

Why a Job rather than ``dnr-sweep run --address``: the driver runs on the cluster, so the laptop that
submitted it can close, and the dashboard's Jobs tab and ``ray job logs -f`` show the driver's log.
The config file is shipped in the job's ``working_dir``; the entrypoint is ``python -m dnr_sweep.cli
run CONFIG --address auto --storage STORAGE --name NAME [--set ...]`` with the cluster's ``python``
(the head needs dnr-sweep installed), and the run name is fixed here, so the run folder is known
before the job starts.

The job API (:class:`JobAPI`) is spoken through the one HTTP client, :mod:`dnr_sweep.foundation.http`,
not Ray's SDK: deadlines, byte caps, no redirects, answers checked for the API's shape. Ray's token,
where Ray itself would find it, goes with every request and is never printed. Usage: docs/CLUSTER.md.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dnr_sweep.config import SweepConfig, check_name
from dnr_sweep.foundation import files, http
from dnr_sweep.foundation.errors import UserError

TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"
#: a job is in one of these (ray.job_submission.JobStatus values); it ends in one of TERMINAL
STATUSES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
#: one job-API request: seconds to connect, seconds for the whole answer, the most bytes it may have
CONNECT_S = 5.0
REQUEST_S = 30.0
ANSWER_BYTES = 16 << 20
#: the job's log (``--follow`` reads it whole, each poll): its cap and deadline; polls are at least
#: ``poll_s`` apart and one second per MiB of log, at most :data:`MAX_POLL_S`
LOG_BYTES = 256 << 20
LOG_S = 120.0
MAX_POLL_S = 30.0


@dataclass(frozen=True)
class SweepJob:
    """What is submitted: the entrypoint, its working folder's content, and where the run goes."""

    submission_id: str
    entrypoint: str
    config_name: str  # the config's file name inside the job's working_dir
    run_dir: str  # the run folder on the cluster: storage/name
    metadata: dict[str, str]


def check_address(address: str | None) -> str:
    """The job API's HTTP address (the dashboard's: ``http://HEAD:8265``)."""
    if not address:
        raise UserError("--address: give the head's dashboard address, e.g. --address http://127.0.0.1:8265 "
                        "(or set RAY_API_SERVER_ADDRESS)")  # fmt: skip
    try:
        parsed = urlparse(address)
        _ = parsed.port  # a port that is no number, or out of range: ValueError
        ok = parsed.scheme in ("http", "https") and bool(parsed.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise UserError(f"--address {http.redact(address)!r}: the job API is the dashboard's HTTP address, e.g. "
                        "http://HEAD:8265 (not the GCS address HEAD:6379)")  # fmt: skip
    return address.rstrip("/")


def plan_job(config: SweepConfig, config_path: Path, *, storage: str, name: str, overrides: list[str],
             report: bool, python: str = "python") -> SweepJob:  # fmt: skip
    """The job for ``config``; refuses what would go wrong on the cluster rather than here."""
    try:
        check_name(name)
    except ValueError as exc:
        raise UserError(f"--name: {exc}") from None
    if not (storage.startswith("~") or Path(storage).is_absolute()):
        raise UserError(f"--storage {storage!r}: give an absolute path on the cluster's shared storage (e.g. "
                        "/shared/runs); a relative one would land in the job's temporary working folder")  # fmt: skip
    root = config.data.root
    if not (root.startswith("~") or Path(root).is_absolute()):
        raise UserError(f"{config_path}: data.root {root!r} is relative; on the cluster it would be relative to "
                        "the job's temporary working folder: give an absolute path or one under ~")  # fmt: skip
    storage = storage.rstrip("/") or "/"
    command = [python, "-m", "dnr_sweep.cli", "run", config_path.name, "--address", "auto",
               "--storage", storage, "--name", name]  # fmt: skip
    for override in overrides:
        command += ["--set", override]
    if not report:
        command.append("--no-report")
    run_dir = f"{storage}/{name}" if storage != "/" else f"/{name}"
    return SweepJob(
        submission_id=f"dnr-sweep_{name}",
        entrypoint=shlex.join(command),
        config_name=config_path.name,
        run_dir=run_dir,
        metadata={"dnr_sweep_run_dir": run_dir, "dnr_sweep_config": config.name},
    )


def token_source() -> str | None:
    """Where Ray's token comes from, in Ray's order (for messages; the token itself is never shown)."""
    if os.environ.get(TOKEN_ENV):
        return f"${TOKEN_ENV}"
    if os.environ.get(TOKEN_PATH_ENV):
        return os.environ[TOKEN_PATH_ENV]
    return DEFAULT_TOKEN_FILE if Path(DEFAULT_TOKEN_FILE).expanduser().is_file() else None


def auth_headers() -> dict[str, str]:
    """``{"authorization": "Bearer ..."}`` from Ray's own token loader, or ``{}`` when there is no token.

    The job client only adds the token itself when ``RAY_AUTH_MODE=token`` is set in *this*
    process; a laptop that submits to a cluster usually has no reason to set it, so the header is
    passed explicitly.
    """
    # lazy: Ray takes seconds to import; `submit` checks its config and address without it
    from ray._raylet import AuthenticationTokenLoader
    from ray.exceptions import AuthenticationError

    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # the environment may have changed since it last looked
    try:
        return dict(loader.get_token_for_http_header(ignore_auth_mode=True))
    except AuthenticationError:
        raise UserError(f"{TOKEN_PATH_ENV}={os.environ.get(TOKEN_PATH_ENV)!r}: the file cannot be read or is empty; "
                        f"point it at the file holding the cluster's token, or unset it") from None  # fmt: skip


@contextmanager
def working_dir(config_path: Path, job: SweepJob) -> Iterator[Path]:
    """A private temporary folder holding only the config (the job's ``working_dir``)."""
    with files.private_folder("dnr-sweep-job-") as folder:
        files.write_bytes(folder / job.config_name, Path(config_path).read_bytes())
        yield folder


class JobAPI:
    """The Ray job API at ``address`` (the dashboard's REST endpoints), every request through the one HTTP
    client with the token, a deadline and a cap; each answer is checked for the shape the API gives."""

    def __init__(self, address: str, headers: dict[str, str]) -> None:
        self.address, self.headers, self.shown = address, headers, http.redact(address)

    def call(self, method: str, path: str, *, data: bytes | None = None, ok: Collection[int] = (200,),
             json_answer: bool = True, max_bytes: int = ANSWER_BYTES, total_s: float | None = None) -> http.Response:  # fmt: skip
        """One request (``total_s``: its deadline, default :data:`REQUEST_S`); a refusal a user can act on as
        a :class:`UserError`. An HTTP status outside ``ok``
        other than 401/403 stays an :class:`~dnr_sweep.foundation.http.HttpError` for the caller to word."""
        headers = {**self.headers, **({"Content-Type": "application/json"} if method == "POST" else {})}
        limits = http.Limits(connect_s=CONNECT_S, total_s=total_s or REQUEST_S, max_bytes=max_bytes)
        try:
            return http.request(method, self.address + path, limits=limits, headers=headers, data=data, ok=ok,
                                expect_json=json_answer)  # fmt: skip
        except http.HttpError as exc:
            if exc.kind == "unreachable":
                raise UserError(f"--address {self.shown}: no Ray job API answers there ({exc.detail}); check the "
                                "host and port (the dashboard's, 8265) or the SSH tunnel") from None  # fmt: skip
            if exc.kind == "timeout":
                raise UserError(f"--address {self.shown}: {method} {path}: {exc.detail}; check that the dashboard "
                                "is up (`ray status` on the head) and the tunnel") from None  # fmt: skip
            if exc.kind == "status" and exc.status in (401, 403):
                source = token_source()
                held = f"the token from {source} is not this cluster's" if source else "no token was found"
                raise UserError(
                    f"{self.shown} refused the request ({held}). Print the cluster's token on the head with "
                    f"`ray get-auth-token` and put it in {DEFAULT_TOKEN_FILE} or ${TOKEN_ENV} here"
                ) from None
            if exc.kind == "status" and not exc.location:
                raise
            raise self.not_ray(path, _what(exc)) from None

    def not_ray(self, path: str, what: str) -> UserError:
        return UserError(f"no Ray dashboard at {self.shown}: {path} {what}. --address names the dashboard's HTTP "
                         "address on the head (http://HEAD:8265, or http://127.0.0.1:8265 through an SSH tunnel); "
                         "check the host and the port")  # fmt: skip

    def check(self) -> str:
        """The cluster's Ray version, proving a Ray job API answers (and takes the token)."""
        try:
            data = self.call("GET", "/api/version").data
        except http.HttpError as exc:
            raise self.not_ray("/api/version", _what(exc)) from None
        if not (isinstance(data, dict) and isinstance(data.get("ray_version"), str) and "version" in data):
            raise self.not_ray("/api/version", "answered JSON without the job API's fields (ray_version, version)")
        return data["ray_version"]

    def upload(self, folder: Path) -> str:
        """``folder`` as a package on the cluster (uploaded unless it is there); its ``gcs://`` URI."""
        from ray._private.runtime_env.packaging import create_package, get_uri_for_directory  # lazy: as above

        uri = get_uri_for_directory(str(folder), include_gitignore=False)
        protocol, name = uri.split("://", 1)
        path = f"/api/packages/{protocol}/{name}"
        if self.call("GET", path, ok=(200, 404), json_answer=False).status == 404:
            with files.private_folder("dnr-sweep-package-") as tmp:
                package = tmp / name
                create_package(str(folder), package, include_gitignore=False)
                self.call("PUT", path, data=package.read_bytes(), json_answer=False)
        return uri

    def submit(self, body: dict[str, Any]) -> str:
        """POST the job; its submission id."""
        data = self.call("POST", "/api/jobs/", data=json.dumps(body).encode()).data
        if not (isinstance(data, dict) and isinstance(data.get("submission_id"), str)):
            raise self.not_ray("/api/jobs/", "answered JSON without a submission_id")
        return data["submission_id"]

    def status(self, job_id: str) -> str:
        """The job's status (one of :data:`STATUSES`)."""
        path = f"/api/jobs/{job_id}"
        data = self.call("GET", path).data
        if not (isinstance(data, dict) and data.get("status") in STATUSES):
            raise self.not_ray(path, "answered JSON without a job status")
        return data["status"]

    def logs(self, job_id: str) -> str:
        """The job's log so far (the driver's output)."""
        path = f"/api/jobs/{job_id}/logs"
        data = self.call("GET", path, max_bytes=LOG_BYTES, total_s=LOG_S).data
        if not (isinstance(data, dict) and isinstance(data.get("logs"), str)):
            raise self.not_ray(path, "answered JSON without a log")
        return data["logs"]


def _what(exc: http.HttpError) -> str:
    """What a peer that is no Ray job API answered, in a few words."""
    if exc.kind == "status":
        moved = f" to {exc.location} (give that address if it is the dashboard)" if exc.location else ""
        return f"answered HTTP {exc.status} {exc.reason}{moved}".rstrip()
    if exc.kind == "not_json" and "html" in exc.content_type.lower():
        return f"answered a web page ({exc.content_type}), not the job API's JSON"
    if exc.kind == "not_json":
        return f"answered no JSON ({exc.detail})"
    return f"failed: {exc.detail}"


def connect(address: str) -> JobAPI:
    """The job API at ``address`` with the token, checked to be one; errors name the fix."""
    api = JobAPI(address, auth_headers())
    api.check()
    return api


def submit(api: JobAPI, job: SweepJob, folder: Path) -> str:
    """Submit ``job`` with ``folder`` as its working_dir; the job's id."""
    try:
        uri = api.upload(folder)
        return api.submit({"entrypoint": job.entrypoint, "submission_id": job.submission_id,
                           "runtime_env": {"working_dir": uri}, "metadata": job.metadata})  # fmt: skip
    except http.HttpError as exc:
        if "already exists" in exc.text:
            raise UserError(f"the cluster already has a job {job.submission_id}: choose another --name") from None
        last = exc.text[-300:].strip() or f"HTTP {exc.status} {exc.reason}"
        raise UserError(f"the cluster refused the job: {last}") from None


def follow(api: JobAPI, job_id: str, *, write: Callable[[str], None], poll_s: float = 1.0) -> str:
    """Write the job's log as it grows until the job ends; its final status (``SUCCEEDED``, ``FAILED``,
    ``STOPPED``). Each poll reads the status, then the whole log (so after a final status, the final log)."""
    shown = 0
    while True:
        try:
            status, text = api.status(job_id), api.logs(job_id)
        except http.HttpError as exc:
            raise UserError(f"{api.shown}: following job {job_id} failed: HTTP {exc.status} {exc.reason} "
                            f"{exc.text[-200:]}".strip()) from None  # fmt: skip
        if len(text) > shown:
            write(text[shown:])
            shown = len(text)
        if status in TERMINAL:
            return status
        time.sleep(min(MAX_POLL_S, max(poll_s, len(text) / (1 << 20))))


def follow_commands(address: str, job_id: str, run_dir: str) -> list[str]:
    """How to follow the job from a shell (Ray's CLI sends the token when RAY_AUTH_MODE=token)."""
    ray = f"RAY_AUTH_MODE=token ray job {{}} {shlex.quote(job_id)} --address {shlex.quote(address)}"
    return [
        f"  log:        {ray.format('logs -f')}",
        f"  status:     {ray.format('status')}",
        f"  stop:       {ray.format('stop')}",
        f"  dashboard:  {address}/#/jobs (sign in with the token: `ray get-auth-token` on the head)",
        f"  progress:   dnr-sweep status {shlex.quote(run_dir)} (where the storage is mounted)",
    ]


def shown_address(address: str) -> str:
    """``address`` as messages show it: without userinfo or query values."""
    return http.redact(address)


def is_loopback(address: str) -> bool:
    return http.is_loopback(urlparse(address).hostname or "")
