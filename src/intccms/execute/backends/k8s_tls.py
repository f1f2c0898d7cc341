"""Per-run TLS material for a DaskCluster: a private CA, one certificate, one Secret.

Anyone who can talk to a Dask scheduler can run code on its workers, which hold the storage
credentials. With ``cluster.kubernetes.tls`` each run makes its own CA, signs one
certificate with it and throws the CA key away, so only the holders of this run's Secret
(its scheduler, its workers and the job itself) can join or use the cluster; a certificate
cannot outlive the cluster it was made for in any useful way.

Dask does not check host names (``Security`` sets ``check_hostname = False``: the cluster's
own CA is the trust boundary), so one certificate serves every role: scheduler, worker and
client. The key material lives in memory in the job and as a Secret in the cluster; it never
appears in a log line, a ``repr``, an exception or a DaskCluster manifest.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass, field
from typing import Any

import distributed
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_KEY", "CERT_KEY", "KEY_KEY", "VALID_DAYS", "ClusterTLS", "make_cluster_tls",
           "make_tls_secret"]

# Keys of the Secret (type kubernetes.io/tls, which names the first two).
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
CA_KEY = "ca.crt"
# Long enough for any single run (the operator's idle timeout ends abandoned clusters first).
VALID_DAYS = 30
# Clocks of the job and the pods may differ a little.
_CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class ClusterTLS:
    """PEM texts of one run's CA certificate, certificate and private key.

    The fields are left out of ``repr`` so that the key cannot reach a log or a traceback.
    """

    ca_pem: str = field(repr=False)
    cert_pem: str = field(repr=False)
    key_pem: str = field(repr=False)

    def security(self) -> distributed.Security:
        """The job's client credentials: encryption required, the run's CA only.

        Dask keeps PEM texts in memory (its ``repr`` shows "Temporary (In-memory)"); it
        writes them to a private temporary folder only for the moment it loads them.
        """
        return distributed.Security(
            require_encryption=True,
            tls_ca_file=self.ca_pem,
            tls_client_cert=self.cert_pem,
            tls_client_key=self.key_pem,
        )


def make_cluster_tls(cluster: str, *, now: datetime.datetime | None = None) -> ClusterTLS:
    """A fresh CA and a certificate it signed for the DaskCluster ``cluster``.

    ECDSA P-256 keys: as strong as RSA-3072 for TLS and generated in milliseconds.

    Args:
        cluster: Name of the DaskCluster (goes into the subject, for people reading the cert).
        now: Start of validity (tests); the current time by default.

    Returns:
        The CA certificate, the certificate and its unencrypted key, as PEM text.
    """
    start = (now or datetime.datetime.now(datetime.UTC)) - _CLOCK_SKEW
    end = start + _CLOCK_SKEW + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    scheduler = f"{cluster}-scheduler"
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cluster)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cluster),
                                                    x509.DNSName(scheduler)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The CA key goes out of scope here: nobody can sign another certificate for this run.
    return ClusterTLS(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM).decode(),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode(),
    )


def make_tls_secret(name: str, tls: ClusterTLS, *, labels: dict[str, str] | None = None,
                    owner: dict[str, str] | None = None) -> dict[str, Any]:
    """The Secret that scheduler and worker pods mount (``k8s_specs.TLS_MOUNT_PATH``).

    Args:
        name: Name of the Secret (``k8s_specs.tls_secret_name``).
        tls: The run's material.
        labels: Labels of the Secret (the DaskCluster's, so it is found with the run).
        owner: ``ownerReference`` fields (apiVersion, kind, name, uid) of the DaskCluster, so
            Kubernetes deletes the Secret with the cluster whatever happens to the job.

    Returns:
        A ``v1`` Secret of type ``kubernetes.io/tls``; it holds the private key, so it is
        handed to the API server and never logged.
    """

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    metadata: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
    if owner:
        metadata["ownerReferences"] = [{k: owner[k] for k in ("apiVersion", "kind", "name", "uid")}]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": metadata,
        "data": {CERT_KEY: b64(tls.cert_pem), KEY_KEY: b64(tls.key_pem), CA_KEY: b64(tls.ca_pem)},
        # Nobody edits a run's Secret; immutable Secrets also spare the kubelet its watch.
        "immutable": True,
    }
