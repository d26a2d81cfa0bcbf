"""How a tasktrail process logs: text for people, or one JSON object a line
(python-json-logger) for a log pipeline. JSON lines carry time, level, logger
and message, and a request's log its surface, method, code, duration, caller
(a token id or account id, never a secret) and Envoy's x-request-id, which
Envoy's access log carries too."""

from __future__ import annotations

import logging
import sys

LOG_FORMATS = ("auto", "json", "text")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int, format: str) -> None:
    """Log to standard error, in `format` (auto: text on a terminal, JSON elsewhere)."""
    if format == "auto":
        format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        from pythonjsonlogger.json import JsonFormatter  # only where it is used: CLI commands start fast

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
