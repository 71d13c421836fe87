"""The systems under test ("baselines"): which control plane, and whether the sandbox is simulated.

Every experiment runs some of these; a cluster backend says itself which it cannot run
(:meth:`kdlib.cluster.base.Cluster.why_not`).
"""

from __future__ import annotations

from dataclasses import dataclass

KD_WITHOUT_BINARIES = "needs Kd binaries (kd_bin_dir, or `python -m kdlib kd fetch`); the Kubedirect source is not public"


@dataclass(frozen=True)
class Baseline:
    name: str
    kd: bool  # Kubedirect's control plane (objects carry kubedirect/managed: "true")
    simulated: bool  # pods Ready 200 ms after binding, no container ("+")


BASELINES = {
    b.name: b
    for b in (
        Baseline("k8s", kd=False, simulated=False),
        Baseline("k8s+", kd=False, simulated=True),
        Baseline("kd", kd=True, simulated=False),
        Baseline("kd+", kd=True, simulated=True),
    )
}
