"""Per-run Dask TLS: the certificate material, its Secret, and Dask speaking it.

The pods' side is checked with the very variables ``k8s_specs`` puts into scheduler and
worker pods (``tls_env``), turned into Dask configuration the way Dask reads its environment,
so a misspelt variable name fails here and not on a cluster.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from pathlib import Path

import dask
import distributed
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fixtures.tls import handshake_without_certificate

from intccms.config.k8s_specs import (
    TLS_MOUNT_PATH,
    make_cluster_spec,
    tls_env,
    tls_secret_name,
)
from intccms.config.kubernetes import KubernetesClusterConfig
from intccms.execute.backends.k8s_tls import VALID_DAYS, make_cluster_tls, make_tls_secret

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]


def test_the_certificate_is_signed_by_the_runs_own_ca_for_every_role() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    tls = make_cluster_tls("intccms-r1", now=now)
    ca = x509.load_pem_x509_certificate(tls.ca_pem.encode())
    cert = x509.load_pem_x509_certificate(tls.cert_pem.encode())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH}
    key = ec.EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private = load_pem_private_key(tls.key_pem.encode(), None)
    assert isinstance(private, key) and private.public_key() == cert.public_key()
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=VALID_DAYS, minutes=5)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    # A new CA per run: another run's certificate is not trusted.
    other = x509.load_pem_x509_certificate(make_cluster_tls("intccms-r1").ca_pem.encode())
    assert other.public_key() != ca.public_key()


def test_no_key_material_in_reprs_or_the_clients_security() -> None:
    tls = make_cluster_tls("intccms-r1")
    for text in (repr(tls), str(tls), repr(tls.security())):
        assert "BEGIN" not in text and tls.key_pem[40:80] not in text
    assert tls.security().require_encryption is True


def test_the_secret_holds_the_pems_owned_by_the_daskcluster() -> None:
    tls = make_cluster_tls("intccms-r1")
    owner = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster", "name": "intccms-r1",
             "uid": "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a", "controller": "ignored"}
    secret = make_tls_secret("intccms-r1-tls", tls, labels={"team": "cms"}, owner=owner)
    assert secret["type"] == "kubernetes.io/tls" and secret["immutable"] is True
    assert secret["metadata"] == {"name": "intccms-r1-tls", "labels": {"team": "cms"},
                                  "ownerReferences": [{k: owner[k] for k in ("apiVersion", "kind", "name", "uid")}]}
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"tls.crt": tls.cert_pem, "tls.key": tls.key_pem, "ca.crt": tls.ca_pem}


def test_the_daskcluster_references_the_secret_by_name_only() -> None:
    cfg = KubernetesClusterConfig()
    spec = make_cluster_spec(cfg, "r1")
    assert tls_secret_name(cfg, "r1") == "intccms-r1-tls"
    assert "BEGIN" not in json.dumps(spec)


def _write_pod_files(folder: Path) -> distributed.Security:
    """The Secret's files as the kubelet writes them; returns the job's client credentials."""
    tls = make_cluster_tls("intccms-r1")
    folder.mkdir(mode=0o700)
    for name, text in (("tls.crt", tls.cert_pem), ("tls.key", tls.key_pem), ("ca.crt", tls.ca_pem)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o400)
    return tls.security()


def _dotted(tree: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_pods_configured_by_tls_env_accept_the_job_and_refuse_strangers(tmp_path: Path) -> None:
    """Scheduler and worker with the pods' variables (``tls_env``) and ``--protocol tls``:
    the job's client with the run's certificate computes; a client of another CA, a client
    without a certificate and a plain ``tcp://`` client are refused."""
    folder = tmp_path / "dask-tls"
    job_security = _write_pod_files(folder)
    env = {k.replace(TLS_MOUNT_PATH, str(folder)): v.replace(TLS_MOUNT_PATH, str(folder))
           for k, v in tls_env().items()}
    # Dask's own reading of the variables, applied key by key over its defaults.
    pod_config = _dotted(dask.config.collect_env(env))

    async def run() -> dict[str, object]:
        seen: dict[str, object] = {}
        with dask.config.set(pod_config):
            pod_security = distributed.Security()
        assert pod_security.require_encryption is True
        async with distributed.Scheduler(security=pod_security, protocol="tls", host="127.0.0.1",
                                         dashboard_address=":0") as scheduler, \
                distributed.Worker(scheduler.address, security=pod_security, protocol="tls",
                                   host="127.0.0.1", nthreads=1):
            seen["scheduler"] = scheduler.address
            async with distributed.Client(scheduler.address, security=job_security,
                                          asynchronous=True, timeout=10) as client:
                seen["result"] = await client.submit(sum, [1, 2])
                seen["workers"] = list(client.scheduler_info()["workers"])
            with pytest.raises((OSError, TimeoutError)):
                await distributed.Client(scheduler.address, security=distributed.Security.temporary(),
                                         asynchronous=True, timeout=3)
            plain = "tcp://" + scheduler.address.split("://", 1)[1]
            with pytest.raises((OSError, TimeoutError)):
                await distributed.Client(plain, asynchronous=True, timeout=3)
            seen["no certificate"] = await asyncio.get_running_loop().run_in_executor(
                None, handshake_without_certificate, scheduler.address)
        return seen

    seen = asyncio.run(run())
    assert str(seen["scheduler"]).startswith("tls://")
    assert seen["result"] == 3
    assert all(str(w).startswith("tls://") for w in seen["workers"])  # type: ignore[attr-defined]
    # An alert "certificate required" or a closed connection, depending on timing: never data.
    assert str(seen["no certificate"]).startswith("refused"), seen["no certificate"]
