"""The microbenchmarks as data: the benches of Figures 9–11 and a suite's parameters.

Everything a figure needs to be drawn and described — its number, what is swept, the
axis title, the scales, which systems the paper ran — lives once, in :data:`BENCHES`; a
suite's parameters once, in :class:`SuiteParams` (the notebook's parameters cell and the
CLI's options are made from it). Validation reports every problem at once, before anything
is provisioned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationInfo, field_validator, model_validator

from ...machine import QuietPolicy
from ...baselines import BASELINES
from ...params import Params, RunId, check, directory, flag, names, number, one_of, one_or_more, param, whole
from ..backend import backend_problem, inventory_path

PODS_PER_NODE = 5
MAX_PODS = 20_000  # 2 cores: ~20 pods/s under the controller manager's client limit; 20,000 ≈ 17 min
MAX_NODES = 5_000  # kwok's own benchmark size; see kdlib.cluster.local.MAX_NODES


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


def _scale(bench: str) -> Any:
    """A scale of ``bench``: a positive integer whose workload this machine can hold."""
    def why_not(scale: Any) -> str | None:
        if not isinstance(scale, int) or isinstance(scale, bool) or scale <= 0:
            return f"{scale!r} is not a positive integer"
        if bench == "scale-nodes" and scale > MAX_NODES:
            return f"{scale} nodes; at most {MAX_NODES} (kwok's own benchmark size)"
        pods = BENCHES[bench].workload(scale).pods
        if pods > MAX_PODS:
            return (f"{scale} means {pods} pods; at most {MAX_PODS} (~20 pods/s under the controller manager's "
                    "client limit)")
        return None
    return check(why_not)


def _scales_doc(bench: str) -> str:
    spec = BENCHES[bench]
    return (f"Figure {spec.figure}: {spec.swept} (default {', '.join(map(str, spec.default_scales))})")


def _artifact_scales_doc() -> str:
    return ("True: the original artifact's scales (" + "; ".join(
        f"{b.symbol}: {', '.join(map(str, b.artifact_scales))}" for b in BENCHES.values()) + "); not with the three above")


def _scales(bench: str) -> Any:
    """The type of a bench's scales parameter: None (its default scales), or its scales (one counts as a list)."""
    return Annotated[tuple[Annotated[int, _scale(bench)], ...] | None, BeforeValidator(one_or_more)]


ScalePods, ScaleFuncs, ScaleNodes = _scales("scale-pods"), _scales("scale-funcs"), _scales("scale-nodes")


