"""The HTTP server around the app: uvicorn, with media sent and uploads read without copies.

Most of what vidbox serves is media files, and a Python server that reads a file and writes it
to a socket copies every byte through user space twice. The kernel can do it in one step
(``sendfile``), as nginx does. uvicorn has no zero-copy support, so ``ZeroCopyHttpProtocol``
adds the ASGI "Zero Copy Send" extension (``http.response.zerocopysend``, from the ASGI spec)
on top of uvicorn's httptools protocol: after ``http.response.start`` with a Content-Length,
the app may send ``{"type": "http.response.zerocopysend", "file": <open file>, "offset": int,
"count": int}`` and the bytes go from the page cache straight to the socket through asyncio's
``loop.sendfile``.

Uploads take the opposite way: request bodies reach the app as the parser produced them
(``_RequestBody``), and ``BODY_READINTO`` reads a body of known length from the socket straight
into the app's own buffers.

The extensions are advertised in ``scope["extensions"]`` only where they really work: asyncio's
own event loop (uvloop has no ``sendfile``), a plain TCP transport, and a uvicorn whose request
cycle looks as expected. Anywhere else the app sees no extension and streams the file itself,
so a change in uvicorn costs speed, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from vidbox.config import Settings

ZEROCOPY_SEND: Final = "http.response.zerocopysend"
# vidbox's own extension: ``scope["extensions"][BODY_READINTO]["readinto"]`` is an async
# ``readinto(buffer) -> int`` that fills ``buffer`` with the next bytes of a request body of
# known length straight from the socket (0 once the body is read; OSError if the client goes).
# For uploads: it skips the parser's copy of every byte and most per-chunk work.
BODY_READINTO: Final = "vidbox.http.request.readinto"

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
            body = _RequestBody(self, cycle, _content_length(self.headers))
            cycle.receive = body.receive
            cycle.vidbox_body = body
            if body.length is not None and _direct_read_possible(self):
                extensions = cycle.scope.setdefault("extensions", {})
                extensions[BODY_READINTO] = {"readinto": body.readinto}

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

    def __init__(self, protocol: Any, cycle: Any, length: int | None) -> None:
        self.protocol, self.flow, self.cycle = protocol, protocol.flow, cycle
        self.length = length  # Content-Length, None for a chunked body
        self.chunks: deque[bytes | memoryview] = deque()
        self.size = 0  # bytes in self.chunks
        self.parsed = 0  # body bytes that went through the parser
        self.direct = 0  # body bytes readinto() took from the socket itself
        self.keep_alive: bool | None = None  # the connection's, while readinto() owns the socket

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self.parsed += len(chunk)
        if self.size > BODY_HIGH_WATER:
            self.flow.pause_reading()
        self.cycle.message_event.set()

    def _continue(self) -> None:
        cycle = self.cycle
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False

    async def receive(self) -> dict[str, Any]:
        cycle = self.cycle
        self._continue()
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

    async def readinto(self, buffer: memoryview) -> int:
        """Fill the front of ``buffer`` with the next body bytes; returns how many, 0 at the end
        of the body. Raises ConnectionResetError when the client leaves mid-body.

        Bytes the parser already took come first. Then the socket is the body's: reading
        through the transport pauses, bytes go from the socket into ``buffer``, and once the
        last one is in, the parser starts afresh for the next request on the connection. If
        the app answers before reading the whole body, the connection closes after the answer
        (``keep_alive`` is off meanwhile): the parser never saw the rest of the body.
        """
        self._continue()
        if self.chunks:
            return self._take_chunk(buffer)
        assert self.length is not None
        unread = self.length - self.parsed - self.direct
        if unread <= 0 or not buffer:
            return 0
        cycle = self.cycle
        if cycle.disconnected or cycle.response_complete or cycle.transport.is_closing():
            raise ConnectionResetError("the client is gone")
        if self.keep_alive is None:
            self.flow.pause_reading()
            self.keep_alive, cycle.keep_alive = cycle.keep_alive, False
        # A descriptor of our own for the socket: should the transport close while this call
        # waits, its number could be reused by another connection, whose bytes must never be
        # read here.
        fd = os.dup(cycle.transport.get_extra_info("socket").fileno())
        try:
            while True:
                try:
                    got = os.readv(fd, [buffer[:unread]])
                    break
                except BlockingIOError:
                    await _readable(fd)
                except OSError:
                    self._lost()
                    raise
        finally:
            os.close(fd)
        if got == 0:
            self._lost()
            raise ConnectionResetError("the client closed the connection mid-body")
        self.direct += got
        if got == unread:
            self._body_done()
        return got

    def _take_chunk(self, buffer: memoryview) -> int:
        chunk = self.chunks[0]
        taken = min(len(buffer), len(chunk))
        buffer[:taken] = chunk[:taken]
        if taken == len(chunk):
            self.chunks.popleft()
        else:
            self.chunks[0] = memoryview(chunk)[taken:]
        self.size -= taken
        if self.size <= BODY_HIGH_WATER and self.keep_alive is None:
            self.flow.resume_reading()
        return taken

    def _body_done(self) -> None:
        protocol, cycle = self.protocol, self.cycle
        # The old parser still waits for the bytes readinto() took: a new one reads the
        # connection's next request.
        protocol.parser = _new_parser(protocol)
        cycle.keep_alive, self.keep_alive = self.keep_alive, None
        protocol.on_message_complete()
        self.flow.resume_reading()

    def _lost(self) -> None:
        self.cycle.disconnected = True
        self.cycle.transport.close()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's length from the request headers; None when it is chunked or unclear."""
    lengths = [value for name, value in headers if name == b"content-length"]
    if len(lengths) != 1 or any(name == b"transfer-encoding" for name, _ in headers):
        return None
    try:
        length = int(lengths[0])
    except ValueError:
        return None
    return length if length >= 0 else None


def _direct_read_possible(protocol: Any) -> bool:
    transport = protocol.transport
    return (
        hasattr(protocol, "parser")
        and hasattr(protocol, "on_message_complete")
        and transport.get_extra_info("sslcontext") is None
        and transport.get_extra_info("socket") is not None
    )


def _new_parser(protocol: Any) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(protocol)
    # As uvicorn sets up its own parser.
    with contextlib.suppress(AttributeError):
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser


async def _readable(fd: int) -> None:
    """Wait until ``fd`` (not a transport's own descriptor) has bytes or an end of file."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


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
