"""Live log tails over REST: the text a dialect's follow endpoint streams, as a
stream of google.api.HttpBody that Envoy passes on chunk by chunk.

NDJSON (the default): one JSON line per entry, as the dialect's log endpoint
renders it plus its `entry_id`; `{"heartbeat": "<time>"}` lines; a last line
`{"end": {"task_status": "<status>"}}`; an error after the first line is
`{"error": <the dialect's error body>}`.

Server-Sent Events (with `Accept: text/event-stream`): `event: entry` with
`id: <entry_id>` and the entry as `data:`, `event: heartbeat`, `event: end`,
`event: error`. A browser's EventSource sends `Last-Event-ID` when it
reconnects, and the stream continues right after that entry.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from google.api import httpbody_pb2

from tasktrail.core import follow
from tasktrail.core.model import LogEntry, Status

NDJSON_TYPE = "application/x-ndjson"
SSE_TYPE = "text/event-stream"
# How long an EventSource waits before it reconnects (ms).
SSE_RETRY_MS = 2000


class Format(enum.Enum):
    NDJSON = NDJSON_TYPE
    SSE = SSE_TYPE


def choose(metadata: Any) -> tuple[Format, str | None]:
    """The format the client asked for (Accept), and the SSE resume point (Last-Event-ID)."""
    accept, last_event_id = "", None
    for key, value in metadata or ():
        if key == "accept" and isinstance(value, str):
            accept = value
        elif key == "last-event-id" and isinstance(value, str) and value.strip():
            last_event_id = value.strip()
    if SSE_TYPE in accept.lower():
        return Format.SSE, last_event_id
    return Format.NDJSON, None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _event(kind: str, data: Any, event_id: str | None = None) -> str:
    head = f"event: {kind}\n" + (f"id: {event_id}\n" if event_id else "")
    return f"{head}data: {_json(data)}\n\n"


class Writer:
    """Turns frames into the text of one format."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt

    def body(self, text: str) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(content_type=self.fmt.value, data=text.encode())

    def opening(self, heartbeat: Any) -> str:
        # A first chunk at once, so that the client has the headers before any entry.
        if self.fmt is Format.SSE:
            return f"retry: {SSE_RETRY_MS}\n\n" + self.heartbeat(heartbeat)
        return self.heartbeat(heartbeat)

    def entries(self, rendered: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        if self.fmt is Format.SSE:
            return "".join(_event("entry", item, entry_id) for entry_id, item in rendered)
        return "".join(_json(item) + "\n" for _, item in rendered)

    def heartbeat(self, at: Any) -> str:
        payload = {"heartbeat": at}
        return _event("heartbeat", payload) if self.fmt is Format.SSE else _json(payload) + "\n"

    def end(self, status: str) -> str:
        payload = {"end": {"task_status": status}}
        return _event("end", payload) if self.fmt is Format.SSE else _json(payload) + "\n"

    def error(self, body: Mapping[str, Any]) -> str:
        payload = {"error": body}
        return _event("error", payload) if self.fmt is Format.SSE else _json(payload) + "\n"


def _entries_chunk(
    writer: Writer, batch: list[LogEntry], render_entry: Callable[[LogEntry], dict[str, Any]]
) -> httpbody_pb2.HttpBody:
    rendered = [(e.entry_id, {**render_entry(e), "entry_id": e.entry_id}) for e in batch]
    return writer.body(writer.entries(rendered))


async def stream(
    frames: AsyncIterator[follow.Frame],
    writer: Writer,
    render_entry: Callable[[LogEntry], dict[str, Any]],
    render_time: Callable[[int], Any],
    status_word: Callable[[Status], str],
    error_body: Callable[[follow.Broken], Mapping[str, Any]],
    now: int,
    cache: follow.BatchCache[httpbody_pb2.HttpBody],
) -> AsyncIterator[httpbody_pb2.HttpBody]:
    """The chunks of one follow; `frames` has already started (errors before the
    first frame are the caller's to answer as a normal error)."""
    yield writer.body(writer.opening(render_time(now)))
    async for frame in frames:
        if isinstance(frame, follow.Entries):
            make = functools.partial(_entries_chunk, writer, frame.entries, render_entry)
            yield cache.get(frame, writer.fmt.value, make)
        elif isinstance(frame, follow.Beat):
            yield writer.body(writer.heartbeat(render_time(frame.at)))
        elif isinstance(frame, follow.Ended):
            yield writer.body(writer.end(status_word(frame.status)))
            return
        else:
            yield writer.body(writer.error(error_body(frame)))
            return
