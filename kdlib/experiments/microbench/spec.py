"""The microbenchmarks as data: the benches of Figures 9–11 and a suite's parameters.

Everything a figure needs to be drawn and described — its number, what is swept, the
axis title, the scales, which systems the paper ran — lives once, in :data:`BENCHES`.
Validation reports every problem at once, before anything is provisioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ... import store
from ...cluster import registry
from ...errors import ConfigError
from ...machine import QuietPolicy
from ...baselines import BASELINES

PODS_PER_NODE = 5
MAX_PODS = 20_000  # 2 cores: ~20 pods/s under the controller manager's client limit; 20,000 ≈ 17 min
MAX_NODES = 5_000  # kwok's own benchmark size; see kdlib.cluster.local.MAX_NODES
MAX_RUN_ID = store.MAX_RUN_ID


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
    """One microbenchmark: what is swept, what a scale means, and how its figure is labelled."""

    name: str
    figure: int
    title: str  # the figure's headline
    swept: str  # the x axis: what one scale counts
    symbol: str  # N, K or M
    default_scales: tuple[int, ...]
    artifact_scales: tuple[int, ...]
    baselines: tuple[str, ...]  # the systems this figure compares (the paper's, where they can run)

    def workload(self, scale: int) -> Workload:
        if self.name == "scale-pods":
            return Workload(deployments=1, replicas=scale, nodes=None)
        if self.name == "scale-funcs":
            return Workload(deployments=scale, replicas=1, nodes=None)
        return Workload(deployments=1, replicas=PODS_PER_NODE * scale, nodes=scale)

    @property
    def glue_prefix(self) -> str:
        """The names under which the notebook glues this figure's outputs (the book reads them)."""
        return f"fig{self.figure}"


BENCHES = {
    b.name: b
    for b in (
        Bench("scale-pods", 9, "more pods in one Deployment", "pods in one Deployment (N)", "N",
              (50, 100, 200), (100, 200), ("k8s", "k8s+", "k8s+u", "kd", "kd+")),
        Bench("scale-funcs", 10, "more Deployments of one pod", "Deployments of one pod each (K)", "K",
              (25, 50, 100), (100, 200), ("k8s", "k8s+", "k8s+u", "kd", "kd+")),
        # The paper ran Figure 11 for Kd only (kd+); k8s+ is the vanilla comparison we can add.
        # k8s+u (k8s+ unthrottled, kdlib's control experiment) is in every figure beside k8s+.
        Bench("scale-nodes", 11, "more nodes", f"kwok nodes (M), {PODS_PER_NODE} pods per node", "M",
              (100, 500), (500, 2000), ("k8s+", "k8s+u", "kd+")),
    )
}


