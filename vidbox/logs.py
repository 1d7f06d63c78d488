"""Structured logging: one line per event, ``key=value`` pairs, with the request id.

The request id lives in a ContextVar set by the request-id middleware, so every log line written
while a request is handled (in any module) carries it without being passed around.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("vidbox_request_id", default=None)


# Characters a terminal or a log viewer acts on rather than shows: C0 and C1 controls, DEL and
# the Unicode line separators. A value from a request (a path, a header) holding one could
# end the line and forge another (a fake "setup link" on the admin's console), move the
# cursor over what was written, or retitle the terminal. They are written as escapes.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) <= 0xFF else f"\\u{ord(char):04x}"


def _format_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\') or _CONTROL.search(text):
        text = text.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + _CONTROL.sub(_escape_control, text) + '"'
    return text


def _format_traceback(text: str) -> str:
    """A traceback keeps its lines, each indented so none can pass for a line of its own
    (an exception's message may quote a request), with other controls escaped."""
    lines = text.split("\n")
    return "\n".join("  " + _CONTROL.sub(_escape_control, line) for line in lines)


class KeyValueFormatter(logging.Formatter):
    """``2026-11-21T06:00:00Z INFO vidbox.web msg="..." request_id=... k=v``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        parts = [stamp, record.levelname, record.name, "msg=" + _format_value(record.getMessage())]
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            parts.append(f"request_id={request_id}")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            parts += [f"{k}={_format_value(v)}" for k, v in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + _format_traceback(self.formatException(record.exc_info))
        return line


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log prints query strings (which may hold tokens); ours does not.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def log_fields(**fields: Any) -> dict[str, Any]:
    """``logger.info("msg", extra=log_fields(a=1))`` attaches key=value pairs to a line."""
    return {"fields": fields}
