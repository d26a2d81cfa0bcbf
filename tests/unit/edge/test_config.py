"""Envoy's configuration, as `up` renders it: checked by Envoy itself (`--mode
validate`), and for what must never be public."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tasktrail.edge import config, tls


def rendered(tmp_path: Path, **overrides: object) -> tuple[Path, dict[str, object]]:
    certificate = tls.local_certificate(tmp_path / "tls", ["localhost", "127.0.0.1"])
    settings: dict[str, object] = {
        "backends": [("127.0.0.1", 50061)],
        "tls_cert": certificate.cert,
        "tls_key": certificate.key,
        **overrides,
    }
    path = config.write(config.EdgeConfig(**settings), tmp_path / "envoy")  # type: ignore[arg-type]
    return path, yaml.safe_load(path.read_text())


def validate(path: Path) -> None:
    done = subprocess.run(
        [config.envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_admin_interface_stays_on_loopback_when_every_port_is_public(tmp_path: Path) -> None:
    path, parsed = rendered(tmp_path, host="0.0.0.0")
    validate(path)
    assert parsed["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"  # type: ignore[index]
    listeners = parsed["static_resources"]["listeners"]  # type: ignore[index]
    assert {x["address"]["socket_address"]["address"] for x in listeners} == {"0.0.0.0"}
    _, moved = rendered(tmp_path, host="0.0.0.0", admin_host="10.0.0.5")
    assert moved["admin"]["address"]["socket_address"]["address"] == "10.0.0.5"  # type: ignore[index]


def test_tls_on_every_port_and_client_certificates_on_3000(tmp_path: Path) -> None:
    ca = tls.local_certificate(tmp_path / "clients", ["clients"]).ca
    path, parsed = rendered(tmp_path, rest_tls=True, grpc_tls=True, client_ca=ca)
    validate(path)
    listeners = {x["name"]: x for x in parsed["static_resources"]["listeners"]}  # type: ignore[index]
    rest = listeners["controlplane_rest"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert rest["require_client_certificate"] is True
    assert rest["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == str(ca)
    grpc_tls = listeners["grpc"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert grpc_tls["common_tls_context"]["alpn_protocols"] == ["h2"]


def test_the_edge_is_bounded(tmp_path: Path) -> None:
    path, parsed = rendered(tmp_path)
    validate(path)
    monitors = {m["name"] for m in parsed["overload_manager"]["resource_monitors"]}  # type: ignore[index]
    assert "envoy.resource_monitors.global_downstream_max_connections" in monitors
    for listener in parsed["static_resources"]["listeners"]:  # type: ignore[index]
        assert listener["per_connection_buffer_limit_bytes"] == 1 << 20
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        assert manager["use_remote_address"] is True
        assert manager["normalize_path"] is True
        assert manager["request_headers_timeout"] == "10s"
        assert manager["http2_protocol_options"]["max_concurrent_streams"] == 10_000


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("localhost:3000", True), ("127.0.0.1:3000", True), ("[::1]:3000", True), ("10.1.2.3", True),
     ("tasks.example.com", True), ("TASKS.example.com:443", True), ("attacker.example", False),
     ("localhost.attacker.example", False), ("tasks.example.com.evil", False)],
)  # fmt: skip
def test_port_3000_answers_only_for_its_own_names(host: str, allowed: bool) -> None:
    assert bool(re.match(config.allowed_hosts("127.0.0.1", ["tasks.example.com"]), host)) is allowed
