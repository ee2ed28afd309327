"""The cluster file (stack.hosts) and trial certificates (stack.certs); the cluster runs in tests/e2e."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from robolake.errors import ConfigError
from robolake.stack.certs import make_certs
from robolake.stack.hosts import LAKEFS_SECRETS, host_specs, load_cluster, required_secrets

SECRETS = {
    k: f"{k.lower()}-value"
    for k in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "ROBOLAKE_WEBHOOK_TOKEN", "ROBOLAKE_ADMIN_TOKEN")
}

BINARIES = {"minio": Path("/bin/minio"), "lakefs": Path("/bin/lakefs")}


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "cluster.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _doc(**extra: Any) -> dict[str, Any]:
    hosts = [{"name": f"h{i}", "address": f"10.0.0.{i}", "data": f"d{i}", "accelerator": i == 1} for i in (1, 2, 3)]
    return {"hosts": hosts, **extra}


def test_a_cluster_file_names_hosts_drives_and_ports(tmp_path: Path) -> None:
    cluster = load_cluster(_write(tmp_path, _doc(minio={"drives": 2, "port": 9200})))
    assert [h.name for h in cluster.hosts] == ["h1", "h2", "h3"] and cluster.hosts[1].data == tmp_path / "d2"
    assert cluster.drive_urls()[:2] == [
        f"https://10.0.0.1:9200{tmp_path}/d1/drive1",
        f"https://10.0.0.1:9200{tmp_path}/d1/drive2",
    ]
    assert len(cluster.drive_urls()) == 6 and cluster.accelerator_url() == "https://10.0.0.1:9100"
    assert cluster.ca == tmp_path / "certs" / "ca.crt"


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"hosts": []}, "names no hosts"),
        (_doc()["hosts"][:2], "names no hosts"),
        ({"hosts": _doc()["hosts"][:2]}, "needs at least 3"),
        (
            {"hosts": [*_doc()["hosts"][:2], {"name": "h3", "address": "not-an-ip", "data": "d"}]},
            "'not-an-ip' is not an IP",
        ),
        ({"hosts": [*_doc()["hosts"][:2], {"name": "h3", "address": "10.0.0.9"}]}, "needs name, address and data"),
        ({"hosts": [*_doc()["hosts"][:2], {"name": "h1", "address": "10.0.0.9", "data": "d"}]}, "must be unique"),
        (_doc(minio={"port": 70000}), "port 70000 is not a port"),
        (_doc(minio={"drives": 0}), "must be 1 to 16"),
        (_doc(lakefs={"hooks_port": "x"}), "lakefs: hooks_port 'x' is not a port"),
        (
            {"hosts": [{**h, "lakefs": True} for h in _doc()["hosts"]]},
            "lakefs: true on h1, h2, h3; one host runs it",
        ),
    ],
)
def test_a_bad_cluster_file_is_one_clear_error(tmp_path: Path, doc: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_cluster(_write(tmp_path, doc))


def test_a_host_id_outside_the_file_and_missing_secrets_are_refused(tmp_path: Path) -> None:
    cluster = load_cluster(_write(tmp_path, _doc()))
    with pytest.raises(ConfigError, match=r"--host-id 4 is not a host .* hosts 1 to 3 \(1=h1, 2=h2, 3=h3\)"):
        cluster.host(4)
    with pytest.raises(ConfigError, match="no default secrets: set ROBOLAKE_WEBHOOK_TOKEN, ROBOLAKE_ADMIN_TOKEN"):
        required_secrets({"MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "p"})


def test_certificates_are_valid_for_each_host_and_keys_private(tmp_path: Path) -> None:
    cluster = load_cluster(_write(tmp_path, _doc()))
    written = make_certs(cluster)
    assert len(written) == 4 and make_certs(cluster) == []  # what exists is kept
    ca = x509.load_pem_x509_certificate(cluster.ca.read_bytes())
    for host in cluster.hosts:
        cert = x509.load_pem_x509_certificate(cluster.cert(host).read_bytes())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ipaddress.ip_address(host.address) in names.get_values_for_type(x509.IPAddress)
        assert host.name in names.get_values_for_type(x509.DNSName)
        assert cluster.key(host).stat().st_mode & 0o777 == 0o600
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cluster.cert(host), cluster.key(host))  # the pair matches
    assert (cluster.tls_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    assert len(make_certs(cluster, renew=True)) == 3


def test_each_host_runs_its_node_and_the_accelerator_where_asked(tmp_path: Path) -> None:
    cluster = load_cluster(_write(tmp_path, _doc()))
    make_certs(cluster)
    first = host_specs(cluster, cluster.host(1), BINARIES, SECRETS)
    second = host_specs(cluster, cluster.host(2), BINARIES, SECRETS)
    assert [s.name for s in first] == ["minio", "accelerator"] and [s.name for s in second] == ["minio"]
    minio = first[0]
    assert minio.argv[:5] == ["/bin/minio", "server", "--address", "10.0.0.1:9000", "--console-address"]
    assert minio.argv[-6:] == cluster.drive_urls()
    certs = Path(minio.argv[minio.argv.index("--certs-dir") + 1])
    assert (certs / "public.crt").read_bytes() == cluster.cert(cluster.host(1)).read_bytes()
    assert (certs / "CAs" / "ca.crt").is_file() and (certs / "private.key").stat().st_mode & 0o777 == 0o600
    # MinIO wants every MINIO_* value identical on all hosts.
    assert {k: v for k, v in minio.env.items() if k.startswith("MINIO_")} == {
        k: v for k, v in second[0].env.items() if k.startswith("MINIO_")
    }
    assert minio.env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_ROBOLAKE"] == "https://10.0.0.1:9110/minio/events"
    accel = first[1].argv
    assert [a for a in accel if a.startswith("--upstream=")] == [
        f"--upstream=https://10.0.0.{i}:9000" for i in (1, 2, 3)
    ]
    assert "--ca-file" in accel and "--tls-cert" in accel
    assert not any(secret in " ".join(spec.argv) for spec in first for secret in SECRETS.values())


def test_the_lakefs_host_runs_postgres_lakefs_over_tls_and_the_hooks_on_loopback(tmp_path: Path) -> None:
    doc = _doc()
    doc["hosts"][1]["lakefs"] = True
    cluster = load_cluster(_write(tmp_path, doc))
    make_certs(cluster)
    host = cluster.host(2)
    with pytest.raises(ConfigError, match="set LAKEFS_AUTH_ENCRYPT_SECRET_KEY, ROBOLAKE_LAKEFS_ACCESS_KEY_ID"):
        required_secrets(SECRETS, host)
    assert required_secrets(SECRETS, cluster.host(1)) == SECRETS  # only the lakeFS host needs lakeFS's secrets
    secrets = {**SECRETS, **{k: f"{k.lower()}-value" for k in LAKEFS_SECRETS}}
    # A managed database instead of the host's own PostgreSQL: no postgres process.
    managed = {**secrets, "ROBOLAKE_LAKEFS_DATABASE_URL": "postgres://lakefs:pw@db.internal:5432/lakefs"}
    specs = host_specs(cluster, host, BINARIES, required_secrets(managed, host))
    assert [s.name for s in specs] == ["minio", "lakefs", "hooks"]
    lakefs, hooks = specs[1], specs[2]
    config_path = Path(lakefs.argv[lakefs.argv.index("--config") + 1])
    assert config_path.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(config_path.read_text())
    assert config["listen_address"] == "10.0.0.2:8000"
    assert config["database"] == {
        "type": "postgres",
        "postgres": {"connection_string": managed["ROBOLAKE_LAKEFS_DATABASE_URL"]},
    }
    assert config["tls"] == {"enabled": True, "cert_file": str(cluster.cert(host)), "key_file": str(cluster.key(host))}
    assert config["blockstore"]["s3"]["endpoint"] == "https://10.0.0.1:9100"  # the accelerator, on host 1
    assert lakefs.env["SSL_CERT_FILE"] == str(cluster.ca)
    assert lakefs.env["LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN"] == secrets["ROBOLAKE_HOOKS_TOKEN"]
    assert (
        hooks.host == "127.0.0.1" and hooks.argv[hooks.argv.index("--lakefs-endpoint") + 1] == "https://10.0.0.2:8000"
    )
    assert not any(v in " ".join(spec.argv) for spec in specs for v in managed.values())
