"""How the cluster tells a real node from a kwok node, and which image its pods run.

Every real node registers with :data:`LABEL` and the taint :data:`TAINT`, so that only pods
that tolerate it (:data:`TOLERATION`, :func:`kdlib.k8s.objects.deployment` with
``on_real_nodes``) land there; those pods run :data:`WORKLOAD_IMAGE`, imported into every
real node's containerd and never pulled (:mod:`.images`).
"""

from __future__ import annotations

LABEL = {"kdlib/real-node": "true"}
SELECTOR = "kdlib/real-node=true"  # LABEL as a label selector
TAINT = {"key": "kdlib/real-node", "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": "kdlib/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}

SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"  # containerd's sandbox_image; never pulled
WORKLOAD_IMAGE = "kdlib.local/sleeper:v1"  # what real pods run (imagePullPolicy: Never)