def _as_tuple(value: Any) -> tuple:
    """One value where a list is expected counts as a list of one (``-p benches scale-pods``)."""
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        return (value,)
    return tuple(value)


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
    run_timeout_s: float | None = None  # None: timeout_for(workload)
    inventory: Path | None = None  # ssh backend: the hosts (its kubelet workers are the real nodes)
    # Before each run, wait (at most quiet_max_wait_s) until the CPUs were idle ≥ quiet_idle_pct %
    # over a window of quiet_window_s (kdlib.machine); a run that gets no quiet machine is marked busy.
    quiet_idle_pct: float = 80.0
    quiet_window_s: float = 5.0
    quiet_max_wait_s: float = 300.0

    @classmethod
    def from_notebook(cls, *, run_id: Any, backend: Any = "local", benches: Any = tuple(BENCHES),
                      scale_pods: Any = None, scale_funcs: Any = None, scale_nodes: Any = None,
                      artifact_scales: bool = False, baselines: Any = tuple(BASELINES), nodes: Any = 20,
                      repeats: Any = 1, kd_bin_dir: Any = None, real_nodes: Any = 0, settle_s: Any = 2.0,
                      run_timeout_s: Any = None, inventory: Any = None, quiet_idle_pct: Any = 80.0,
                      quiet_window_s: Any = 5.0, quiet_max_wait_s: Any = 300.0) -> "SuiteParams":
        """The notebook's (and CLI's) parameters, checked. ``artifact_scales`` replaces every
        bench's scales by the original artifact's; giving both is refused."""
        given = {"scale-pods": scale_pods, "scale-funcs": scale_funcs, "scale-nodes": scale_nodes}
        if artifact_scales:
            if any(v is not None for v in given.values()):
                raise ConfigError("invalid parameters:\n  scales: give either artifact_scales or per-bench "
                                  "scales, not both")
            scales = {name: bench.artifact_scales for name, bench in BENCHES.items()}
        else:
            scales = {name: _as_tuple(v) for name, v in given.items() if v is not None}
        return cls(run_id=run_id, backend=backend, benches=_as_tuple(benches), scales=scales,
                   baselines=_as_tuple(baselines), nodes=nodes, repeats=repeats,
                   kd_bin_dir=Path(kd_bin_dir).expanduser() if kd_bin_dir else None,
                   real_nodes=real_nodes, settle_s=settle_s, run_timeout_s=run_timeout_s,
                   inventory=Path(inventory).expanduser() if isinstance(inventory, (str, Path)) and str(inventory)
                   else inventory or None, quiet_idle_pct=quiet_idle_pct, quiet_window_s=quiet_window_s,
                   quiet_max_wait_s=quiet_max_wait_s).validate()  # anything else is named by validate()

    def timeout_for(self, workload: Workload) -> float:
        """``run_timeout_s``, else 60 s plus 0.1 s per pod: twice what the controller manager's
        20 writes/s need, so Figure 11 at M = 2000 (10,000 pods, ~500 s) fits."""
        if self.run_timeout_s is not None:
            return float(self.run_timeout_s)
        return 60.0 + 0.1 * workload.pods

    @property
    def quiet(self) -> QuietPolicy:
        return QuietPolicy(self.quiet_idle_pct, self.quiet_window_s, self.quiet_max_wait_s)

    def scales_for(self, bench: str) -> tuple[int, ...]:
        return tuple(self.scales.get(bench) or BENCHES[bench].default_scales)

    def problems(self) -> list[str]:
        found = []
        if problem := store.run_id_problem(self.run_id):
            found.append(problem)
        found += registry.backend_problems(self.backend, self.inventory)
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
                elif bench == "scale-nodes" and scale > MAX_NODES:
                    found.append(f"scales[{bench}]: {scale} nodes; at most {MAX_NODES} (kwok's own benchmark size)")
                elif BENCHES[bench].workload(scale).pods > MAX_PODS:
                    found.append(f"scales[{bench}]: {scale} means {BENCHES[bench].workload(scale).pods} pods; "
                                 f"at most {MAX_PODS} (~20 pods/s under the controller manager's client limit)")
        for baseline in self.baselines:
            if baseline not in BASELINES:
                found.append(f"baselines: unknown baseline {baseline!r} (known: {', '.join(BASELINES)})")
        if not self.baselines:
            found.append("baselines: empty; name at least one of " + ", ".join(BASELINES))
        for name, value, limit in (("nodes", self.nodes, MAX_NODES), ("repeats", self.repeats, 100)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                found.append(f"{name}: {value!r} is not a positive integer")
            elif value > limit:
                found.append(f"{name}: {value} is more than {limit}")
        if not isinstance(self.settle_s, (int, float)) or self.settle_s < 0:
            found.append(f"settle_s: {self.settle_s!r} must be a number >= 0")
        if self.run_timeout_s is not None and (not isinstance(self.run_timeout_s, (int, float))
                                               or self.run_timeout_s <= 0):
            found.append(f"run_timeout_s: {self.run_timeout_s!r} must be a number > 0 (or None: automatic)")
        found += _real_node_problems(self)
        found += self.quiet.problems()
        if self.kd_bin_dir is not None and not Path(self.kd_bin_dir).expanduser().is_dir():
            found.append(f"kd_bin_dir: {self.kd_bin_dir} is not a directory")
        return found

    def validate(self) -> "SuiteParams":
        found = self.problems()
        if found:
            raise ConfigError("invalid parameters:\n  " + "\n  ".join(found))
        return self


def real_node_count(params: SuiteParams) -> int:
    """The real nodes k8s and kd run on: ``real_nodes`` here, the kubelet workers over SSH."""
    if params.backend == "ssh" and params.inventory is not None:
        from ...cluster.ssh import inventory

        return len(inventory.load(params.inventory).kubelet_workers)
    return params.real_nodes


def _real_node_problems(params: SuiteParams) -> list[str]:
    """Real pods must fit the real nodes' kubelets (110 pods each); Figure 11 stays on kwok."""
    from ...cluster.local.realnode import MAX_PODS

    if not isinstance(params.real_nodes, int) or isinstance(params.real_nodes, bool) or params.real_nodes < 0:
        return [f"real_nodes: {params.real_nodes!r} is not an integer >= 0"]
    if params.real_nodes > 8:
        return [f"real_nodes: {params.real_nodes}; at most 8 on one machine (each is a kubelet and a containerd)"]
    try:
        count = real_node_count(params)
    except Exception:  # noqa: BLE001 - an invalid inventory is reported by _inventory_problems
        return []
    if not count or all(BASELINES[b].simulated for b in params.baselines if b in BASELINES):
        return []
    found = []
    for bench in ("scale-pods", "scale-funcs"):
        if bench in params.benches:
            for scale in params.scales_for(bench):
                if isinstance(scale, int) and -(-scale // count) > MAX_PODS:
                    found.append(f"scales[{bench}]: {scale} real pods do not fit {count} real nodes "
                                 f"of {MAX_PODS} pods each; add real nodes or lower the scale")
    return found


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


def with_fetched_kd(params: SuiteParams) -> tuple[SuiteParams, str | None]:
    """``params`` with ``kd_bin_dir`` set to the binaries ``kd fetch`` stored in its default
    place, when Kd is wanted, no directory was given, and such binaries are there; and a
    sentence saying so (None when nothing changed)."""
    if params.kd_bin_dir is not None or not any(BASELINES[b].kd for b in params.baselines if b in BASELINES):
        return params, None
    from ...cluster import kd_images

    found = kd_images.stored()
    if found is None:
        return params, None
    digests = ", ".join(f"{name}@{b.manifest_digest}" for name, b in found.binaries.items())
    note = (f"kd_bin_dir not given: using the Kubedirect binaries that `kd fetch` stored in {found.directory} "
            f"(from {found.binaries['kube-apiserver'].image.rsplit(':', 1)[0].rsplit('/', 1)[0]}, {digests})")
    return replace(params, kd_bin_dir=found.directory), note
