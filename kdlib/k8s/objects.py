"""The workload objects the experiments create, as Kubernetes objects in Python data."""

from __future__ import annotations

from typing import Any

from ..cluster.node import identity as real_node
from ..cluster.settings import CUSTOM_LIFECYCLE, KD_MANAGED_LABEL, KWOK_NODE_LABELS, KWOK_TOLERATION, LIFECYCLE_LABEL

WORKLOAD_LABEL = "kdlib/workload"  # every object kdlib creates carries it, for clean-up
WORKLOAD_SELECTOR = f"{WORKLOAD_LABEL}=true"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # never pulled on kwok nodes


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {WORKLOAD_LABEL: "true"}}}


def deployment(
    name: str,
    namespace: str,
    *,
    replicas: int = 0,
    simulated_sandbox: bool = True,
    kd: bool = False,
    on_kwok: bool = True,
    on_real_nodes: bool = False,
) -> dict[str, Any]:
    """A Deployment of pause pods.

    ``simulated_sandbox`` labels the pods with the custom lifecycle (Ready 200 ms after
    binding: the "+" baselines); ``kd`` marks the objects as managed by Kd's
    controllers; ``on_kwok`` pins the pods to the kwok nodes and tolerates their taint;
    ``on_real_nodes`` pins them to the real nodes instead, spread evenly over them, with
    the locally imported image.
    """
    labels = {WORKLOAD_LABEL: "true", "app": name}
    if kd:
        labels[KD_MANAGED_LABEL] = "true"
    pod_labels = dict(labels)
    if simulated_sandbox:
        pod_labels[LIFECYCLE_LABEL] = CUSTOM_LIFECYCLE
    pod_spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": PAUSE_IMAGE}],
        "terminationGracePeriodSeconds": 0,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if on_real_nodes:
        pod_spec["containers"][0].update(image=real_node.WORKLOAD_IMAGE, imagePullPolicy="Never")
        pod_spec["nodeSelector"] = dict(real_node.LABEL)
        pod_spec["tolerations"] = [dict(real_node.TOLERATION)]
        # N/nodes per node, as the original spreads its pods over its workers.
        pod_spec["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": name}}}]
    elif on_kwok:
        pod_spec["nodeSelector"] = dict(KWOK_NODE_LABELS)
        pod_spec["tolerations"] = [dict(KWOK_TOLERATION)]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }
