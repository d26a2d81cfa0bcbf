"""Every surface of the service over gRPC: the native API (`native`), the REST
dialects Envoy transcodes (`dialects`), and what they share: one way to build
an endpoint and answer its failures (`endpoint`, `stream`, `Surface`, the
error tables), conversions to protobuf (`convert`), lenient request parsing
(`lenient`), reflection, and the server process that serves them (`server`).
"""

from tasktrail.api._servicer import (
    ERROR_DOMAIN,
    Context,
    ErrorTable,
    GrpcErrors,
    Headers,
    HttpError,
    HttpErrors,
    Surface,
    caller_access,
    endpoint,
    grpc_code,
    http_metadata,
    rich_status,
    status_code,
    stream,
)

__all__ = [
    "ERROR_DOMAIN",
    "Context",
    "ErrorTable",
    "GrpcErrors",
    "Headers",
    "HttpError",
    "HttpErrors",
    "Surface",
    "caller_access",
    "endpoint",
    "grpc_code",
    "http_metadata",
    "rich_status",
    "status_code",
    "stream",
]
