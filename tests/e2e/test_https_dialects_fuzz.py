"""No request of any shape to the cloud (8443) or enterprise (9443) port gets
a 5xx or a body that is not JSON in the API's own error shape: random paths,
parameters (bytes that are not UTF-8 too), methods, bodies and headers,
with and without valid credentials."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasktrail.edge import sample
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SEGMENT = st.one_of(
    st.sampled_from(
        ["v1", "tasks", "crdb_tasks", "actions", "cancel", sample.DOC_TASK_ID, "", "..", "%2F", "%00", "x%00"]
    ),
    st.text(max_size=30).map(lambda s: urllib.parse.quote(s, safe="")),
    st.binary(max_size=12).map(lambda b: urllib.parse.quote_from_bytes(b, safe="")),
)
PATH = st.one_of(
    st.lists(SEGMENT, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts)),
    st.builds(lambda a: f"/v1/tasks/{a}", SEGMENT),
    st.builds(lambda a: f"/v1/crdb_tasks/{a}", SEGMENT),
    st.builds(lambda a: f"/v1/crdb_tasks/{a}/actions/cancel", SEGMENT),
)
QUERY = st.dictionaries(
    st.sampled_from(["verbose", "force", "limit", "x"]),
    st.one_of(
        st.sampled_from(["true", "false", "1", "maybe", "", "\x00"]), st.text(max_size=10), st.binary(max_size=8)
    ),
    max_size=3,
)
HEADERS = st.dictionaries(
    st.sampled_from(["content-type", "x-result-ttl", "accept", "x-api-key", "authorization"]),
    st.sampled_from(["application/grpc", "text/plain", "application/json", "10", "-1", "soon", "Basic !!", "x"]),
    max_size=2,
)
BODY = st.sampled_from([b"", b"{}", b"{bad", b"\xff\xfe", b'{"force": true}', b"[]"])
METHOD = st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE", "PATCH"])
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def clients(stack: Stack) -> Iterator[dict[str, tuple[httpx.Client, dict[str, str]]]]:
    keys = dict(line.split("=", 1) for line in (stack.data_dir / "dev-account.env").read_text().split() if "=" in line)
    user = (stack.data_dir / "dev-user").read_text().strip()
    trust = ssl.create_default_context(cafile=str(stack.ca))
    with (
        httpx.Client(base_url=stack.cloud, verify=trust, timeout=10) as cloud,
        httpx.Client(base_url=stack.crdb, verify=trust, timeout=10) as crdb,
    ):
        yield {
            "cloud": (cloud, {"x-api-key": keys["ACCOUNT_KEY"], "x-api-secret-key": keys["SECRET_KEY"]}),
            "crdb": (crdb, {"authorization": "Basic " + base64.b64encode(user.encode()).decode()}),
        }


def in_shape(dialect: str, body: Any) -> bool:
    if dialect == "cloud":
        error = body.get("error") if isinstance(body, dict) else None
        return isinstance(error, dict) and set(error) == {"type", "status", "description"}
    return isinstance(body, dict) and set(body) == {"error_code", "description"}


@pytest.mark.parametrize("dialect", ["cloud", "crdb"])
@FUZZ
@given(
    path=PATH,
    query=QUERY,
    headers=HEADERS,
    body=BODY,
    method=METHOD,
    signed=st.booleans(),
)
def test_no_request_gets_a_5xx_or_another_shape(
    clients: dict[str, tuple[httpx.Client, dict[str, str]]],
    dialect: str,
    path: str,
    query: dict[str, str | bytes],
    headers: dict[str, str],
    body: bytes,
    method: str,
    signed: bool,
) -> None:
    http, credentials = clients[dialect]
    # Absolute: a relative URL may not start with "//".
    url = str(http.base_url).rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    sent = {**(credentials if signed else {}), **headers}
    reply = http.request(method, url, headers=sent, content=body if method != "GET" else None)
    assert reply.status_code < 500, (url, sent, reply.text)
    assert reply.headers["content-type"].startswith("application/json"), (url, reply.headers)
    answer = json.loads(reply.content)
    if reply.status_code >= 400:
        assert in_shape(dialect, answer), (url, answer)
