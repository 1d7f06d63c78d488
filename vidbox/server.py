"""The HTTP server around the app: uvicorn, plus zero-copy file sending.

Most of what vidbox serves is media files, and a Python server that reads a file and writes it
to a socket copies every byte through user space twice. The kernel can do it in one step
(``sendfile``), as nginx does. uvicorn has no zero-copy support, so ``ZeroCopyHttpProtocol``
adds the ASGI "Zero Copy Send" extension (``http.response.zerocopysend``, from the ASGI spec)
on top of uvicorn's httptools protocol: after ``http.response.start`` with a Content-Length,
the app may send ``{"type": "http.response.zerocopysend", "file": <open file>, "offset": int,
"count": int}`` and the bytes go from the page cache straight to the socket through asyncio's
``loop.sendfile``.

The extension is advertised in ``scope["extensions"]`` only where it really works: asyncio's
own event loop (uvloop has no ``sendfile``), a plain TCP transport, and a uvicorn whose request
cycle looks as expected. Anywhere else the app sees no extension and streams the file itself,
so a change in uvicorn costs speed, never correctness.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from vidbox.config import Settings

ZEROCOPY_SEND: Final = "http.response.zerocopysend"

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
        "timeout_graceful_shutdown": 10,
        # asyncio's loop, not uvloop: only asyncio's implements loop.sendfile.
        "loop": "asyncio",
        "http": ZeroCopyHttpProtocol,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class ZeroCopyHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the ASGI zero-copy send extension, and request
    bodies handed to the app as the parser produced them (see ``_RequestBody``)."""

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None and _body_handoff_possible(cycle):
            body = _RequestBody(self.flow, cycle)
            cycle.receive = body.receive
            cycle.vidbox_body = body

    def on_body(self, body: bytes) -> None:
        handoff: _RequestBody | None = getattr(self.cycle, "vidbox_body", None)
        if handoff is None:
            super().on_body(body)
        elif not self.cycle.response_complete:
            handoff.feed(body)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if _zerocopy_possible(self.loop, cycle):
            cycle.scope.setdefault("extensions", {})[ZEROCOPY_SEND] = {}
            cycle.send = _zerocopy_send(self.loop, cycle, cycle.send)
        super()._start_asgi_task(cycle, app)


# Reading stops while this much of a body waits for the app: a bound on memory per request.
BODY_HIGH_WATER = 1024 * 1024

_BODY_CYCLE_ATTRIBUTES: Final = (
    "receive",
    "message_event",
    "more_body",
    "disconnected",
    "response_complete",
    "waiting_for_100_continue",
    "transport",
)


def _body_handoff_possible(cycle: Any) -> bool:
    return all(hasattr(cycle, name) for name in _BODY_CYCLE_ATTRIBUTES)


class _RequestBody:
    """A request body passed to the app chunk by chunk, as httptools produced them.

    uvicorn appends every chunk to a bytearray and copies that into a new bytes object for
    each ``http.request`` message: two extra copies of every uploaded byte, most of the cost
    of taking in an upload. Here each chunk is handed over as it is. Reading pauses past
    ``BODY_HIGH_WATER`` buffered bytes (uvicorn: 64 KiB, which paused and resumed the socket
    for nearly every chunk). Chunks that arrived before the client went away are still
    delivered, then ``http.disconnect``: an upload keeps every byte that reached the server.
    """

    def __init__(self, flow: Any, cycle: Any) -> None:
        self.flow, self.cycle = flow, cycle
        self.chunks: deque[bytes] = deque()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size > BODY_HIGH_WATER:
            self.flow.pause_reading()
        self.cycle.message_event.set()

    async def receive(self) -> dict[str, Any]:
        cycle = self.cycle
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        if not self.chunks and not cycle.disconnected and not cycle.response_complete:
            self.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.response_complete or (cycle.disconnected and not self.chunks):
            return {"type": "http.disconnect"}
        body = self.chunks.popleft() if self.chunks else b""
        self.size -= len(body)
        if self.size <= BODY_HIGH_WATER and not cycle.disconnected:
            self.flow.resume_reading()
        # A body cut off by a disconnect is never reported complete: more_body stays True and
        # the next receive() answers http.disconnect.
        more_body = bool(self.chunks) or cycle.more_body
        return {"type": "http.request", "body": body, "more_body": more_body}


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
