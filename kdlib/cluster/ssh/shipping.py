"""Binaries onto SSH hosts, content-addressed: ``<remote_dir>/bin/<sha256[:16]>/<name>``.

A file already there under its digest is not sent again (:meth:`Remote.put` with
``addressed``); identical files under several names (the multi-call kube binary) travel
once per host and are hard-linked under the others.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from .remote import Hosts, Remote, sha256_file

log = logging.getLogger(__name__)


def ship_binaries(hosts: Hosts, wanted: dict[str, list[str]], binaries: dict[str, Path],
                  remote_dir: str) -> dict[tuple[str, str], str]:
    """Put on each host of ``wanted`` (host → component names) those components' ``binaries``;
    returns (host, component) → the remote path. Raises naming every host that failed."""
    paths: dict[tuple[str, str], str] = {}
    plan: dict[str, list[tuple[str, Path, str]]] = {}
    digests: dict[Path, str] = {}
    for host, names in wanted.items():
        for name in names:
            local = Path(binaries[name]).resolve()
            digest = digests.setdefault(local, sha256_file(local))
            target = f"{remote_dir}/bin/{digest[:16]}/{name}"
            paths[(host, name)] = target
            plan.setdefault(host, []).append((name, local, target))

    def ship(remote: Remote) -> None:
        first_of: dict[str, str] = {}
        for _name, local, target in plan[remote.host.name]:
            digest = digests[local]
            if digest in first_of:
                remote.run(f"ln -f {shlex.quote(first_of[digest])} {shlex.quote(target)}")
            else:
                result = remote.put(local, target, addressed=True)
                log.info("%s: %s %s", remote.host.name, "kept" if result.skipped else "shipped", target)
                first_of[digest] = target

    hosts.each(ship, hosts=list(plan)).check()
    return paths
