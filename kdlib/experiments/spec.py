"""Experiments as data: the systems under test, the benches of Figures 9–11, a suite's parameters.

Validation reports every problem at once, before anything is provisioned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

BACKENDS = ("local", "ssh")


@dataclass(frozen=True)
class Baseline:
    """A system under test: which control plane, and whether the sandbox is simulated."""

    name: str
    kd: bool  # Kubedirect's control plane (objects carry kubedirect/managed: "true")
    simulated: bool  # pods Ready 200 ms after binding, no container ("+")
    description: str


BASELINES = {
    b.name: b
    for b in (
        Baseline("k8s", kd=False, simulated=False, description="vanilla Kubernetes, real kubelet and containers"),
        Baseline("k8s+", kd=False, simulated=True, description="vanilla Kubernetes, simulated sandbox"),
        Baseline("kd", kd=True, simulated=False, description="Kubedirect, real kubelet and containers"),
        Baseline("kd+", kd=True, simulated=True, description="Kubedirect, simulated sandbox"),
    )
}


@dataclass(frozen=True)
class Workload:
    """What one run creates: ``deployments`` Deployments scaled to ``replicas`` each, on ``nodes`` nodes."""

    deployments: int
    replicas: int
    nodes: int | None  # None: the suite's node count

    @property
    def pods(self) -> int:
        return self.deployments * self.replicas


@dataclass(frozen=True)
class Bench:
    """One microbenchmark: what is swept and what a scale means."""

    name: str
    figure: int
    swept: str
    default_scales: tuple[int, ...]
    artifact_scales: tuple[int, ...]

    def workload(self, scale: int) -> Workload:
        if self.name == "scale-pods":
            return Workload(deployments=1, replicas=scale, nodes=None)
        if self.name == "scale-funcs":
            return Workload(deployments=scale, replicas=1, nodes=None)
        if self.name == "scale-nodes":
            return Workload(deployments=1, replicas=PODS_PER_NODE * scale, nodes=scale)
        raise ConfigError(f"unknown bench {self.name!r}")


PODS_PER_NODE = 5
BENCHES = {
    b.name: b
    for b in (
        Bench("scale-pods", 9, "pods in one Deployment (N)", (50, 100, 200), (100, 200)),
        Bench("scale-funcs", 10, "Deployments of one pod each (K)", (25, 50, 100), (100, 200)),
        Bench("scale-nodes", 11, "kwok nodes, 5 pods per node (M)", (100, 500), (500, 2000)),
    )
}

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SuiteParams:
    """Everything a microbenchmark suite needs; :meth:`validate` checks it all."""

    run_id: str | None
    backend: str = "local"
    benches: tuple[str, ...] = tuple(BENCHES)
    scales: dict[str, tuple[int, ...]] = field(default_factory=dict)  # bench -> scales; default per bench
    baselines: tuple[str, ...] = tuple(BASELINES)
    nodes: int = 20
    repeats: int = 1
    kd_bin_dir: Path | None = None
    real_nodes: int = 0  # local backend: real kubelets for k8s and kd (0: those are not measured)
    settle_s: float = 2.0
    run_timeout_s: float = 600.0

    def scales_for(self, bench: str) -> tuple[int, ...]:
        return tuple(self.scales.get(bench) or BENCHES[bench].default_scales)

    def problems(self) -> list[str]:
        found = []
        if not self.run_id:
            found.append("run_id: required (e.g. -p run_id my-first-run); it names results/<bench>/<run_id>/")
        elif not isinstance(self.run_id, str) or not _RUN_ID.match(self.run_id):
            found.append(f"run_id: {self.run_id!r} must be letters, digits, '.', '_' or '-' "
                         "(no '/' or spaces), starting with a letter or digit")
        if self.backend not in BACKENDS:
            found.append(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        elif self.backend == "ssh":
            found.append("backend: 'ssh' is not part of this version of kdlib yet; use 'local'")
        for bench in self.benches:
            if bench not in BENCHES:
                found.append(f"benches: unknown bench {bench!r} (known: {', '.join(BENCHES)})")
        if not self.benches:
            found.append("benches: empty; name at least one of " + ", ".join(BENCHES))
        for bench, scales in self.scales.items():
            if bench not in BENCHES:
                found.append(f"scales: unknown bench {bench!r}")
                continue
            for scale in scales or ():
                if not isinstance(scale, int) or isinstance(scale, bool) or scale <= 0:
                    found.append(f"scales[{bench}]: {scale!r} is not a positive integer")
        for baseline in self.baselines:
            if baseline not in BASELINES:
                found.append(f"baselines: unknown baseline {baseline!r} (known: {', '.join(BASELINES)})")
        if not self.baselines:
            found.append("baselines: empty; name at least one of " + ", ".join(BASELINES))
        for name, value in (("nodes", self.nodes), ("repeats", self.repeats)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                found.append(f"{name}: {value!r} is not a positive integer")
        if not isinstance(self.settle_s, (int, float)) or self.settle_s < 0:
            found.append(f"settle_s: {self.settle_s!r} must be a number >= 0")
        if not isinstance(self.run_timeout_s, (int, float)) or self.run_timeout_s <= 0:
            found.append(f"run_timeout_s: {self.run_timeout_s!r} must be a number > 0")
        found += _real_node_problems(self)
        if self.kd_bin_dir is not None and not Path(self.kd_bin_dir).expanduser().is_dir():
            found.append(f"kd_bin_dir: {self.kd_bin_dir} is not a directory")
        return found

    def validate(self) -> "SuiteParams":
        found = self.problems()
        if found:
            raise ConfigError("invalid parameters:\n  " + "\n  ".join(found))
        return self


def _real_node_problems(params: SuiteParams) -> list[str]:
    """Real pods must fit the real nodes' kubelets (110 pods each); Figure 11 stays on kwok."""
    from ..cluster.local.realnode import MAX_PODS

    if not isinstance(params.real_nodes, int) or isinstance(params.real_nodes, bool) or params.real_nodes < 0:
        return [f"real_nodes: {params.real_nodes!r} is not an integer >= 0"]
    if not params.real_nodes or all(BASELINES[b].simulated for b in params.baselines if b in BASELINES):
        return []
    found = []
    for bench in ("scale-pods", "scale-funcs"):
        if bench in params.benches:
            for scale in params.scales_for(bench):
                if isinstance(scale, int) and -(-scale // params.real_nodes) > MAX_PODS:
                    found.append(f"scales[{bench}]: {scale} real pods do not fit {params.real_nodes} real nodes "
                                 f"of {MAX_PODS} pods each; raise real_nodes or lower the scale")
    return found


def why_not_real(params: SuiteParams) -> str | None:
    """Why pods in real containers cannot run with these parameters, or None when they can."""
    if params.backend != "local":
        return None
    if not params.real_nodes:
        return "needs real kubelets and containers: set real_nodes >= 1 (local backend) or use a real cluster"
    from ..cluster.local.hostnet import why_not_real_nodes

    reason = why_not_real_nodes()
    return f"this machine cannot run real nodes: {reason}" if reason else None


def why_not_measured(baseline: Baseline, params: SuiteParams) -> str | None:
    """Why ``baseline`` cannot run with these parameters, or None when it can."""
    if not baseline.simulated and (reason := why_not_real(params)):
        return reason
    if baseline.kd and params.kd_bin_dir is None:
        return "needs Kd binaries (kd_bin_dir); the Kubedirect source is not public"
    return None


@dataclass(frozen=True)
class RunItem:
    """One cell of the matrix: (bench, baseline, scale, repeat)."""

    bench: str
    baseline: str
    scale: int
    repeat: int

    @property
    def label(self) -> str:
        return f"{self.bench} {self.baseline} {self.scale}" + (f" r{self.repeat}" if self.repeat else "")


def plan(params: SuiteParams) -> tuple[list[RunItem], dict[str, str]]:
    """The runs to do, in order (scale-nodes last: it resizes the cluster), and the
    baselines that cannot run with the reason."""
    skipped = {}
    items = []
    benches = sorted(params.benches, key=lambda b: (b == "scale-nodes", list(BENCHES).index(b)))
    for name in params.baselines:
        reason = why_not_measured(BASELINES[name], params)
        if reason:
            skipped[name] = reason
            continue
        for bench in benches:
            if bench == "scale-nodes" and not BASELINES[name].simulated:
                continue  # Figure 11 measures kwok nodes only: 5 pods on each of up to 2,000 nodes
            for scale in params.scales_for(bench):
                for repeat in range(params.repeats):
                    items.append(RunItem(bench, name, scale, repeat))
    return items, skipped