class SuiteParams(Params):
    """Everything a microbenchmark suite needs: the notebook's parameters and ``kdlib run``'s
    options, declared once (:mod:`kdlib.params`); an instance is always valid."""

    run_id: RunId = param(None, "required: names results/<bench>/<run_id>/ (letters, digits, '.', '_', '-')")
    backend: Annotated[str, check(backend_problem)] = param(
        "local", '"local": a real control plane on this machine with kwok fake nodes; "ssh": on the hosts of '
        "`inventory`")
    benches: Annotated[tuple[Annotated[str, one_of(BENCHES, "bench")], ...], names(BENCHES, one_is_a_list=True)] = \
        param(tuple(BENCHES), ", ".join(f"Figure {b.figure}: {b.name}" for b in BENCHES.values()), cli=("--bench",))
    scale_pods: ScalePods = param(None, _scales_doc("scale-pods"))
    scale_funcs: ScaleFuncs = param(None, _scales_doc("scale-funcs"))
    scale_nodes: ScaleNodes = param(None, _scales_doc("scale-nodes"))
    artifact_scales: Annotated[bool, check(flag)] = param(False, _artifact_scales_doc())
    baselines: Annotated[tuple[Annotated[str, one_of(BASELINES, "baseline")], ...],
                         names(BASELINES, one_is_a_list=True)] = param(
        ("k8s", "k8s+", "k8s+u", "kd", "kd+"), "systems under test (k8s+u: k8s+ unthrottled, a control experiment); those that cannot run "
        "here are listed as not measured", cli=("--baseline",))
    nodes: Annotated[int, whole(1, MAX_NODES, beyond=" (kwok's own benchmark size)")] = param(
        20, "kwok nodes for Figures 9 and 10")
    repeats: Annotated[int, whole(1, 100)] = param(
        1, "runs per (bench, baseline, scale); figures show the median and the range")
    kd_bin_dir: Annotated[Path | None, BeforeValidator(directory)] = param(
        None, "Kubedirect's binaries (some of the same file names; ours fill in the rest); enables kd+; unset: "
        "those `python -m kdlib kd fetch` stored, if any")
    real_nodes: Annotated[int, whole(0, 8, beyond=" on one machine (each is a kubelet and a containerd)")] = param(
        2, "local backend: real kubelets and containers for k8s and kd (0 turns them off; not measured, with the "
        "reason, where this machine cannot run them)")
    settle_s: Annotated[float, number(0)] = param(
        2.0, "seconds to wait once the cluster is quiet, between runs", cli=("--settle",))
    quiet_idle_pct: Annotated[float, number(0, high=100)] = param(
        80.0, "before each run, wait until the CPUs were idle at least this % over quiet_window_s")
    quiet_window_s: Annotated[float, number(0, above=True)] = param(
        5.0, "the window over which idleness is judged (/proc/stat; not the slow 1-minute load average)",
        cli=("--quiet-window",))
    quiet_max_wait_s: Annotated[float, number(0)] = param(
        300.0, "wait at most this long; a run measured without a quiet machine is marked busy",
        cli=("--quiet-max-wait",))
    run_timeout_s: Annotated[float | None, number(0, above=True, none="automatic")] = param(
        None, "a run whose pods are not all Ready by then is recorded as failed (None: 60 s + 0.1 s per pod)",
        cli=("--run-timeout",))
    inventory: Path | None = param(
        None, 'backend "ssh": the YAML file naming the hosts (README: "A real cluster over SSH"); its kubelet '
        "workers are the real nodes")

    @field_validator("artifact_scales")
    @classmethod
    def _not_both(cls, artifact_scales: bool, info: ValidationInfo) -> bool:
        if artifact_scales and any(info.data.get(f"scale_{b}") is not None for b in ("pods", "funcs", "nodes")):
            raise ValueError("give either artifact_scales or per-bench scales (scale_pods, scale_funcs, "
                             "scale_nodes), not both")
        return artifact_scales

    @field_validator("inventory", mode="before")
    @classmethod
    def _inventory(cls, inventory: Any, info: ValidationInfo) -> Any:
        return inventory_path(inventory, info)

    @model_validator(mode="after")
    def _real_pods_fit(self) -> "SuiteParams":
        found = _real_node_problems(self)
        if found:
            raise ValueError("\n".join(found))
        return self

    @property
    def scales(self) -> dict[str, tuple[int, ...]]:
        """bench → its scales, for the benches given scales (the others take their default)."""
        if self.artifact_scales:
            return {name: bench.artifact_scales for name, bench in BENCHES.items()}
        given = {"scale-pods": self.scale_pods, "scale-funcs": self.scale_funcs, "scale-nodes": self.scale_nodes}
        return {name: scales for name, scales in given.items() if scales is not None}

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


def real_node_count(params: SuiteParams) -> int:
    """The real nodes k8s and kd run on: ``real_nodes`` here, the kubelet workers over SSH."""
    if params.backend == "ssh" and params.inventory is not None:
        from ...cluster.ssh import inventory

        return len(inventory.load(params.inventory).kubelet_workers)
    return params.real_nodes


def _real_node_problems(params: SuiteParams) -> list[str]:
    """Real pods must fit the real nodes' kubelets (110 pods each); Figure 11 stays on kwok."""
    from ...cluster.local.realnode import MAX_PODS

    count = real_node_count(params)
    if not count or all(BASELINES[b].simulated for b in params.baselines):
        return []
    found = []
    for bench, field in (("scale-pods", "scale_pods"), ("scale-funcs", "scale_funcs")):
        if bench in params.benches:
            for scale in params.scales_for(bench):
                if -(-scale // count) > MAX_PODS:
                    found.append(f"{field}: {scale} real pods do not fit {count} real nodes "
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
    return params.replaced(kd_bin_dir=found.directory), note
