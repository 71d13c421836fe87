"""The local cluster against real processes: up, pods Ready on kwok nodes, down, clean."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys

import pytest
from kubernetes import client

from kdlib import LocalCluster
from kdlib.k8s import objects
from kdlib.cluster.local import status
from kdlib.errors import ClusterBusyError
from kdlib.experiments.microbench.timeline import Timeline

from ..helpers import REPO, assert_clean, our_processes, run_kdlib, wait_until

NODES = 20
WATCH_JITTER_S = 0.020


@pytest.fixture(scope="module")
def cluster(binaries, tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("local") / "cluster"
    with LocalCluster(nodes=NODES, state_dir=state_dir) as running:
        yield running
    assert_clean(state_dir, status(state_dir)["ports"])


def _deploy(api, namespace: str, name: str, replicas: int, simulated: bool) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(
        namespace, objects.deployment(name, namespace, replicas=replicas, simulated_sandbox=simulated))


def test_nodes_are_ready_kwok_nodes(cluster):
    api = cluster.api_client()
    nodes = client.CoreV1Api(api).list_node().items
    assert sorted(n.metadata.name for n in nodes) == sorted(cluster.info.node_names)
    assert len(nodes) == NODES
    for node in nodes:
        assert node.metadata.labels["type"] == "kwok"
        assert {"Ready": "True"}.items() <= {c.type: c.status for c in node.status.conditions}.items()
        assert node.status.allocatable == {"cpu": "48", "memory": "128Gi", "pods": "110"}
    leases = client.CoordinationV1Api(api).list_namespaced_lease("kube-node-lease").items
    assert {lease.metadata.name for lease in leases} >= set(cluster.info.node_names)


def test_create_all_counts_what_it_made_and_names_a_refusal(cluster):
    """The kwok nodes' bulk create: existing objects count as made; another refusal is the API's error."""
    from kubernetes.client.rest import ApiException

    from kdlib.cluster import kwok
    from kdlib.k8s.calls import create_all

    api = cluster.api_client()
    existing = kwok.node_object(cluster.info.node_names[0])
    assert create_all(api, "/api/v1/nodes", [existing]) == 0  # 409: already there
    with pytest.raises(ApiException) as refused:
        create_all(api, "/api/v1/nodes", [kwok.node_object("Not_A_Valid_Name")])
    assert refused.value.status == 422 and "Not_A_Valid_Name" in refused.value.body.decode()


@pytest.mark.alone  # the unlabelled pods Ready within 200 ms: beside other tests' clusters they took 260-530 ms
def test_simulated_sandbox_pods_turn_ready_200ms_after_binding(cluster):
    api = cluster.api_client()
    client.CoreV1Api(api).create_namespace(objects.namespace("it-sandbox"))
    with Timeline(api, "it-sandbox") as timeline:
        _deploy(api, "it-sandbox", "simulated", NODES, simulated=True)
        _deploy(api, "it-sandbox", "prompt", 5, simulated=False)
        assert timeline.wait_ready(NODES + 5, timeout=60), f"only {timeline.ready_count()} pods Ready"
        records = {r["pod"]: r for r in timeline.records()}
        simulated = [r for name, r in records.items() if name.startswith("simulated-")]
        prompt = [r for name, r in records.items() if name.startswith("prompt-")]
        assert len(simulated) == NODES and len(prompt) == 5
        # Both times are when this client observed the change. kwok starts its 200 ms
        # from its own (earlier or later) sight of the binding, so a single pod's gap may
        # fall short of 200 ms by the difference of the two watch deliveries: allow 20 ms.
        gaps = [r["ready"] - r["scheduled"] for r in simulated]
        for record in simulated:
            assert record["node"] in cluster.info.node_names
            assert record["ready"] - record["scheduled"] >= 0.200 - WATCH_JITTER_S, record
        assert statistics.median(gaps) >= 0.200, gaps
        # Without the label kwok marks pods Ready at once: the delay comes from the Stage.
        assert statistics.median(r["ready"] - r["scheduled"] for r in prompt) < 0.200

        client.AppsV1Api(api).delete_collection_namespaced_deployment("it-sandbox")
        assert timeline.wait_for(lambda t: t.live_count() == 0, timeout=60), "pods were not deleted"
    assert client.CoreV1Api(api).list_namespaced_pod("it-sandbox").items == []


def test_second_cluster_on_the_same_state_dir_is_refused(cluster):
    with pytest.raises(ClusterBusyError, match="already running"):
        LocalCluster(nodes=1, state_dir=cluster.state_dir).start()
    assert status(cluster.state_dir)["complete"]


def test_cli_up_status_down(binaries, state_dir):
    up = run_kdlib("local", "up", "--nodes", "3", "--state-dir", str(state_dir))
    assert up.returncode == 0, up.stderr
    kubeconfig = up.stdout.strip()
    assert kubeconfig.endswith("admin.kubeconfig")
    found = json.loads(run_kdlib("local", "status", "--state-dir", str(state_dir)).stdout)
    assert found["complete"] and len(found["nodes"]) == 3
    again = run_kdlib("local", "up", "--state-dir", str(state_dir))
    assert again.returncode == 1 and "already running" in again.stderr
    down = run_kdlib("local", "down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert_clean(state_dir, found["ports"])


@pytest.mark.destructive
def test_down_clears_a_cluster_whose_owner_was_killed(binaries, state_dir):
    """A context-managed cluster whose Python process dies by SIGKILL: `down` clears it."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER.format(state_dir=str(state_dir))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert owner.stdout.readline().strip() == "ready"
    ports = status(state_dir)["ports"]
    owner.kill()
    owner.wait()
    assert our_processes(state_dir), "the components should outlive a SIGKILLed owner"
    assert run_kdlib("local", "down", "--state-dir", str(state_dir)).returncode == 0
    assert_clean(state_dir, ports)


_OWNER = """
import time
from kdlib import LocalCluster
with LocalCluster(nodes=2, state_dir={state_dir!r}):
    print("ready", flush=True)
    time.sleep(600)
"""


@pytest.mark.destructive
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_a_context_managed_cluster_cleans_up(binaries, state_dir, sig):
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER.format(state_dir=str(state_dir))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert owner.stdout.readline().strip() == "ready"
    ports = status(state_dir)["ports"]
    owner.send_signal(sig)
    owner.wait(timeout=30)
    assert_clean(state_dir, ports)


@pytest.mark.destructive
def test_sigint_during_cli_up_cleans_up(binaries, state_dir):
    up = subprocess.Popen([sys.executable, "-m", "kdlib", "local", "up", "--nodes", "2",
                           "--state-dir", str(state_dir)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in up.stderr:  # interrupt while the control plane is starting
        if "kube-apiserver healthy" in line:
            break
    ports = status(state_dir)["ports"]
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=30) == 130
    wait_until(lambda: not our_processes(state_dir) and not state_dir.exists(), 10, "the cluster to be gone")
    assert_clean(state_dir, ports)


def _refusal(request) -> BaseException:
    """The error of ``request`` to a port that is open: the server's refusal, never a closed
    port, a timeout, or this client refusing the server's certificate."""
    import socket
    import ssl
    import urllib.error

    with pytest.raises(OSError) as raised:  # urllib's URLError, ssl.SSLError, a reset: all OSErrors
        request()
    # urllib wraps the socket's error in a URLError; an ssl.SSLError raised while reading the
    # reply is not wrapped, and its own ``reason`` is a string (e.g. TLSV13_ALERT_CERTIFICATE_REQUIRED)
    error = raised.value
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    assert not isinstance(reason, (ConnectionRefusedError, TimeoutError, socket.timeout,
                                   ssl.SSLCertVerificationError)), repr(error)
    return reason


def _tls_refusal(reason: BaseException) -> bool:
    """The server ended the handshake: its alert (TLSV13_ALERT_CERTIFICATE_REQUIRED, ..._UNKNOWN_CA,
    ..._BAD_CERTIFICATE), or the connection it reset right after."""
    import ssl

    return isinstance(reason, ConnectionResetError) or (isinstance(reason, ssl.SSLError)
                                                        and "ALERT" in str(reason.reason))


def test_etcd_serves_only_clients_with_a_certificate_of_its_own_ca(cluster):
    import socket
    import ssl
    import urllib.request

    port = status(cluster.state_dir)["ports"]["etcd"]
    etcd_pid = status(cluster.state_dir)["processes"]["etcd"]
    socket.create_connection(("127.0.0.1", port), timeout=3).close()  # it listens: a refusal below is etcd's
    pem = cluster.layout.pem
    plain = _refusal(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3).read())
    assert not isinstance(plain, ssl.SSLError), repr(plain)  # plain HTTP: no TLS on this side at all
    no_cert = ssl.create_default_context(cafile=str(pem("etcd-ca.crt")))
    refused = _refusal(lambda: urllib.request.urlopen(f"https://127.0.0.1:{port}/v2/keys", timeout=3,
                                                      context=no_cert).read())
    assert _tls_refusal(refused), repr(refused)  # no client certificate: etcd ends the handshake
    cluster_ca_cert = ssl.create_default_context(cafile=str(pem("etcd-ca.crt")))
    cluster_ca_cert.load_cert_chain(str(pem("kwok-client.crt")), str(pem("kwok-client.key")))
    refused = _refusal(lambda: urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=3,
                                                      context=cluster_ca_cert).read())
    assert _tls_refusal(refused), repr(refused)  # a certificate of another CA: refused the same way
    cluster.check()  # the refused clients harmed nothing: every component runs, etcd the same process
    assert status(cluster.state_dir)["processes"]["etcd"] == etcd_pid
    good = ssl.create_default_context(cafile=str(pem("etcd-ca.crt")))
    good.load_cert_chain(str(pem("etcd-healthcheck-client.crt")), str(pem("etcd-healthcheck-client.key")))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=3, context=good) as response:
        assert response.status == 200
    assert client.CoreV1Api(cluster.api_client()).list_namespace().items  # the apiserver works through it
