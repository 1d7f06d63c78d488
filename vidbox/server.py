"""The HTTP server around the app: uvicorn, with media sent and uploads read without copies.

Most of what vidbox serves is media files, and a Python server that reads a file and writes it
to a socket copies every byte through user space twice. The kernel can do it in one step
(``sendfile``), as nginx does. uvicorn has no zero-copy support, so ``ZeroCopyHttpProtocol``
adds the ASGI "Zero Copy Send" extension (``http.response.zerocopysend``, from the ASGI spec)
on top of uvicorn's httptools protocol: after ``http.response.start`` with a Content-Length,
the app may send ``{"type": "http.response.zerocopysend", "file": <open file>, "offset": int,
"count": int}`` and the bytes go from the page cache straight to the socket through asyncio's
``loop.sendfile``.

Uploads take the opposite way: request bodies reach the app as the parser produced them, and
a body of known length can be read from the socket straight into the app's buffers, or moved
into a file without entering Python at all (``vidbox.request_body``).

The extensions are advertised in ``scope["extensions"]`` only where they really work: asyncio's
own event loop (uvloop has no ``sendfile``), a plain TCP transport, and a uvicorn whose request
cycle looks as expected. Anywhere else the app sees no extension and streams the file itself,
so a change in uvicorn costs speed, never correctness.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vidbox import request_body

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from vidbox.config import Settings

ZEROCOPY_SEND: Final = "http.response.zerocopysend"
# ``{"event": asyncio.Event}``, set once the server begins to shut down. A response that never
# ends by itself (an event stream) watches it and finishes; otherwise it would hold the
# shutdown until uvicorn's timeout cancels it, and a container manager kills the process
# before the app's own shutdown (the job runner) runs.
SERVER_STOPPING: Final = "vidbox.server.stopping"

log = logging.getLogger(__name__)

# The parts of uvicorn's RequestResponseCycle the zero-copy send relies on.
_CYCLE_ATTRIBUTES: Final = ("send", "transport", "flow", "scope", "expected_content_length")


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration `vidbox serve` runs with (tests use it too)."""
    trusted = settings.server.trusted_proxies
    options: dict[str, Any] = {
        "host": settings.server.host,
        "port": settings.server.port,
        "log_config": None,
        "access_log": False,  # vidbox logs requests itself, with tokens redacted
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "server_header": False,
        # Below the 10 s Docker and Podman give between SIGTERM and SIGKILL, so the app's own
        # shutdown still runs after requests that outlast it are cancelled.
        "timeout_graceful_shutdown": 5,
        # asyncio's loop, not uvloop: only asyncio's implements loop.sendfile.
        "loop": "asyncio",
        "http": ZeroCopyHttpProtocol,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class ZeroCopyHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the ASGI zero-copy send extension, and request
    bodies handed to the app as the parser produced them or read by the app itself (see
    ``vidbox.request_body``), and each request told when the server begins to shut down."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.stopping = asyncio.Event()

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:
            cycle.vidbox_body = request_body.attach(self, cycle, self.headers)

    def on_body(self, body: bytes) -> None:
        handoff: request_body.RequestBody | None = getattr(self.cycle, "vidbox_body", None)
        if handoff is None:
            super().on_body(body)
        elif not self.cycle.response_complete:
            handoff.feed(body)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        cycle.scope.setdefault("extensions", {})[SERVER_STOPPING] = {"event": self.stopping}
        if _zerocopy_possible(self.loop, cycle):
            cycle.scope.setdefault("extensions", {})[ZEROCOPY_SEND] = {}
            cycle.send = _zerocopy_send(self.loop, cycle, cycle.send)
        super()._start_asgi_task(cycle, app)


def _zerocopy_possible(loop: asyncio.AbstractEventLoop, cycle: Any) -> bool:
    return (
        isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        and all(hasattr(cycle, name) for name in _CYCLE_ATTRIBUTES)
        and cycle.transport.get_extra_info("sslcontext") is None
        and cycle.transport.get_extra_info("socket") is not None
    )


def _zerocopy_send(
    loop: asyncio.AbstractEventLoop,
    cycle: Any,
    send: Callable[[Any], Awaitable[None]],
) -> Callable[[Any], Awaitable[None]]:
    async def send_with_zerocopy(message: Any) -> None:
        if message["type"] != ZEROCOPY_SEND:
            await send(message)
            return
        more_body = message.get("more_body", False)
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if cycle.disconnected:
            return
        file, offset = message["file"], message.get("offset", 0)
        count = message.get("count")
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if cycle.scope["method"] != "HEAD" and count > 0:
            if count > cycle.expected_content_length:
                raise RuntimeError("zero-copy send longer than Content-Length")
            if cycle.transport.is_closing():
                cycle.disconnected = True
                return
            try:
                sent = await loop.sendfile(cycle.transport, file, offset, count)
            except OSError as exc:
                # The client left mid-file: the connection cannot be reused.
                log.debug("zero-copy send stopped: %s", exc)
                cycle.transport.close()
                cycle.disconnected = True
                return
            cycle.expected_content_length -= sent
        await send({"type": "http.response.body", "body": b"", "more_body": more_body})

    return send_with_zerocopy
