"""The cluster's CAs and the certificates and kubeconfigs signed by them.

As in a kubeadm cluster: a cluster CA with a serving certificate per component and a
client certificate per identity (admin in system:masters, the controller manager and
the scheduler under their own RBAC names); a key pair for service-account tokens; and a
separate etcd CA. etcd trusts only its own CA, as kubeadm's does: a client certificate
of the cluster CA (kwok's, a node's) must not open etcd, which would bypass the
apiserver's RBAC. ECDSA P-256 keys keep generation fast.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .components import Layout

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair


def _load(pair: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):  # every key here is one (generate_private_key above)
        raise ValueError(f"{pair.key} holds a {type(key).__name__}, not the elliptic-curve key kdlib wrote")
    return cert, key


def create_ca(directory: Path, common_name: str = "kdlib-ca", name: str = "ca") -> KeyPair:
    """Create a self-signed CA as ``<name>.crt`` / ``<name>.key`` in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY * 10)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _write(KeyPair(directory / f"{name}.crt", directory / f"{name}.key"), cert, key)


def issue(
    ca: KeyPair,
    directory: Path,
    name: str,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
    client_too: bool = False,
) -> KeyPair:
    """Issue ``<name>.crt`` / ``<name>.key`` signed by ``ca``.

    With ``hosts`` the certificate serves TLS for those DNS names and IP addresses
    (and, with ``client_too``, also authenticates as a client: etcd peers do both);
    without, it is a client certificate for ``common_name`` in ``organizations``.
    """
    ca_cert, ca_key = _load(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if hosts else [ExtendedKeyUsageOID.CLIENT_AUTH]
    if hosts and client_too:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _write(KeyPair(directory / f"{name}.crt", directory / f"{name}.key"), cert, key)


def _alt_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def create_signing_key(directory: Path, name: str = "sa") -> KeyPair:
    """Create the service-account token key pair: ``sa.key`` and its public ``sa.pub``."""
    key = ec.generate_private_key(ec.SECP256R1())
    pair = KeyPair(cert=directory / f"{name}.pub", key=directory / f"{name}.key")
    pair.cert.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    _write_key(pair.key, key)
    return pair


def write_kubeconfig(path: Path, server: str, ca: KeyPair, client: KeyPair, user: str) -> Path:
    """Write a self-contained kubeconfig (certificates embedded) for ``user``."""

    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kdlib", "cluster": {"server": server, "certificate-authority-data": b64(ca.cert)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)}}],
        "contexts": [{"name": "kdlib", "context": {"cluster": "kdlib", "user": user}}],
        "current-context": "kdlib",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


# Who talks to the apiserver with which identity (common name, groups).
IDENTITIES = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kwok": ("kwok-controller", ("system:masters",)),  # as kwokctl: it manages every node
}
APISERVER_NAMES = ("10.96.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local")


def write_control_plane_pki(layout: Layout, server: str, hosts: tuple[str, ...]) -> None:
    """Every certificate and kubeconfig of a control plane reached at ``server``.

    ``hosts`` are the names and addresses the components serve on (loopback locally,
    the host's address over SSH); they go into every serving certificate.
    """
    directory = layout.pki
    directory.mkdir(parents=True, exist_ok=True)
    layout.config.mkdir(parents=True, exist_ok=True)
    ca = create_ca(directory)
    issue(ca, directory, "apiserver", "kube-apiserver", hosts=(*hosts, *APISERVER_NAMES))
    issue(ca, directory, "controller-manager", "kube-controller-manager", hosts=hosts)
    issue(ca, directory, "scheduler", "kube-scheduler", hosts=hosts)
    create_signing_key(directory, "sa")
    for user, (common_name, groups) in IDENTITIES.items():
        pair = issue(ca, directory, f"{user}-client", common_name, organizations=groups)
        write_kubeconfig(layout.kubeconfig(user), server, ca, pair, user)
    # The admin's pair also authenticates kdlib's health probes of the apiserver.
    shutil.copy(directory / "admin-client.crt", directory / "admin.crt")
    shutil.copy(directory / "admin-client.key", directory / "admin.key")
    # etcd: its own CA; server+peer certificate; clients: the apiserver and kdlib's probe.
    etcd_ca = create_ca(directory, "kdlib-etcd-ca", name="etcd-ca")
    issue(etcd_ca, directory, "etcd-server", "kdlib-etcd", hosts=hosts, client_too=True)
    issue(etcd_ca, directory, "apiserver-etcd-client", "kube-apiserver-etcd-client")
    issue(etcd_ca, directory, "etcd-healthcheck-client", "kube-etcd-healthcheck-client")
