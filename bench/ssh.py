"""Benchmark of the SSH backend on hosts made of network namespaces on this machine (root).

    python bench/ssh.py [--hosts 3] [--commands 20] [--kwok-nodes 3] [--no-kubelet] [--no-cluster]

Measures: making and removing the test hosts; connect + first command; the per-command
overhead (``true``) on one host and on all hosts as a group; ``put`` of a 50 MiB file
and its checksum skip; and, unless ``--no-cluster``, provisioning a ``binaries`` cluster
(control plane on host 1, kwok on host 2, containerd and a real kubelet on host 3) until
its kwok and real nodes are Ready — twice, the second time with the binaries already on
the hosts — and its clean-up. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kdlib.cluster.ssh import inventory  # noqa: E402
from kdlib.cluster.ssh.cluster import SshCluster  # noqa: E402
from kdlib.cluster.ssh.remote import Hosts  # noqa: E402
from tests import sshhosts  # noqa: E402


def seconds(start: float) -> float:
    return round(time.monotonic() - start, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--kwok-nodes", type=int, default=3)
    parser.add_argument("--no-kubelet", action="store_true", help="no real kubelet on host 3")
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args()
    reason = sshhosts.unavailable_reason()
    if reason:
        sys.exit(f"bench/ssh.py: {reason}")
    out: dict = {"hosts": args.hosts, "load_average_1m_at_start": os.getloadavg()[0]}
    factory = sshhosts.HostFactory(args.hosts)
    start = time.monotonic()
    hosts = factory.create()
    out["hosts_create_s"] = seconds(start)
    try:
        data = {"cluster": "bench", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
                "connect_timeout": 5, "command_timeout": 300, "remote_dir": str(hosts.workdir / "remote"),
                "control_plane": {"name": hosts[0].name, "address": hosts[0].address},
                "workers": [{"name": h.name, "address": h.address, "kwok_nodes": args.kwok_nodes}
                            for h in hosts.hosts[1:2]]}
        if args.hosts >= 3 and not args.no_kubelet:
            data["workers"].append({"name": hosts[2].name, "address": hosts[2].address, "kubelet": True})
        all_hosts = inventory.parse({**data, "workers": [
            {"name": h.name, "address": h.address, "kwok_nodes": 1} for h in hosts.hosts[1:]]})
        with Hosts.of(all_hosts) as group:
            one = group[hosts[0].name]
            start = time.monotonic()
            one.run("true")
            out["connect_and_first_command_s"] = seconds(start)
            singles = []
            for _ in range(args.commands):
                start = time.monotonic()
                one.run("true")
                singles.append(time.monotonic() - start)
            out["command_overhead_one_host_s"] = {"median": round(statistics.median(singles), 3),
                                                  "max": round(max(singles), 3), "n": len(singles)}
            group.run("true").check()  # connections open
            groups = []
            for _ in range(args.commands):
                start = time.monotonic()
                group.run("true").check()
                groups.append(time.monotonic() - start)
            out["command_overhead_group_s"] = {"median": round(statistics.median(groups), 3),
                                               "max": round(max(groups), 3), "n": len(groups),
                                               "hosts": len(group.remotes)}
            with tempfile.NamedTemporaryFile(prefix="kdlib-bench-") as blob:
                blob.write(os.urandom(50 << 20))
                blob.flush()
                target = f"{hosts.workdir}/remote/blob"
                first = one.put(blob.name, target)
                again = one.put(blob.name, target)
            out["put_50MiB_s"] = round(first.seconds, 3)
            out["put_50MiB_skipped_s"] = round(again.seconds, 3)
        if not args.no_cluster:
            inv = inventory.parse(data, "bench")
            for label in ("cold", "warm"):  # warm: the binaries are already on the hosts
                start = time.monotonic()
                cluster = SshCluster(inv)
                cluster.start()
                out[f"cluster_up_{label}_s"] = seconds(start)
                out[f"cluster_up_{label}_phases_s"] = {k: round(v, 2) for k, v in cluster.timings.items()}
                start = time.monotonic()
                cluster.stop()
                out[f"cluster_down_{label}_s"] = seconds(start)
            out["kwok_nodes"] = args.kwok_nodes
            out["real_nodes"] = len(inv.kubelet_workers)
    finally:
        start = time.monotonic()
        still = factory.destroy()
        out["hosts_destroy_s"] = seconds(start)
        out["left_behind"] = still
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
