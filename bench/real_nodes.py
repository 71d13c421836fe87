"""Benchmark of the real nodes (issue 11): real kubelets and containers on this machine.

Reports: node join time (from the kwok nodes Ready to every real node Ready: namespaces,
containerd, image import, kubelet start and registration), 0→N Ready for each N on the
real nodes (all pods Ready, p90, and the per-stage medians of the runtime breakdown),
the memory of each node (kubelet + containerd + shims, and its containers), idle and at
the largest N, and the time to scale back to zero.

    python bench/real_nodes.py [--real-nodes 2] [--pods 10,50,100] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubernetes import client  # noqa: E402

from kdlib import LocalCluster  # noqa: E402
from kdlib.k8s import objects  # noqa: E402
from kdlib.cluster.local import cgroups, realnode  # noqa: E402
from kdlib.cluster.local.hostnet import why_not_real_nodes  # noqa: E402
from kdlib.experiments.runtime import RuntimeWatch, medians  # noqa: E402

NAMESPACE, NAME = "bench-real", "real"


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def node_memory(cluster: LocalCluster) -> dict[str, dict[str, float]]:
    """Per real node, in MiB: kubelet + containerd + shims (agent), and its containers."""
    found = {}
    for index, name in enumerate(cluster.info.real_node_names):
        node = realnode.RealNode(cluster.state_dir, _net(cluster), index)
        ids = json.loads(node.record.read_text())["namespaces"]
        agent = realnode.namespace_pids(ids) + [cluster.processes.pid(node.process_names[1]) or 0]
        found[name] = {"agent_mib": round(_rss_kib(agent) / 1024, 1),
                       "containers_mib": round(_rss_kib(sorted(cgroups.pids(node.cgroup))) / 1024, 1)}
    return found


def _net(cluster: LocalCluster):
    from kdlib.cluster.local import realnodes
    from kdlib.cluster.local.hostnet import HostNetwork

    return HostNetwork.from_json(json.loads((cluster.state_dir / realnodes.RECORD).read_text())["net"])


def _nodes(cluster: LocalCluster) -> list[realnode.RealNode]:
    net = _net(cluster)
    return [realnode.RealNode(cluster.state_dir, net, i) for i in range(len(cluster.info.real_node_names))]


def scale(api: client.ApiClient, cluster: LocalCluster, replicas: int, timeout: float = 600) -> dict:
    apps = client.AppsV1Api(api)
    with RuntimeWatch(api, NAMESPACE) as pods:
        started = time.monotonic()
        apps.patch_namespaced_deployment_scale(NAME, NAMESPACE, {"spec": {"replicas": replicas}})
        while pods.ready_count() < replicas:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"only {pods.ready_count()} of {replicas} pods Ready after {timeout} s")
            time.sleep(0.05)
        all_ready = time.monotonic() - started
    starts: dict[str, list[float]] = {}
    for node in _nodes(cluster):  # while the pods run: their processes give sandbox and start times
        starts.update(cgroups.pod_process_starts(node.cgroup))
    records = pods.with_process_starts(starts)
    ready = sorted(r.ready for r in records if r.ready is not None)
    per_node = {}
    for r in records:
        per_node[r.node] = per_node.get(r.node, 0) + 1
    return {"pods": replicas, "all_ready_s": round(all_ready, 3),
            "p90_ready_s": round(ready[-(-9 * len(ready) // 10) - 1], 3),
            "stage_medians_s": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in medians(records).items()},
            "per_node": per_node}


def scale_to_zero(api: client.ApiClient, cluster: LocalCluster, timeout: float = 300) -> float:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    started = time.monotonic()
    apps.patch_namespaced_deployment_scale(NAME, NAMESPACE, {"spec": {"replicas": 0}})
    nodes = _nodes(cluster)
    while core.list_namespaced_pod(NAMESPACE).items or any(cgroups.pids(n.cgroup) for n in nodes):
        if time.monotonic() - started > timeout:
            raise RuntimeError("pods or containers still there after scaling to zero")
        time.sleep(0.1)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-nodes", type=int, default=2)
    parser.add_argument("--kwok-nodes", type=int, default=1)
    parser.add_argument("--pods", default="10,50,100")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    reason = why_not_real_nodes()
    if reason:
        print(json.dumps({"not_measured": reason}))
        return 1
    events: list[tuple[float, str]] = []
    t0 = time.monotonic()

    class Events(logging.Handler):  # the cluster's start-up lines, timed
        def emit(self, record: logging.LogRecord) -> None:
            events.append((time.monotonic() - t0, record.getMessage()))

    logging.getLogger("kdlib").addHandler(Events())
    logging.getLogger("kdlib").setLevel(logging.INFO)
    with LocalCluster(nodes=args.kwok_nodes, real_nodes=args.real_nodes) as cluster:
        up_s = time.monotonic() - t0
        kwok_ready = next(t for t, m in events if "kwok nodes Ready" in m)
        real_ready = next(t for t, m in events if "real nodes Ready" in m)
        api = cluster.api_client()
        client.CoreV1Api(api).create_namespace(objects.namespace(NAMESPACE))
        client.AppsV1Api(api).create_namespaced_deployment(NAMESPACE, objects.deployment(
            NAME, NAMESPACE, replicas=0, simulated_sandbox=False, on_real_nodes=True))
        time.sleep(2)
        report = {"real_nodes": args.real_nodes, "cpus": os.cpu_count(), "up_s": round(up_s, 2),
                  "join_s": round(real_ready - kwok_ready, 2), "memory_idle": node_memory(cluster), "runs": []}
        for n in [int(x) for x in args.pods.split(",")]:
            for repeat in range(args.repeats):
                run = scale(api, cluster, n)
                if n == max(int(x) for x in args.pods.split(",")) and repeat == 0:
                    report["memory_at_max"] = node_memory(cluster)
                run["to_zero_s"] = round(scale_to_zero(api, cluster), 2)
                run["repeat"] = repeat
                report["runs"].append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
                time.sleep(2)
        api.close()
    for n in sorted({r["pods"] for r in report["runs"]}):
        runs = [r for r in report["runs"] if r["pods"] == n]
        report.setdefault("summary", {})[n] = {
            "all_ready_s_median": statistics.median(r["all_ready_s"] for r in runs),
            "scheduled_to_ready_s_median": statistics.median(r["stage_medians_s"]["scheduled→ready"] for r in runs)}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
