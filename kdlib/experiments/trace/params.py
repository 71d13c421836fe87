"""The trace replay's systems and parameters (declared once: :class:`TraceParams`),
validated before anything is provisioned."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ValidationInfo, field_validator

from ...machine import QuietPolicy
from ...params import Params, RunId, check, directory, flag, names, number, one_of, param, whole
from ..backend import backend_problem, inventory_path
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


def _trace_dir(value: Any) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, Path)):
        raise ValueError(f"must be the path of a directory, not {value!r}")
    found = Path(value).expanduser()
    if found.exists() and not found.is_dir():
        raise ValueError(f"{found} is a file; give the directory holding invocations.csv and durations.csv "
                         "(Azure 2019 format)")
    if not found.exists():
        raise ValueError(f"directory {found} does not exist")
    return found


def _reference_csv(value: Any) -> Path | None:
    """A reference CSV parameter: a file with the columns of invitro's per-invocation CSV (its header is read)."""
    from .reference import missing_columns

    if value is None or value == "":
        return None
    if not isinstance(value, (str, Path)):
        raise ValueError(f"must be the path of a CSV file, not {value!r}")
    found = Path(value).expanduser()
    if not found.is_file():
        raise ValueError(f"{found} is not a file")
    missing = missing_columns(found)
    if missing:
        raise ValueError(f"{found} lacks the column(s) {', '.join(missing)} of invitro's per-invocation CSV")
    return found


def _timeouts(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} must be a dict of system → seconds")
    unknown = [name for name in value if name not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    return value


ReferenceCsv = Annotated[Path | None, BeforeValidator(_reference_csv)]


class TraceParams(Params):
    """Everything a trace run depends on: the notebook's parameters and ``kdlib trace run``'s
    options, declared once (:mod:`kdlib.params`); an instance is always valid."""

    WHAT: ClassVar[str] = "trace parameters"

    run_id: RunId = param(None, "required: names results/trace/<run_id>/ (letters, digits, '.', '_', '-')")
    trace: Annotated[Path | None, BeforeValidator(_trace_dir)] = param(
        None, "a directory in the Azure 2019 format; None: the shipped data/azure_500 (checksums verified)")
    functions: Annotated[int | None, whole(1, none="all")] = param(
        None, "replay the first N functions of the trace (as the original); None: all of them")
    subset: Annotated[str, one_of(SUBSET_RULES, "subset")] = param(
        "first", '"random": the N functions chosen at random with `seed` instead')
    minutes: Annotated[int, whole(1)] = param(30, "the first minutes of the trace (the original: 30)")
    warmup_minutes: Annotated[int, whole(0)] = param(10, "dropped from the analysis (the original: the first 10)")
    systems: Annotated[tuple[Annotated[str, one_of(SYSTEMS, "system")], ...], names(SYSTEMS, one_is_a_list=False)] = \
        param(tuple(SYSTEMS), "those that cannot run here are listed with the reason", cli=("--system",))
    target_concurrency: Annotated[float, number(0, above=True)] = param(
        1.0, f'KPA target per pod of the Dirigent configuration (Dr/K8s+, Dr/Kd+); "{AS_SHIPPED}" keeps the '
        "original's Knative configuration (target 100)")
    kd_bin_dir: Annotated[Path | None, BeforeValidator(directory)] = param(
        None, "directory holding Kubedirect's binaries (same file names); enables Dr/Kd+")
    dirigent_csv: ReferenceCsv = param(
        None, "Dirigent's per-invocation CSV (invitro format): shown as reference data")
    kn_k8s_csv: ReferenceCsv = param(
        None, "the original's Kn/K8s result (its k8s.500.csv, invitro format): Figure 12's curve of the paper's "
        "cluster")
    seed: Annotated[int, whole(0)] = param(
        42, "the original loader's generators (Go's math/rand), and a random subset's")
    original_extra: Annotated[bool, check(flag)] = param(
        True, "the original loader's n+1 invocations per active minute; False: the trace's exact counts")
    timeouts: Annotated[dict[str, Annotated[float, number(0, above=True, what="number of seconds")]],
                        BeforeValidator(_timeouts)] = param(
        {}, "dispatch timeout (s) per system, overriding the original's (300 s k8s+, 30 s kd+)")
    nodes: Annotated[int, whole(1, MAX_NODES, beyond=" (the kwok nodes a cluster here holds: kwok's own benchmark "
                                                      "size)")] = param(20, "kwok nodes")
    backend: Annotated[str, check(backend_problem)] = param(
        "local", '"local": a real control plane on this machine; "ssh": on the hosts of `inventory` (its kwok '
        "workers)")
    inventory: Path | None = param(
        None, 'backend "ssh": the YAML file naming the hosts (README: "A real cluster over SSH")')
    quiet_idle_pct: Annotated[float, number(0, high=100)] = param(
        80.0, "before each replay, wait until the CPUs were idle at least this % over quiet_window_s")
    quiet_window_s: Annotated[float, number(0, above=True)] = param(
        5.0, "the window over which idleness is judged (/proc/stat)", cli=("--quiet-window",))
    quiet_max_wait_s: Annotated[float, number(0)] = param(
        300.0, "wait at most this long; a replay measured without a quiet machine is marked busy",
        cli=("--quiet-max-wait",))
    drain_s: Annotated[float, number(0)] = param(
        15.0, "seconds after the last send before a replay stops, as the original's client waits")
    time_scale: Annotated[float, number(1)] = param(
        1.0, "trace seconds per second: > 1 replays faster than the original, for the tests (the cluster's own "
        f"latencies do not shrink); a {REFERENCE_RUN_ID!r} run is made at 1")
    knative_timeout_ms: Annotated[float | None, number(0, above=True, none="keep them")] = param(
        8000.0, "the analysis: the original's filter, Kn/Kd only: a delay above this is a timeout, dropped; "
        "None keeps them", notebook_only=True)

    @field_validator("warmup_minutes")
    @classmethod
    def _warmup_within(cls, warmup: int, info: ValidationInfo) -> int:
        minutes = info.data.get("minutes")
        if minutes is not None and not warmup < minutes:
            raise ValueError(f"{warmup} must be less than minutes ({minutes})")
        return warmup

    @field_validator("inventory", mode="before")
    @classmethod
    def _kwok_hosts(cls, inventory: Any, info: ValidationInfo) -> Any:
        inventory = inventory_path(inventory, info)
        if inventory is not None and info.data.get("backend") == "ssh":  # the replayed systems run on kwok nodes
            from ...cluster.ssh import inventory as inventories

            hosts = inventories.load(inventory)
            if hosts.mode != "binaries" or not hosts.kwok_workers:
                raise ValueError(f"{inventory}: the trace runs on kwok nodes: it needs mode binaries and a worker "
                                 "with kwok_nodes")
        return inventory

    @field_validator("time_scale")
    @classmethod
    def _reference_pace(cls, time_scale: float, info: ValidationInfo) -> float:
        if time_scale != 1 and info.data.get("run_id") == REFERENCE_RUN_ID:
            raise ValueError(f"{time_scale:g} is refused for run_id {REFERENCE_RUN_ID!r}: a reference run replays "
                             "the trace at the original's pace (1)")
        return time_scale

    @property
    def quiet(self) -> QuietPolicy:
        return QuietPolicy(self.quiet_idle_pct, self.quiet_window_s, self.quiet_max_wait_s)

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
    return params.replaced(kd_bin_dir=found.directory), (
        f"kd_bin_dir not given: using the Kubedirect binaries that `kd fetch` stored in {found.directory} ({digests})")


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
