"""The systems under test ("baselines"): which control plane, and whether the sandbox is simulated.

Every experiment runs some of these; a cluster backend says itself which it cannot run
(:meth:`kdlib.cluster.base.Cluster.why_not`). Plain data below both the experiments and
the cluster backends, so that neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

KD_WITHOUT_BINARIES = "needs Kd binaries (kd_bin_dir, or `python -m kdlib kd fetch`); the Kubedirect source is not public"


@dataclass(frozen=True)
class Baseline:
    """``name`` keys the system's files (``e2e.<name>.<scale>.log``), so it holds no '.';
    ``label`` is how pages name it."""

    name: str
    kd: bool  # Kubedirect's control plane (objects carry kubedirect/managed: "true")
    simulated: bool  # pods Ready 200 ms after binding, no container ("+")
    unthrottled: bool = False  # the controller manager's and scheduler's client limits raised (kdlib's control)
    label: str = ""

    @property
    def control_plane(self) -> str:
        """Which control plane it needs; systems with the same one share a cluster."""
        return "kd" if self.kd else "vanilla-unthrottled" if self.unthrottled else "vanilla"

    @property
    def display(self) -> str:
        return self.label or self.name


#: The control planes a suite may start, in the order it starts them.
CONTROL_PLANES = ("vanilla", "vanilla-unthrottled", "kd")
UNTHROTTLED = "k8s+u"

BASELINES = {
    b.name: b
    for b in (
        Baseline("k8s", kd=False, simulated=False),
        Baseline("k8s+", kd=False, simulated=True),
        Baseline("kd", kd=True, simulated=False),
        Baseline("kd+", kd=True, simulated=True),
        # Not the original's: k8s+ with the client limits raised (kdlib.cluster.settings.client_limits),
        # the control experiment that shows how much of k8s+'s time the limit accounts for.
        # Its key has no space or parenthesis, so that it names files; the original's
        # plot.py reads only its own four names and passes these files by.
        Baseline(UNTHROTTLED, kd=False, simulated=True, unthrottled=True, label="k8s+ (unthrottled)"),
    )
}


def display(name: str) -> str:
    """How pages name system ``name`` (its label; an unknown name as it is)."""
    return BASELINES[name].display if name in BASELINES else name
