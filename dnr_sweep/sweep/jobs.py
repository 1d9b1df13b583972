"""A sweep as a Ray Job: submit ``dnr-sweep run`` to a cluster's job API from any machine.

Why a Job rather than ``dnr-sweep run --address``: the driver runs on the cluster, so the laptop
that submitted it can close; the dashboard's Jobs tab shows the job's status and the driver's log
(the trial table), and ``ray job logs -f`` follows it from anywhere the job API is reachable.

What is shipped: the config file as given, in a job ``working_dir`` (Ray uploads it through the
job API; the entrypoint runs in it). The entrypoint is
``python -m dnr_sweep.cli run CONFIG --address auto --storage STORAGE --name NAME [--set ...]``:
``--address auto`` joins the cluster the job runs on (Ray Jobs sets ``RAY_ADDRESS`` for it), and
``python`` is the cluster's (``--python`` names another): the head must have dnr-sweep installed in
the environment that ran ``ray start`` (activate it first), as every worker that runs trials must. The run name is fixed
here, so the run folder's path on the cluster is known before the job starts.

Token authentication: the request carries Ray's token when one is found where Ray itself looks
(``RAY_AUTH_TOKEN``, else the file named by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``),
read by Ray's own loader; the token is never printed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dnr_sweep.config import SweepConfig, check_name
from dnr_sweep.foundation.errors import UserError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"
#: a job ends in one of these (ray.job_submission.JobStatus values)
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


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
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(f"--address {address!r}: the job API is the dashboard's HTTP address, e.g. "
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
    """A temporary folder holding only the config (the job's ``working_dir``)."""
    with tempfile.TemporaryDirectory(prefix="dnr-sweep-job-") as folder:
        shutil.copyfile(config_path, Path(folder) / job.config_name)
        yield Path(folder)


def connect(address: str) -> Any:
    """A ``JobSubmissionClient`` for ``address`` that sends the token; errors name the fix."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    source = token_source()
    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except AuthenticationError:
        held = f"the token from {source} is not this cluster's" if source else "no token was found"
        raise UserError(
            f"{address} refused the request ({held}). Print the cluster's token on the head with "
            f"`ray get-auth-token` and put it in {DEFAULT_TOKEN_FILE} or ${TOKEN_ENV} here"
        ) from None
    except ConnectionError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--address {address}: no Ray job API answers there ({first}); check the host and "
                        "port (the dashboard's, 8265) or the SSH tunnel") from None  # fmt: skip


def submit(client: Any, job: SweepJob, folder: Path) -> str:
    """Submit ``job`` with ``folder`` as its working_dir; the job's id."""
    try:
        return client.submit_job(
            entrypoint=job.entrypoint,
            submission_id=job.submission_id,
            runtime_env={"working_dir": str(folder)},
            metadata=job.metadata,
        )
    except RuntimeError as exc:
        text = str(exc)
        if "already exists" in text:
            raise UserError(f"the cluster already has a job {job.submission_id}: choose another --name") from None
        raise UserError(f"the cluster refused the job: {text.strip().splitlines()[-1]}") from None


def follow(client: Any, job_id: str, *, write: Callable[[str], None], poll_s: float = 1.0) -> str:
    """Stream the job's log until it ends; its final status (``SUCCEEDED``, ``FAILED``, ``STOPPED``)."""
    import asyncio

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    asyncio.run(tail())
    while (status := client.get_job_status(job_id).value) not in TERMINAL:
        time.sleep(poll_s)  # the log stream can close a moment before the status is final
    return status


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


def is_loopback(address: str) -> bool:
    return urlparse(address).hostname in LOOPBACK
