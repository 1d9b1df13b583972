"""The data set on every node of a Ray cluster, once, before any trial starts (trials never download).

``dnr-sweep run --address`` (and ``submit``, whose job runs ``run --address auto``) has already
prepared the data on the driver; :func:`prepare_nodes` then runs one Ray task per alive node, pinned
there (``NodeAffinitySchedulingStrategy(soft=False)``), that calls
:func:`dnr_sweep.data.fetch.ensure` on that node's ``data.root`` (``~`` is the node's home):

- ``data.root`` on shared storage: the driver's copy is there, so each task only verifies it is
  present (milliseconds; the record of the driver's verification is read);
- ``data.root`` on node-local disk: each node fetches its own copy, under its own file lock, so
  several drivers or tasks on one node still mean one download.

The tasks ask for no CPU (they must not wait behind trials) and return a line each; a node that
cannot get the data ends the sweep before it starts, in one message naming the node and the fix.
"""

from __future__ import annotations

import socket
from typing import Any

from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.data.specs import DatasetSpec
from dnr_sweep.foundation.errors import ClusterError, UserError

__all__ = ["DataNodesError", "prepare_nodes"]


class DataNodesError(ClusterError):
    """Some node of the cluster cannot get the data set; the message names each and why."""


def _prepare_here(spec: DatasetSpec, root: str, download: bool, mirror: str | None) -> tuple[str, bool, str]:
    """On one node: (host name, ok, what was done or the error message). Never raises a UserError:
    the driver collects every node's answer and reports them together. ``spec`` travels from the
    driver, so every node checks the same facts (URL, MD5s)."""
    host = socket.gethostname()
    try:
        how = data_fetch.ensure(spec, root, download=download, mirror=mirror, progress=False,
                                log=lambda line: print(f"[{host}] {line}", flush=True))  # fmt: skip
    except UserError as exc:
        return host, False, str(exc)
    return host, True, how


def prepare_nodes(data: Any, *, mirror: str | None = None, log=print) -> dict[str, str]:
    """Run the preparation on every alive node (see the module docstring); ``"IP (node id)"`` -> what
    was done.

    Raises:
        DataNodesError: a node could not get the data (each such node and its message named).
    """
    spec = dataset_specs.get(data.dataset)
    if spec.archive is None:
        return {}
    # lazy: Ray takes seconds to import, and the command line imports this module at startup
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    base = data_fetch.resolve_mirror(mirror, data.mirror)
    task = ray.remote(num_cpus=0, max_retries=0)(_prepare_here)  # a failure that cannot heal is not retried
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    # keyed by node id: several raylets may share an address (one machine, or containers)
    refs = {
        f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})": task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        ).remote(spec, data.root, data.download, base)
        for node in nodes
    }
    done, failed = {}, []
    for node, (host, ok, text) in zip(refs, ray.get(list(refs.values())), strict=True):
        if ok:
            done[node] = text
        else:
            failed.append(f"node {node} on {host}: {text}")
    if failed:
        raise DataNodesError(f"{spec.name} is not on every node of the cluster; no trial was started.\n"
                             + "\n".join(failed))  # fmt: skip
    summary = ", ".join(f"{how} on {sum(v == how for v in done.values())}" for how in sorted(set(done.values())))
    log(f"{spec.name} on {len(done)} node(s): {summary}")
    return done
