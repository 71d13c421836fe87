"""The artifact's cluster settings, as data shared by every backend.

These are the kubeadm ClusterConfiguration values of the original artifact (see
the reference page on the upstream artifact), the kwok fake-node shape, and the
labels that select Kubedirect and the simulated sandbox.
"""

from __future__ import annotations

# Labels the workloads carry.
KD_MANAGED_LABEL = "kubedirect/managed"  # value "true": objects managed by Kd's controllers
LIFECYCLE_LABEL = "kubedirect/pod-lifecycle"  # value "custom": the simulated sandbox ("+")
CUSTOM_LIFECYCLE = "custom"
SIMULATED_READY_AFTER_MS = 200  # the original's custom kubelet: `-simulate -ready-after=200`

# Fake nodes managed by kwok.
KWOK_NODE_LABELS = {"type": "kwok"}
KWOK_NODE_SELECTOR = "type=kwok"
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Equal", "value": "fake", "effect": "NoSchedule"}
KWOK_ALLOCATABLE = {"cpu": "48", "memory": "128Gi", "pods": "110"}
KWOK_NODE_LEASE_SECONDS = 40  # what kwokctl passes; 0 falls back to a 10-minute heartbeat
KWOK_POD_CIDR = "10.0.0.1/12"  # room for the pods of 2,000 nodes

# Control-plane flags, as the artifact's kubeadm config sets them.
APISERVER_FLAGS = {
    "max-mutating-requests-inflight": "200000",
    "max-requests-inflight": "200000",
    "feature-gates": "AuthorizeNodeWithSelectors=false",
}
CONTROLLER_MANAGER_FLAGS = {
    "concurrent-deployment-syncs": "100",
    "concurrent-replicaset-syncs": "100",
    "concurrent-endpoint-syncs": "50",
    "concurrent-service-endpoint-syncs": "50",
    "endpoint-updates-batch-period": "50ms",
    "endpointslice-updates-batch-period": "50ms",
    "feature-gates": "TopologyAwareHints=false",
}
ETCD_FLAGS = {
    "auto-compaction-mode": "periodic",
    "auto-compaction-retention": "15m",
    "quota-backend-bytes": "4294967296",
}
# The original sets these for its large (Figure 11) clusters. Below 100 nodes the
# scheduler scores every node regardless, so they are applied to every cluster.
SCHEDULER_CONFIG = {"parallelism": 50, "percentageOfNodesToScore": 5}

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"

# The client-side rate limits of the controller manager and the scheduler. The artifact keeps
# the components' defaults (kube-controller-manager --kube-api-qps=20 --kube-api-burst=30, per
# controller's client; kube-scheduler clientConnection qps 50, burst 100). The unthrottled
# control experiment (kdlib's, not the original's: system ``k8s+u``) raises both so far that
# no run here comes near them, to show what binds once the client limit is gone.
# (kwok's own client needs nothing raised: it runs at 5000 qps, burst 10000, kwok's defaults.)
UNTHROTTLED_QPS = 10000
UNTHROTTLED_BURST = 10000
UNTHROTTLED_CONTROLLER_MANAGER_FLAGS = {"kube-api-qps": str(UNTHROTTLED_QPS),
                                        "kube-api-burst": str(UNTHROTTLED_BURST)}
# kube-scheduler ignores its --kube-api-qps/--kube-api-burst flags when it reads a --config
# file (its deprecated flags' help says so), so the limit goes in the file's clientConnection.
UNTHROTTLED_SCHEDULER_CLIENT = {"qps": UNTHROTTLED_QPS, "burst": UNTHROTTLED_BURST}


def client_limits(unthrottled: bool) -> dict[str, str]:
    """The client limits a control plane runs with, exactly as given to each component
    (the run's metadata records them)."""
    if not unthrottled:
        return {"kube-controller-manager": "defaults: --kube-api-qps=20 --kube-api-burst=30",
                "kube-scheduler": "defaults: clientConnection qps 50, burst 100"}
    return {"kube-controller-manager": " ".join(f"--{k}={v}" for k, v in UNTHROTTLED_CONTROLLER_MANAGER_FLAGS.items()),
            "kube-scheduler": "config file clientConnection: "
                              + ", ".join(f"{k}: {v}" for k, v in UNTHROTTLED_SCHEDULER_CLIENT.items())}
