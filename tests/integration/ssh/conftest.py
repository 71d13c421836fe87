"""Fixtures for the SSH backend's tests: real hosts made of network namespaces."""

from __future__ import annotations

import pytest

from ... import sshhosts


@pytest.fixture
def host_factory():
    """A factory for SSH test hosts; whatever it made is removed, and checked gone, at the end."""
    reason = sshhosts.unavailable_reason()
    if reason:
        pytest.skip(reason)
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
def ssh_hosts(host_factory) -> sshhosts.TestHosts:
    """Three SSH hosts on this machine (root login with an ephemeral key)."""
    return host_factory(3)[1]
