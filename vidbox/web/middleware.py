"""Per-request plumbing as one pure ASGI middleware (BaseHTTPMiddleware would buffer streams
and break Server-Sent Events): request id, access log, security headers, last-resort errors."""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidbox.logs import log_fields, request_id_var
from vidbox.web.errors import render_error

log = logging.getLogger("vidbox.web")
_GOOD_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Share links, invites and one-time sign-in links carry their secret in the path.
_SECRET_PATH = re.compile(r"^/(s|invite)/[^/]+(/enter/[^/]+)?")


def loggable_path(path: str) -> str:
    """The request path with any secret token in it replaced, fit for logs."""
    return _SECRET_PATH.sub(
        lambda m: f"/{m.group(1)}/<token>" + ("/enter/<token>" if m.group(2) else ""), path
    )


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Sent when the box's public address is https: browsers then never try it over plain http
# again (a year, renewed by every visit), so nobody on the path can strip TLS from a later
# visit. Not for subdomains: other hosts under the same name are not vidbox's to decide.
HSTS = ("Strict-Transport-Security", "max-age=31536000")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, https: bool = False) -> None:
        self.app = app
        self.headers = dict(SECURITY_HEADERS)
        if https:
            self.headers[HSTS[0]] = HSTS[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # Request ids only correlate log lines; they need not be unpredictable, and the
        # cryptographic generator's system call showed up in profiles of segment serving.
        request_id = given if _GOOD_ID.fullmatch(given) else f"{random.getrandbits(64):016x}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": None}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error", extra=log_fields(path=loggable_path(scope["path"])))
            if status["code"] is None:
                response = render_error(Request(scope), 500, None)
                await response(scope, receive, send_wrapper)
                status["code"] = 500
        finally:
            # No query string and no path tokens: logs must not hand out access.
            log.info(
                "request",
                extra=log_fields(
                    method=scope["method"],
                    path=loggable_path(scope["path"]),
                    status=status["code"],
                    ms=round((time.perf_counter() - started) * 1000, 1),
                ),
            )
            request_id_var.reset(token)
