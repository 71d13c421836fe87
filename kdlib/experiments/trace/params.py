"""The trace replay's systems and parameters, validated before anything is provisioned."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ... import store
from ...errors import ConfigError
from ...machine import QuietPolicy
from .data import SUBSET_RULES
from .kpa import KPAConfig


@dataclass(frozen=True)
class System:
    """One line of Figures 12–13."""

    name: str
    figure: int
    kd: bool | None  # Kubedirect's control plane; None: not a kdlib run (reference data)
    local: bool  # can run on this machine's local cluster
    dispatch_timeout_s: float  # the original's -timeout for it
    description: str
    #: Its autoscaler: "dirigent" (the original's autoscaler.dirigent.yaml, with this run's
    #: target_concurrency), "knative" (autoscaler.knative.yaml as shipped: target unset, so the
    #: code's 100, no immediate scale-from-zero), "" (no KPA of ours).
    kpa: str = ""


#: Dr/K8s+ as the original's artifact ran it: the configuration behind the paper's Figure 13 k8s+ curve.
AS_SHIPPED = "Dr/K8s+ (as shipped)"
SYSTEMS = {s.name: s for s in (
    System("Kn/K8s", 12, False, False, 300.0, "Knative on vanilla Kubernetes"),
    System("Kn/Kd", 12, True, False, 300.0, "Knative on Kubedirect"),
    System("Dirigent", 13, None, False, 0.0, "Dirigent (reference data from its artifact's CSV)"),
    System("Dr/K8s+", 13, False, True, 300.0, "Dirigent-style gateway and KPA on vanilla Kubernetes, simulated "
           "sandbox; the same autoscaler configuration as Dr/Kd+ (target 1, scale from zero at once)", "dirigent"),
    System(AS_SHIPPED, 13, False, True, 300.0, "Dr/K8s+ with the autoscaler configuration the original's k8s+ "
           "ran (its Knative config: target unset, so 100; scale from zero on the next tick): the paper's k8s+ "
           "curve", "knative"),
    System("Dr/Kd+", 13, True, True, 30.0, "Dirigent-style gateway and KPA on Kubedirect, simulated sandbox",
           "dirigent"),
)}
KNATIVE_REASON = ("kdlib has no Knative path yet, on any backend: it does not install Knative's data plane "
                  "(activator, queue-proxy sidecars), which needs real kubelets running real containers and a "
                  "Knative install that kdlib does not make")
#: How a Kubedirect system's reason for not being measured starts when its binaries are missing.
KD_REASON_START = "needs Kubedirect's binaries"
#: File names of a system's results: ``trace.<key>.log`` (no "/" in file names).
FILE_KEYS = {"Kn/K8s": "kn-k8s", "Kn/Kd": "kn-kd", "Dirigent": "dirigent", "Dr/K8s+": "dr-k8s+",
             AS_SHIPPED: "dr-k8s+-as-shipped", "Dr/Kd+": "dr-kd+"}
#: Systems shown from the original's reference CSVs when the run names one: system → parameter.
REFERENCE_DATA = {"Kn/K8s": "kn_k8s_csv", "Dirigent": "dirigent_csv"}
MAX_NODES = 5_000  # kwok's own benchmark size; see kdlib.cluster.local.MAX_NODES
#: The run id of the repository's reference runs (results/*/reference/): always at the original's pace.
REFERENCE_RUN_ID = "reference"


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value: Any, low: float, strict: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > low if strict else value >= low




@dataclass(frozen=True)
class TraceParams:
    """Everything a trace run depends on (the notebook's parameters)."""

    run_id: str
    trace: Path | None = None  # None: the shipped azure_500
    functions: int | None = None  # None: every function of the trace
    subset: str = "first"  # which `functions`: the first of the file (as the original) or "random" (with seed)
    minutes: int = 30
    warmup_minutes: int = 10
    systems: tuple[str, ...] = ("Kn/K8s", "Kn/Kd", "Dirigent", "Dr/K8s+", AS_SHIPPED, "Dr/Kd+")
    target_concurrency: float = 1.0  # the Dirigent configuration's (Dr/K8s+, Dr/Kd+); AS_SHIPPED keeps its 100
    kd_bin_dir: Path | None = None
    dirigent_csv: Path | None = None
    kn_k8s_csv: Path | None = None  # the original's Kn/K8s result (its k8s.500.csv), from the paper's cluster
    seed: int = 42  # the loader's generators (and a random subset's)
    original_extra: bool = True  # the loader's n+1 invocations per active minute
    timeouts: dict = field(default_factory=dict)  # system → dispatch timeout (s), overriding the original's
    nodes: int = 20
    drain_s: float = 15.0  # after the last send, as the original's client waits before it stops
    backend: str = "local"  # or "ssh": the cluster on the hosts of ``inventory``
    inventory: Path | None = None
    # Before each replay, wait (at most quiet_max_wait_s) until the CPUs were idle ≥ quiet_idle_pct %
    # over quiet_window_s (kdlib.machine); a replay that gets no quiet machine is marked busy.
    quiet_idle_pct: float = 80.0
    quiet_window_s: float = 5.0
    quiet_max_wait_s: float = 300.0
    # Trace seconds per second (kdlib.experiments.trace.replay): > 1 replays faster than the
    # original, for the tests; the cluster's own latencies do not shrink. A reference run is made at 1.
    time_scale: float = 1.0

    @property
    def quiet(self) -> QuietPolicy:
        return QuietPolicy(self.quiet_idle_pct, self.quiet_window_s, self.quiet_max_wait_s)

    def __post_init__(self) -> None:
        if isinstance(self.systems, list):  # the notebook's list; a string stays one and is refused
            object.__setattr__(self, "systems", tuple(self.systems))

    def problems(self) -> list[str]:
        """Every problem, one line each naming the parameter, before anything is provisioned."""
        found = []
        if problem := store.run_id_problem(self.run_id):
            found.append(problem)
        if isinstance(self.systems, str) or not isinstance(self.systems, (tuple, list)):
            found.append(f"systems: give a list, e.g. [{self.systems!r}], not {type(self.systems).__name__} "
                         f"{self.systems!r}")
        else:
            unknown = [s for s in self.systems if s not in SYSTEMS]
            if unknown:
                found.append(f"systems: unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
            if not self.systems:
                found.append("systems: empty; name at least one of " + ", ".join(SYSTEMS))
        if self.trace is not None and Path(self.trace).exists() and not Path(self.trace).is_dir():
            found.append(f"trace: {self.trace} is a file; give the directory holding invocations.csv and "
                         "durations.csv (Azure 2019 format)")
        elif self.trace is not None and not Path(self.trace).exists():
            found.append(f"trace: directory {self.trace} does not exist")
        if self.functions is not None and not _whole(self.functions, 1):
            found.append(f"functions: {self.functions!r} must be a whole number ≥ 1 (or None: all)")
        if self.subset not in SUBSET_RULES:
            found.append(f"subset must be one of {SUBSET_RULES}, got {self.subset!r}")
        if not _whole(self.minutes, 1):
            found.append(f"minutes: {self.minutes!r} must be a whole number ≥ 1")
        if not _whole(self.warmup_minutes, 0):
            found.append(f"warmup_minutes: {self.warmup_minutes!r} must be a whole number ≥ 0")
        elif _whole(self.minutes, 1) and not self.warmup_minutes < self.minutes:
            found.append(f"warmup_minutes must be in [0, minutes), got {self.warmup_minutes} of {self.minutes}")
        if not _number(self.target_concurrency, 0, strict=True):
            found.append(f"target_concurrency: {self.target_concurrency!r} must be a finite number > 0")
        found += self.quiet.problems()
        if self.kd_bin_dir is not None and not Path(self.kd_bin_dir).is_dir():
            found.append(f"kd_bin_dir: {self.kd_bin_dir} is not a directory")
        for name in REFERENCE_DATA.values():
            found += _reference_csv_problems(name, getattr(self, name))
        if not _whole(self.seed, 0):
            found.append(f"seed: {self.seed!r} must be a whole number ≥ 0")
        if not isinstance(self.original_extra, bool):
            found.append(f"original_extra: {self.original_extra!r} must be True or False")
        if not isinstance(self.timeouts, dict):
            found.append(f"timeouts: {self.timeouts!r} must be a dict of system → seconds")
        else:
            for name, value in self.timeouts.items():
                if name not in SYSTEMS:
                    found.append(f"timeouts: unknown system {name!r}")
                elif not _number(value, 0, strict=True):
                    found.append(f"timeouts[{name!r}]: {value!r} must be a finite number of seconds > 0")
        if not _whole(self.nodes, 1):
            found.append(f"nodes: {self.nodes!r} must be a whole number ≥ 1")
        elif self.nodes > MAX_NODES:
            found.append(f"nodes: {self.nodes} is more than a cluster here holds ({MAX_NODES} kwok nodes, kwok's "
                         "own benchmark size)")
        if not _number(self.drain_s, 0):
            found.append(f"drain_s: {self.drain_s!r} must be a finite number ≥ 0")
        if not _number(self.time_scale, 1):
            found.append(f"time_scale: {self.time_scale!r} must be a finite number ≥ 1 (1: the original's pace)")
        elif self.time_scale != 1 and self.run_id == REFERENCE_RUN_ID:
            found.append(f"time_scale: {self.time_scale} is refused for run_id {REFERENCE_RUN_ID!r}: "
                         "a reference run replays the trace at the original's pace (1)")
        from ...cluster.registry import backend_problems

        backend = backend_problems(self.backend, self.inventory)
        found += backend
        if not backend and self.backend == "ssh":  # the replayed systems run on kwok nodes
            from ...cluster.ssh import inventory

            hosts = inventory.load(self.inventory)
            if hosts.mode != "binaries" or not hosts.kwok_workers:
                found.append(f"inventory: {self.inventory}: the trace runs on kwok nodes: it needs mode binaries "
                             "and a worker with kwok_nodes")
        return found

    def validate(self) -> "TraceParams":
        problems = self.problems()
        if problems:
            raise ConfigError("invalid trace parameters:\n  " + "\n  ".join(problems))
        return self

    def timeout_for(self, system: str) -> float:
        return float(self.timeouts.get(system, SYSTEMS[system].dispatch_timeout_s))

    def kpa_for(self, system: str) -> KPAConfig:
        """The system's autoscaler: the Dirigent configuration with this run's target, or the
        original's Knative configuration as shipped (:data:`AS_SHIPPED`)."""
        if SYSTEMS[system].kpa == "knative":
            return KPAConfig.knative()
        return KPAConfig.dirigent(target_concurrency=self.target_concurrency)


def with_fetched_kd(params: TraceParams) -> tuple[TraceParams, str | None]:
    """``params`` with ``kd_bin_dir`` set to the binaries ``kd fetch`` stored in its default
    place, when a Kubedirect system is wanted, no directory was given and such binaries are
    there (as the microbenchmarks do); and a sentence saying so (None when nothing changed)."""
    if params.kd_bin_dir is not None or not any(SYSTEMS[s].kd and SYSTEMS[s].local for s in params.systems
                                                 if s in SYSTEMS):
        return params, None
    from ...cluster import kd_images

    found = kd_images.stored()
    if found is None:
        return params, None
    digests = ", ".join(f"{name}@{b.manifest_digest}" for name, b in found.binaries.items())
    return replace(params, kd_bin_dir=found.directory), (
        f"kd_bin_dir not given: using the Kubedirect binaries that `kd fetch` stored in {found.directory} ({digests})")


def _reference_csv_problems(name: str, path: Path | None) -> list[str]:
    """One line per problem of a reference CSV parameter: not a file, or a column missing."""
    from .reference import missing_columns

    if path is None:
        return []
    if not Path(path).is_file():
        return [f"{name} {path} is not a file"]
    missing = missing_columns(path)
    if missing:
        return [f"{name} {path} lacks the column(s) {', '.join(missing)} of invitro's per-invocation CSV"]
    return []


def plan(params: TraceParams) -> tuple[list[str], dict[str, str], list[str]]:
    """(systems to replay here, {system: why not measured}, systems shown from reference data)."""
    run, skipped, reference = [], {}, []
    for name in params.systems:
        system = SYSTEMS[name]
        if name in REFERENCE_DATA and getattr(params, REFERENCE_DATA[name]) is not None:
            reference.append(name)
        elif name == "Dirigent":
            skipped[name] = "no reference data: give its per-invocation CSV with dirigent_csv"
        elif not system.local:
            skipped[name] = KNATIVE_REASON + (" (or show the paper's result: the original's k8s.500.csv as kn_k8s_csv)"
                                              if name in REFERENCE_DATA else "")
        elif system.kd and params.kd_bin_dir is None:
            skipped[name] = (f"{KD_REASON_START} (kd_bin_dir, or `python -m kdlib kd fetch`); "
                             "its source is not public")
        else:
            run.append(name)
    return run, skipped, reference
