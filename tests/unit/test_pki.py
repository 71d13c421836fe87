import ipaddress
import ssl

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kdlib.cluster.controlplane import pki


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_serving_certificate_is_signed_by_the_ca_and_names_its_hosts(tmp_path):
    ca = pki.create_ca(tmp_path)
    pair = pki.issue(ca, tmp_path, "apiserver", "kube-apiserver", hosts=("127.0.0.1", "kubernetes"))
    cert = _cert(pair.cert)
    cert.verify_directly_issued_by(_cert(ca.cert))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "kubernetes" in sans.get_values_for_type(x509.DNSName)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    # The standard library accepts the pair as a TLS server identity.
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(pair.cert, pair.key)


def test_client_certificate_carries_user_and_groups(tmp_path):
    ca = pki.create_ca(tmp_path)
    pair = pki.issue(ca, tmp_path, "admin", "kubernetes-admin", organizations=("system:masters",))
    subject = _cert(pair.cert).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes-admin"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert oct(pair.key.stat().st_mode)[-3:] == "600"


def test_ca_is_a_ca_and_leaf_is_not(tmp_path):
    ca = pki.create_ca(tmp_path)
    leaf = pki.issue(ca, tmp_path, "x", "x")
    assert _cert(ca.cert).extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not _cert(leaf.cert).extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_kubeconfig_embeds_credentials(tmp_path):
    ca = pki.create_ca(tmp_path)
    pair = pki.issue(ca, tmp_path, "admin", "kubernetes-admin")
    path = pki.write_kubeconfig(tmp_path / "admin.kubeconfig", "https://127.0.0.1:6443", ca, pair, "admin")
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["users"][0]["user"]["client-certificate-data"]
    assert config["current-context"] == "kdlib"


def test_control_plane_pki_gives_etcd_its_own_ca(tmp_path):
    from kdlib.cluster.controlplane.components import Layout

    layout = Layout(tmp_path)
    pki.write_control_plane_pki(layout, "https://127.0.0.1:6443", hosts=("127.0.0.1", "localhost"))
    etcd_ca, cluster_ca = _cert(layout.pem("etcd-ca.crt")), _cert(layout.pem("ca.crt"))
    assert etcd_ca.subject != cluster_ca.subject
    server = _cert(layout.pem("etcd-server.crt"))
    server.verify_directly_issued_by(etcd_ca)
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)  # peers do both
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    for client in ("apiserver-etcd-client", "etcd-healthcheck-client"):
        cert = _cert(layout.pem(f"{client}.crt"))
        cert.verify_directly_issued_by(etcd_ca)
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.CLIENT_AUTH]
    # A client certificate of the cluster CA (kwok's, say) is not signed by etcd's CA.
    kwok = _cert(layout.pem("kwok-client.crt"))
    kwok.verify_directly_issued_by(cluster_ca)
    try:
        kwok.verify_directly_issued_by(etcd_ca)
        raise AssertionError("the cluster CA's client certificate verifies against the etcd CA")
    except Exception as error:  # cryptography raises ValueError / InvalidSignature
        assert not isinstance(error, AssertionError)
