"""The test hosts themselves: own hostnames, isolation, and clean-up after a crashed run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ... import sshhosts
from ..ssh.conftest import inventory_for
from kdlib.cluster.ssh.remote import Hosts

pytestmark = [pytest.mark.integration, pytest.mark.ssh]

CRASHING_RUN = """
import os, sys
sys.path.insert(0, {root!r})
from tests import sshhosts
factory = sshhosts.HostFactory(2)
factory.create()
print(factory.slot_prefix, flush=True)
os._exit(0)  # a crash: no clean-up, the slot's flock dies with the process
"""


def test_each_host_has_its_own_hostname_and_hosts_file_and_no_route_out(ssh_hosts):
    with Hosts.of(inventory_for(ssh_hosts)) as hosts:
        results = hosts.run(f"hostname; getent hosts {ssh_hosts[2].name}; ip route").check()
    for host in ssh_hosts.hosts:
        lines = results[host.name].stdout.splitlines()
        assert lines[0] == host.name
        assert lines[1].split() == [ssh_hosts[2].address, ssh_hosts[2].name]
        assert not any(line.startswith("default") for line in lines[2:])


def test_the_remains_of_a_crashed_run_are_removed_and_nothing_else(host_factory):
    if sshhosts.unavailable_reason():
        pytest.skip(sshhosts.unavailable_reason())
    _, alive = host_factory(2)  # a live run in another slot must survive the sweep
    root = str(sshhosts.Path(__file__).resolve().parents[3])
    out = subprocess.run([sys.executable, "-c", CRASHING_RUN.format(root=root)], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    crashed = out[-1]
    remains = sshhosts.leftovers(crashed)
    assert remains["netns"] and remains["links"] and remains["pids"] and remains["workdirs"]
    assert sshhosts.sweep() == {}
    assert not any(sshhosts.leftovers(crashed).values())
    with Hosts.of(inventory_for(alive)) as hosts:  # the live run's host still answers
        hosts.run("true").check()
