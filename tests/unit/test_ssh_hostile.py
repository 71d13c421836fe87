"""Hostile unit tests of the SSH backend's plumbing (no network: nothing is connected)."""

from __future__ import annotations

from kdlib.cluster.ssh.inventory import Host
from kdlib.cluster.ssh.remote import Hosts


def test_an_empty_host_list_means_no_host_not_every_host():
    # An inventory without kwok workers asks for kwok on hosts=[]: nothing may run anywhere.
    hosts = Hosts([Host("node0", "10.10.1.1", key=None), Host("node1", "10.10.1.2", key=None)])
    called = []
    assert hosts.each(called.append, hosts=[]) == {}
    assert called == []
    assert hosts.run("true", hosts=[]) == {}
    assert sorted(hosts.each(lambda r: r.host.name)) == ["node0", "node1"]  # no list: every host
