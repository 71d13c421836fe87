"""kwok fake nodes and the pod lifecycle they simulate, as Kubernetes objects in Python.

kwok acts only on nodes labelled ``type=kwok``; these nodes are plain Node objects,
so any backend (local processes or a kubeadm cluster) creates them the same way.
The pod Stages give the artifact's simulated sandbox: a pod labelled
``kubedirect/pod-lifecycle: custom`` turns Ready 200 ms after kwok sees it bound;
other pods turn Ready at once. Supplying any pod Stage drops kwok's defaults, so the
full set is here (ready x2, complete, delete) with disjoint selectors.
"""

from __future__ import annotations

import json
import time
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from ..errors import ClusterError
from ..k8s.calls import create_all, parallel
from .node import ready
from .settings import (
    CUSTOM_LIFECYCLE,
    KWOK_ALLOCATABLE,
    KWOK_NODE_LABELS,
    KWOK_NODE_SELECTOR,
    KWOK_POD_CIDR,
    KWOK_TAINT,
    LIFECYCLE_LABEL,
    SIMULATED_READY_AFTER_MS,
)

NODE_NAME_FORMAT = "kwok-node-{:04d}"

# kwok fills a pod's status from a Go template evaluated per pod (container names,
# its pod IP); this is the one piece that cannot be plain data.
_READY_STATUS_TEMPLATE = """\
{{ $now := Now }}
conditions:
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Initialized}
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Ready}
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: ContainersReady}
containerStatuses:
{{ range .spec.containers }}
- {image: {{ .image | Quote }}, name: {{ .name | Quote }}, ready: true, restartCount: 0, started: true,
   state: {running: {startedAt: {{ $now | Quote }}}}}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""

_COMPLETE_STATUS_TEMPLATE = """\
{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- {image: {{ .image | Quote }}, name: {{ .name | Quote }}, ready: false, restartCount: 0, started: false,
   state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}}
{{ end }}
phase: Succeeded
"""

_NOT_DELETING = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_LIFECYCLE_KEY = f'.metadata.labels["{LIFECYCLE_LABEL}"]'


def _stage(name: str, match: list[dict], next_: dict, delay_ms: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {"matchExpressions": match},
        "next": next_,
    }
    if delay_ms is not None:
        spec["delay"] = {"durationMilliseconds": delay_ms}  # no jitter: the delay is exact
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def pod_stages(ready_after_ms: int = SIMULATED_READY_AFTER_MS) -> list[dict[str, Any]]:
    """The full pod lifecycle: ready (simulated sandbox), ready (prompt), complete, delete."""
    unstarted = [_NOT_DELETING, {"key": ".status.podIP", "operator": "DoesNotExist"}]
    return [
        _stage(
            "pod-ready-simulated-sandbox",
            [*unstarted, {"key": _LIFECYCLE_KEY, "operator": "In", "values": [CUSTOM_LIFECYCLE]}],
            {"statusTemplate": _READY_STATUS_TEMPLATE},
            delay_ms=ready_after_ms,
        ),
        _stage(
            "pod-ready",
            [*unstarted, {"key": _LIFECYCLE_KEY, "operator": "NotIn", "values": [CUSTOM_LIFECYCLE]}],
            {"statusTemplate": _READY_STATUS_TEMPLATE},
        ),
        _stage(
            "pod-complete",
            [
                _NOT_DELETING,
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ],
            {"statusTemplate": _COMPLETE_STATUS_TEMPLATE},
        ),
        _stage(
            "pod-delete",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"finalizers": {"empty": True}, "delete": True},
        ),
    ]


def kwok_configuration() -> dict[str, Any]:
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        # Nodes: 16 workers instead of kwok's 4, so that 2,000 nodes turn Ready (and keep their
        # leases) in seconds. Pod stages keep kwok's default, as every measured run so far.
        "options": {"cidr": KWOK_POD_CIDR, "nodeIP": "10.255.0.1",
                    "nodePlayStageParallelism": 16, "nodeLeaseParallelism": 16},
    }


def config_yaml(ready_after_ms: int = SIMULATED_READY_AFTER_MS) -> str:
    """The multi-document file passed to ``kwok --config``."""
    return yaml.safe_dump_all([kwok_configuration(), *pod_stages(ready_after_ms)], sort_keys=False)


def node_names(count: int) -> list[str]:
    return [NODE_NAME_FORMAT.format(i) for i in range(count)]


SHARD_LABEL = "kdlib/kwok-worker"  # which kwok process manages the node, when several do


def node_object(name: str, shard: str | None = None) -> dict[str, Any]:
    """A fake node as kwok expects it: labelled, tainted, with the artifact's allocatable;
    ``shard`` names the kwok worker that manages it (an SSH cluster with several)."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                **KWOK_NODE_LABELS,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
            },
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": [KWOK_TAINT]},
        "status": {
            "allocatable": KWOK_ALLOCATABLE,
            "capacity": KWOK_ALLOCATABLE,
            "nodeInfo": {"kubeletVersion": "fake", "operatingSystem": "linux", "architecture": "amd64"},
        },
    }
    if shard is not None:
        node["metadata"]["labels"][SHARD_LABEL] = shard
    return node


def ensure_nodes(api: client.ApiClient, count: int, shards: tuple[str, ...] = ()) -> list[str]:
    """Make exactly ``count`` kwok nodes exist (creating or deleting), and return their names.
    With ``shards``, node ``i`` is labelled for the kwok worker ``shards[i % len(shards)]``."""
    core = client.CoreV1Api(api)
    listing = core.list_node(label_selector=KWOK_NODE_SELECTOR, _preload_content=False)
    existing = {n["metadata"]["name"] for n in json.loads(listing.data)["items"]}
    wanted = node_names(count)

    shard_of = {name: shards[i % len(shards)] if shards else None for i, name in enumerate(wanted)}

    def delete(name: str) -> None:
        try:
            core.delete_node(name, _preload_content=False)
        except ApiException as error:
            if error.status != 404:
                raise

    create_all(api, "/api/v1/nodes", [node_object(n, shard_of[n]) for n in wanted if n not in existing])
    parallel(delete, sorted(existing - set(wanted)), workers=32)
    return wanted


def wait_nodes_ready(api: client.ApiClient, names: list[str], timeout: float) -> None:
    """Poll until every named node is Ready and no other kwok node is."""
    wanted = len(set(names))
    ready.wait_ready(api, names, selector=KWOK_NODE_SELECTOR, exactly=True, deadline=time.monotonic() + timeout,
                     error=lambda missing: ClusterError(
                         f"only {wanted - len(missing)} of {wanted} kwok nodes became Ready "
                         f"within {timeout:.0f} s; is kwok running? (see its log)"))
