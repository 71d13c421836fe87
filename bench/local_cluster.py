"""Benchmark of the local embedded cluster (issue: local embedded cluster).

Reports: cold and warm binary build time, `up` time to all nodes Ready, time for one
Deployment to reach 100 Ready pods (simulated sandbox), `down` time, and the peak
memory of the control plane (sum of each component's VmHWM).

    python bench/local_cluster.py [--nodes 20] [--pods 100] [--cold-build]

``--cold-build`` builds from empty Go caches in a temporary directory (about ten
minutes on 2 cores); without it the cold figure is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubernetes import client  # noqa: E402

from kdlib import LocalCluster  # noqa: E402
from kdlib.k8s import objects  # noqa: E402
from kdlib.cluster.local.processes import Processes  # noqa: E402
from kdlib.experiments.microbench.timeline import Timeline  # noqa: E402


def build_time(env: dict[str, str], force: bool) -> float:
    started = time.monotonic()
    args = [sys.executable, "-m", "kdlib", "build"] + (["--force"] if force else [])
    subprocess.run(args, cwd=REPO, env={**os.environ, **env}, check=True, capture_output=True)
    return time.monotonic() - started


def peak_memory_mib(state_dir: Path) -> dict[str, float]:
    peaks = {}
    for name, pid in Processes(state_dir).pids().items():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[name] = int(line.split()[1]) / 1024
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--cold-build", action="store_true")
    parser.add_argument("--skip-build", action="store_true", help="time only the cluster (up, pods, down)")
    args = parser.parse_args()
    report: dict[str, object] = {}

    if args.cold_build:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GOCACHE": f"{tmp}/gocache", "GOMODCACHE": f"{tmp}/gomod", "KDLIB_CACHE_DIR": f"{tmp}/kdlib"}
            report["build_cold_s"] = round(build_time(env, force=False), 1)
            subprocess.run(["chmod", "-R", "u+w", tmp], check=False)  # the module cache is read-only
    if not args.skip_build:
        report["build_warm_rebuild_s"] = round(build_time({}, force=True), 1)
        report["build_cached_s"] = round(build_time({}, force=False), 2)

    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "cluster"
        cluster = LocalCluster(nodes=args.nodes, state_dir=state_dir)
        started = time.monotonic()
        cluster.start()
        report[f"up_to_{args.nodes}_nodes_ready_s"] = round(time.monotonic() - started, 2)
        try:
            api = cluster.api_client()
            client.CoreV1Api(api).create_namespace(objects.namespace("bench"))
            with Timeline(api, "bench") as timeline:
                started = time.monotonic()
                client.AppsV1Api(api).create_namespaced_deployment(
                    "bench", objects.deployment("bench", "bench", replicas=args.pods))
                if not timeline.wait_ready(args.pods, timeout=300):
                    raise SystemExit(f"only {timeline.ready_count()} pods Ready")
                report[f"deployment_{args.pods}_pods_ready_s"] = round(time.monotonic() - started, 2)
            peaks = peak_memory_mib(state_dir)
            report["peak_rss_mib"] = {k: round(v) for k, v in peaks.items()}
            report["peak_rss_total_mib"] = round(sum(peaks.values()))
        finally:
            started = time.monotonic()
            cluster.stop()
            report["down_s"] = round(time.monotonic() - started, 2)
    report["machine"] = {"cpus": os.cpu_count()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
