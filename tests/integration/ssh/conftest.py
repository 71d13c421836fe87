"""Fixtures for the SSH backend's tests: real hosts made of network namespaces."""

from __future__ import annotations

import pytest

from ... import sshhosts


def _host_factory():
    """A factory for SSH test hosts; whatever it made is removed, and checked gone, at the end."""
    reason = sshhosts.unavailable_reason()
    if reason:
        pytest.skip(reason)
    remains = sshhosts.sweep()  # the remains of crashed runs in slots nobody holds
    assert not remains, f"remains of a crashed run that could not be removed: {remains}"
    factories: list[sshhosts.HostFactory] = []

    def make(count: int = 3) -> tuple[sshhosts.HostFactory, sshhosts.TestHosts]:
        factory = sshhosts.HostFactory(count)
        factories.append(factory)
        try:
            return factory, factory.create()
        except sshhosts.HostsUnavailable as error:
            pytest.skip(f"this machine cannot make SSH test hosts: {error}")

    yield make
    for factory in factories:
        still = factory.destroy()
        assert not any(still.values()), f"SSH test hosts left behind: {still}"


@pytest.fixture
def host_factory():
    """Hosts of the test's own: for a test that changes them (kills an sshd, starts a cluster, closes a directory)."""
    yield from _host_factory()


@pytest.fixture(scope="module")
def module_host_factory():
    """Hosts shared by a module's tests."""
    yield from _host_factory()


@pytest.fixture
def ssh_hosts(host_factory) -> sshhosts.TestHosts:
    """Three SSH hosts of the test's own (root login with an ephemeral key)."""
    return host_factory(3)[1]


@pytest.fixture(scope="module")
def shared_hosts(module_host_factory) -> sshhosts.TestHosts:
    """Three SSH hosts made once per module, for its tests that only run commands on them or
    work in paths of their own there (each host costs a namespace, an sshd and keys)."""
    return module_host_factory(3)[1]


def inventory_for(hosts: sshhosts.TestHosts, *, kwok_nodes: int = 2, connect_timeout: int = 5,
                  command_timeout: float = 30, extra_workers: tuple[dict, ...] = ()):
    """An inventory of the test hosts: control plane on host 1, kwok on host 2, a kubelet on host 3."""
    from kdlib.cluster.ssh import inventory

    roles = [{"kwok_nodes": kwok_nodes}, {"kubelet": True}]
    data = {
        "cluster": "kdt", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
        "connect_timeout": connect_timeout, "command_timeout": command_timeout,
        "remote_dir": str(hosts.workdir / "remote"),
        "control_plane": {"name": hosts[0].name, "address": hosts[0].address},
        "workers": [{"name": h.name, "address": h.address, **roles[i % 2]} for i, h in enumerate(hosts.hosts[1:])]
                   + list(extra_workers),
    }
    return inventory.parse(data, "test-hosts")
