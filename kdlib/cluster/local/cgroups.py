"""cgroup v1 trees of the real nodes: each node's kubelet gets ``/<tag>-n<i>`` as its
cgroupRoot in every hierarchy, so its pods and containers are found (and removed) there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ...wait import wait_until
from .hostnet import CGROUP_ROOT


def create(cgroup: str) -> None:
    """``cgroup`` in every v1 hierarchy (a kubelet's cgroupRoot must exist before it starts)."""
    for hierarchy in _hierarchies():
        path = hierarchy / cgroup.lstrip("/")
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":  # a new cpuset is empty until given cpus and mems
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (path / knob).write_text((hierarchy / knob).read_text())


def _hierarchies() -> list[Path]:
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and (p / "cgroup.procs").exists())


def pids(cgroup: str) -> set[int]:
    """Every process in the subtree of ``cgroup``, in any hierarchy."""
    found: set[int] = set()
    for hierarchy in _hierarchies():
        top = hierarchy / cgroup.lstrip("/")
        if not top.is_dir():
            continue
        for directory, _, _ in os.walk(top):  # cgroups vanish while we walk: errors are skipped
            try:
                found.update(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
            except OSError:
                pass
    return found


def pod_process_starts(cgroup: str) -> dict[str, list[float]]:
    """For each pod under ``cgroup`` (by uid), when its processes started, in ``time.monotonic()``
    seconds (10 ms resolution): the sandbox's (pause) process first, then its containers'."""
    tick = os.sysconf("SC_CLK_TCK")
    # /proc/<pid>/stat counts from boot on CLOCK_BOOTTIME; this machine's offset to monotonic:
    offset = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    starts: dict[str, list[float]] = {}
    pids_hierarchy = CGROUP_ROOT / "pids" / cgroup.lstrip("/")
    for directory, _, _ in os.walk(pids_hierarchy):
        parts = Path(directory).parts
        pod = next((p[3:] for p in parts if p.startswith("pod")), None)
        if pod is None:
            continue
        try:
            pids = [int(p) for p in Path(directory, "cgroup.procs").read_text().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
            except (OSError, IndexError, ValueError):
                continue
            starts.setdefault(pod.replace("_", "-"), []).append(ticks / tick - offset)
    return {uid: sorted(times) for uid, times in starts.items()}


def cpu_seconds(cgroup: str) -> float:
    """CPU seconds used so far by every process that ran in ``cgroup``'s subtree (cpuacct
    charges every ancestor, so the pods of earlier runs still count); 0 when it is absent."""
    try:
        return int((CGROUP_ROOT / "cpuacct" / cgroup.lstrip("/") / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return 0.0


def remove(cgroup: str, timeout: float = 10.0) -> list[str]:
    """rmdir ``cgroup`` and its children, deepest first, in every hierarchy; returns those left."""
    left: list[str] = []

    def removed() -> bool:
        left.clear()
        for hierarchy in _hierarchies():
            top = hierarchy / cgroup.lstrip("/")
            if not top.is_dir():
                continue
            for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(Path(entry[0]).parts)):
                try:
                    os.rmdir(directory)  # deepest first; the root itself last
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(directory)
        return not left

    try:
        wait_until(removed, timeout=timeout, interval=0.2)
    except TimeoutError:
        pass
    return left
