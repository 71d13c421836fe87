"""What a run cost: CPU seconds per component, the machine's load, the API server's writes.

Two snapshots, one just before the scale call and one once every pod is Ready; their
difference (:func:`between`) goes into the run's metadata as ``usage``. From it the
findings say what binds once the client limit is gone (the component that used the
cores, or the machine's cores themselves), and what one real pod start costs:

* ``cpu_s``: CPU seconds of each control-plane component, of ``real nodes`` (their
  containerd, kubelet, shims and pods), and of the ``harness`` (this process, whose
  watches time the run); what the cluster cannot read here (SSH hosts) is absent;
* ``machine_busy_s``: the busy CPU seconds of the whole machine (``/proc/stat``), so
  that other processes' share shows (the machine may be shared);
* ``api_writes``: the API server's write requests by verb and resource
  (``apiserver_request_total``), e.g. ``POST pods``, ``POST pods/binding``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from .. import machine
from ..cluster.base import Cluster
from ..log import get as get_logger

log = get_logger(__name__)

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic()
    cluster: dict[str, float]  # Cluster.cpu_seconds()
    harness: float  # this process's CPU seconds, every thread
    machine_busy: float | None  # busy CPU seconds of the machine since boot
    writes: dict[str, float] | None  # the API server's write requests so far, by "VERB resource[/sub]"


def machine_busy_seconds() -> float | None:
    """The machine's busy CPU seconds since boot (every core), or None off Linux."""
    try:
        return machine.cpu_times().busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


def api_writes(api: client.ApiClient) -> dict[str, float] | None:
    """``apiserver_request_total`` of the write verbs, summed by verb and resource; None when
    the API server's metrics cannot be read (the reason is logged)."""
    try:
        response = api.call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False,
                                _return_http_data_only=True, _request_timeout=10)
        text = response.data.decode()
    except Exception as error:  # the run goes on without this column
        log.warning("the API server's metrics could not be read: %s", str(error).splitlines()[0])
        return None
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":  # the parser drops the counter's _total
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels.get("verb") in WRITE_VERBS:
                resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource")
                                                         else "")
                key = f"{labels['verb']} {resource}"
                found[key] = found.get(key, 0.0) + sample.value
    return found


def snapshot(cluster: Cluster, api: client.ApiClient) -> Snapshot:
    return Snapshot(time.monotonic(), cluster.cpu_seconds(), time.process_time(), machine_busy_seconds(),
                    api_writes(api))


def _difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Per key, what was added between the two (a key that is new counts from 0)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def between(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """What the interval cost, for the run's metadata (see the module's docstring)."""
    cpu: dict[str, float] = {}
    for key, seconds in _difference(after.cluster, before.cluster).items():
        name = key.split("/", 1)[0]  # "real nodes/<process>" → "real nodes"
        cpu[name] = cpu.get(name, 0.0) + max(0.0, seconds)  # a process that died takes its time with it
    cpu["harness"] = after.harness - before.harness
    busy = (None if after.machine_busy is None or before.machine_busy is None
            else round(after.machine_busy - before.machine_busy, 2))
    writes = None
    if after.writes is not None and before.writes is not None:
        writes = {k: int(v) for k, v in sorted(_difference(after.writes, before.writes).items()) if v >= 1}
    return {"seconds": round(after.at - before.at, 3), "cores": os.cpu_count(),
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()}, "machine_busy_s": busy,
            "load_average": [round(v, 2) for v in os.getloadavg()], "api_writes": writes}
