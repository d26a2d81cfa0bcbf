"""The error answers of the Goa framework, which the pgEdge Control Plane API is
built on: its designed errors (`{"name", "message"}`) and its request
validation errors (six fields), with the messages Goa writes; and the Go
behaviour they show (github.com/google/uuid's parser, `%q` quoting).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence

from tasktrail.api import HttpError
from tasktrail.core.ids import format_uuid

# Designed errors of the API and their HTTP status.
DESIGNED_STATUS = {
    "invalid_input": 400,
    "operation_not_supported": 400,
    "not_found": 404,
    "operation_already_in_progress": 409,
    "server_error": 500,
}

_INT = re.compile(r"[+-]?[0-9]+")
_CANONICAL_RFC4122 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_HEX = frozenset("0123456789abcdefABCDEF")


def designed(name: str, message: str) -> HttpError:
    """An APIError: `{"name", "message"}` with the `goa-error` header."""
    return HttpError(DESIGNED_STATUS[name], {"name": name, "message": message}, (("goa-error", name),))


def new_error_id() -> str:
    """Goa's error ids: 6 random bytes, base64url without padding (8 characters)."""
    return base64.urlsafe_b64encode(os.urandom(6)).decode().rstrip("=")


def framework(name: str, message: str, status: int = 400) -> HttpError:
    """A Goa ServiceError, as its default error encoder writes it."""
    body = {
        "name": name,
        "id": new_error_id(),
        "message": message,
        "temporary": False,
        "timeout": False,
        "fault": status >= 500,
    }
    return HttpError(status, body, (("goa-error", name),))


class Validation:
    """Collects request errors the way Goa merges them: the first error's name,
    every message joined with "; "."""

    __slots__ = ("_messages", "_name")

    def __init__(self) -> None:
        self._name: str | None = None
        self._messages: list[str] = []

    def add(self, name: str, message: str) -> None:
        if self._name is None:
            self._name = name
        self._messages.append(message)

    def check(self) -> None:
        if self._name is not None:
            raise framework(self._name, "; ".join(self._messages))

    # -- the checks Goa's generated decoders make ---------------------------------

    def max_length(self, name: str, value: str, limit: int) -> None:
        n = len(value)  # Go counts runes, as Python counts code points
        if n > limit:
            self.add(
                "invalid_length",
                f"length of {name} must be lesser or equal than {limit} but got value {go_quote(value)} (len={n})",
            )

    def uuid(self, name: str, value: str) -> str | None:
        """Goa's uuid format check; the canonical form when it passes."""
        if _CANONICAL_RFC4122.fullmatch(value):  # the common case, on the hot path
            return value
        canonical, problem = go_uuid_parse(value)
        if canonical is not None and uuid_variant_name(canonical) != "RFC4122":
            problem = f"uuid: expected RFC4122 format, but got {uuid_variant_name(canonical)}"
            canonical = None
        elif problem is not None:
            problem = f"uuid: {value}: {problem}"
        if problem is not None:
            self.add("invalid_format", f"{name} must be formatted as a uuid but got value {go_quote(value)}, {problem}")
        return canonical

    def integer(self, name: str, raw: str) -> int | None:
        """strconv.ParseInt(raw, 10, 64), as Goa decodes an integer parameter."""
        if _INT.fullmatch(raw) and _INT64_MIN <= int(raw) <= _INT64_MAX:
            return int(raw)
        self.add("invalid_field_type", f"invalid value {go_quote(raw)} for {go_quote(name)}, must be a integer")
        return None

    def enum(self, name: str, value: str, allowed: Sequence[str]) -> bool:
        if value in allowed:
            return True
        choices = ", ".join(go_quote(a) for a in allowed)
        self.add("invalid_enum_value", f"value of {name} must be one of {choices} but got value {go_quote(value)}")
        return False


# -- Go, as the original's answers show it ---------------------------------------


def go_uuid_parse(text: str) -> tuple[str | None, str | None]:
    """Parse as github.com/google/uuid's Parse does.

    Returns (canonical form, None), or (None, the error text Go would give).
    It accepts the canonical form, 32 hex digits, `{…}` and `urn:uuid:…`.
    """
    n = len(text.encode("utf-8"))
    s = text
    if n == 32:
        if not all(c in _HEX for c in s):
            return None, "invalid UUID format"
        return format_uuid(int(s, 16)), None
    if n == 36 + 9:
        if s[:9].lower() != "urn:uuid:":
            return None, f"invalid urn prefix: {go_quote(s[:9])}"
        s = s[9:]
    elif n == 36 + 2:
        s = s[1:]
    elif n != 36:
        return None, f"invalid UUID length: {n}"
    if len(s) < 36 or s[8] != "-" or s[13] != "-" or s[18] != "-" or s[23] != "-":
        return None, "invalid UUID format"
    digits = s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
    if len(digits) != 32 or not all(c in _HEX for c in digits):
        return None, "invalid UUID format"
    return format_uuid(int(digits, 16)), None


def uuid_variant_name(canonical: str) -> str:
    """The variant as google/uuid names it."""
    b8 = int(canonical[19:21], 16)
    if b8 & 0xC0 == 0x80:
        return "RFC4122"
    if b8 & 0xE0 == 0xC0:
        return "Microsoft"
    if b8 & 0xE0 == 0xE0:
        return "Future"
    return "Reserved"


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """A string quoted as Go's %q (and %#v of a string) quotes it."""
    out = ['"']
    for ch in text:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            cp = ord(ch)
            if cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif cp <= 0xFFFF:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)
