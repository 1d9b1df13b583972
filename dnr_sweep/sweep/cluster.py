"""Starting or joining Ray: a local head with the dashboard on loopback, or a cluster address checked before
anything waits on it (reachable, token auth, enough resources for one trial).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

from dnr_sweep.config import SweepConfig
from dnr_sweep.foundation.errors import ClusterError


def trial_resources(config: SweepConfig) -> dict[str, float]:
    """Resources one trial asks for; fractional GPUs pack several trials on one GPU."""
    resources = config.tune.resources_per_trial
    return {"cpu": resources.cpu, "gpu": resources.gpu}


# ------------------------------------------------------------------------------------------------
# Ray


def start_ray(*, address: str | None, dashboard: bool, dashboard_host: str, log=print) -> str | None:
    """An embedded local Ray (a fresh one, never a stale one), or a connection to ``address``."""
    # Tune warns on every checkpoint of short epochs that snapshotting "may become a bottleneck";
    # with per-epoch checkpoints of small models that is expected, so the warning is off
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address:
        use_cluster_token()  # before Ray reads its configuration
    import ray  # lazy: after the environment above, which Ray reads when first imported

    if ray.is_initialized():
        return None
    if dashboard and dashboard_host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: the dashboard and Ray's job-submission API will listen on {dashboard_host}; anyone who "
            "reaches that address and holds the cluster's token can run code on it. Firewall it.")  # fmt: skip
    if address:
        check_cluster_address(address)
        try:
            context = ray.init(address=address, logging_level="WARNING")
        except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(
                f"--address {address}: cannot join the Ray cluster ({first[:300]}). Check that `ray start --head` "
                "runs there and that this machine holds the cluster's token: copy the head's ~/.ray/auth_token "
                "here or set RAY_AUTH_TOKEN to the output of `ray get-auth-token` on the head (docs/CLUSTER.md)"
            ) from None
    else:
        context = ray.init(address="local", include_dashboard=dashboard, dashboard_host=dashboard_host,
                           logging_level="WARNING")  # fmt: skip
    url = getattr(context, "dashboard_url", None)
    if dashboard and url:
        log(f"Ray dashboard: http://{url} (token authentication: print the token with `ray get-auth-token`)")
    return url


#: how long each step of :func:`check_cluster_address` may wait
ADDRESS_TIMEOUT_S = 5.0


def _split_address(address: str) -> tuple[str, int, bool]:
    """``host:port`` (``ray://`` prefix: Ray Client; ``[v6]:port``) -> ``(host, port, is_client)``."""
    text = address.strip()
    client = text.startswith("ray://")
    if client:
        text = text[len("ray://") :]
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ClusterError(f"--address {address!r}: expected host:port (e.g. 10.0.0.1:6379, the head node's GCS "
                           "port), ray://host:10001 (Ray Client) or auto")  # fmt: skip
    return host, int(port_text), client


def _resolve_auto(address: str) -> tuple[str, str]:
    """What Ray would connect to for ``auto`` (RAY_ADDRESS, then the last `ray start` on this machine)."""
    from ray._private import services  # lazy: Ray takes seconds to import; `run` checks before Ray starts

    try:
        resolved = services.get_ray_address_from_environment(address, None)
    except ConnectionError:
        raise ClusterError(
            f"--address {address}: no Ray cluster was started on this machine (RAY_ADDRESS is unset and "
            "`ray start` left no address); start one with `ray start --head`, pass the head node's host:port, "
            "or leave --address out for an embedded local Ray"
        ) from None
    return resolved, "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "the last `ray start` on this machine"


def check_cluster_address(address: str, *, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """Fail in seconds, before ``ray.init``, when no Ray cluster answers at ``address``.

    ``ray.init(address=...)`` waits without end (retrying, printing warnings) for a cluster that is
    not there. This tries a TCP connection to the address, then asks the GCS for the cluster id
    over gRPC (an answer, or a refusal for want of the cluster's token, proves a GCS is there), each
    with a deadline of ``timeout_s``. Ray Client addresses (``ray://``) get the TCP check only.

    Raises:
        ClusterError: naming the address, what was tried and how to check the cluster.
    """
    given, source = address, ""
    if address.strip() == "auto":
        address, origin = _resolve_auto(address)
        source = f" (from {origin}; it may be stale)"
    host, port, client = _split_address(address)
    tried = [f"a TCP connection to {host}:{port}"]

    def refuse(problem: str) -> ClusterError:
        return ClusterError(
            f"--address {given}: no Ray cluster answers at {address}{source}: {problem}. Tried "
            f"{' then '.join(tried)}, {timeout_s:g} s each. Check that the cluster is up with "
            f"`ray status --address {host}:{port}` on one of its nodes, that {host}:{port} is its head node's "
            f"{'Ray Client port (10001 by default)' if client else 'GCS port (6379 by default)'}, and that no "
            "firewall blocks it; or leave --address out to run on an embedded local Ray"
        )

    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except socket.gaierror as exc:
        raise refuse(f"the host name does not resolve ({exc.strerror})") from None
    except TimeoutError:
        raise refuse("the connection timed out") from None
    except OSError as exc:
        raise refuse(f"the connection failed ({exc.strerror or exc})") from None
    if client:
        return
    # lazy: gRPC and Ray's stubs only for a GCS address, and Ray takes seconds to import
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    tried.append("a GCS request for the cluster id")
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code != grpc.StatusCode.UNAUTHENTICATED:  # a GCS that wants the token: it is there
                name = code.name if code is not None else "no answer"
                raise refuse(f"something listens there but it is not a Ray GCS (gRPC status {name})") from None


def _local_cpus() -> float:
    try:
        # lazy: as in _resolve_auto; what an embedded Ray will offer (cgroup quotas included)
        from ray._private.utils import get_num_cpus

        return float(get_num_cpus())
    except (ImportError, AttributeError):
        return float(os.cpu_count() or 1)


def check_dashboard_host(host: str) -> None:
    """``--dashboard-host`` must be an IP address (or localhost) for Ray's dashboard to bind to."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ClusterError(f"--dashboard-host {host!r}: not an IP address to listen on; use 127.0.0.1 (default, "
                               "this machine only) or an address of this machine") from None  # fmt: skip


def check_local_resources(config: SweepConfig) -> None:
    """Before an embedded local Ray starts: can this machine host one trial at all?"""
    import ray  # lazy: as in _resolve_auto

    if ray.is_initialized():  # a cluster is already there: ask it
        check_resources_feasible(config)
        return
    need = trial_resources(config)
    have = {"cpu": _local_cpus(), "gpu": 0.0}
    if need["gpu"] > 0:  # torch only when it matters: importing it takes seconds
        import torch

        have["gpu"] = float(torch.cuda.device_count())
    if need["cpu"] > have["cpu"] or need["gpu"] > have["gpu"]:
        raise ClusterError(
            f"tune.resources_per_trial asks for {need['cpu']:g} CPU and {need['gpu']:g} GPU per trial, but this "
            f"machine (the embedded local Ray) has {have['cpu']:g} CPU and {have['gpu']:g} GPU; lower "
            "resources_per_trial (e.g. --set tune.resources_per_trial.gpu=0) or pass --address of a cluster that has them"
        )


def use_cluster_token() -> bool:
    """Turn Ray's token authentication on for this process when a token is at hand.

    A Ray 2.60 cluster started with a token refuses clients that do not send it, and a client sends
    it only with ``RAY_AUTH_MODE=token``; so when the mode is not set and a token is available
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), set it. An explicit
    ``RAY_AUTH_MODE`` is always respected.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return os.environ["RAY_AUTH_MODE"].lower() == "token"
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:  # Ray caches its configuration when first imported: refresh it
            from ray._raylet import Config  # already imported: no cost

            Config.initialize("")
        return True
    return False


def check_resources_feasible(config: SweepConfig) -> None:
    """Fail now, not by pending forever, when no node of the cluster can ever host one trial."""
    import ray  # lazy: as in _resolve_auto

    need = trial_resources(config)
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    for node in nodes:
        have = node.get("Resources", {})
        if have.get("CPU", 0) >= need["cpu"] and have.get("GPU", 0) >= need["gpu"]:
            return
    best = max(((n["Resources"].get("CPU", 0), n["Resources"].get("GPU", 0)) for n in nodes), default=(0, 0))
    raise ClusterError(
        f"tune.resources_per_trial asks for {need['cpu']:g} CPU and {need['gpu']:g} GPU per trial, but the largest "
        f"node of this cluster has {best[0]:g} CPU and {best[1]:g} GPU; lower resources_per_trial "
        "(e.g. with --set tune.resources_per_trial.gpu=0) or add a node that has them"
    )
