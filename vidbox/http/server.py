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
into a file without entering Python at all (``vidbox.http.request_body``).

The extensions are advertised in ``scope["extensions"]`` only where they really work: asyncio's
own event loop (uvloop has no ``sendfile``), a plain TCP transport, and a uvicorn whose request
cycle looks as expected. Anywhere else the app sees no extension and streams the file itself,
so a change in uvicorn costs speed, never correctness.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any, ClassVar, Final

import uvicorn

from vidbox.http import request_body
from vidbox.http.limits import ClientCount, HeadMeter, Limits, check_head, refusal
from vidbox.http.uvicorn_internals import Connection, Request, Send
from vidbox.logs import log_fields
from vidbox.threads import ThreadPools

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from vidbox.config import Settings

ZEROCOPY_SEND: Final = "http.response.zerocopysend"
# ``{"event": asyncio.Event}``, set once the server begins to shut down. A response that never
# ends by itself (an event stream) watches it and finishes; otherwise it would hold the
# shutdown until uvicorn's timeout cancels it, and a container manager kills the process
# before the app's own shutdown (the job runner) runs.
SERVER_STOPPING: Final = "vidbox.server.stopping"

# The name it had before the package, as vidbox.http.limits logs under: one logger for the server.
log = logging.getLogger("vidbox.server")

# Seconds a request body still has to arrive once the server begins to stop. It is then cut
# off with the bytes received kept (see ``RequestBody.cut``), so that its request ends before
# uvicorn's graceful-shutdown timeout (below) cancels it: a cancelled upload answered 500 and
# logged a traceback.
SHUTDOWN_BODY_GRACE: Final = 3.0
GRACEFUL_SHUTDOWN_SECONDS: Final = 5

# How long a refused connection stays open after its answer, its input read and dropped.
REFUSAL_LINGER_SECONDS: Final = 2.0


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration `vidbox serve` runs with (tests use it too). Run it with
    ``Server``, which owns the worker threads of the run."""
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
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        # asyncio's loop, not uvloop: only asyncio's implements loop.sendfile.
        "loop": "asyncio",
        "http": protocol_with(Limits.from_settings(settings), ThreadPools()),
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def protocol_with(limits: Limits, threads: ThreadPools) -> type[ZeroCopyHttpProtocol]:
    """The protocol class for one server, with its limits and threads (uvicorn builds it with
    fixed arguments, so they travel as class attributes)."""
    attributes = {"limits": limits, "threads": threads}
    return type("VidboxHttpProtocol", (ZeroCopyHttpProtocol,), attributes)


class Server(uvicorn.Server):
    """uvicorn's server, which opens the worker threads of its protocol's ``ThreadPools`` for
    its run (``to_thread`` work included) and shuts them down once it has stopped."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        threads: ThreadPools | None = getattr(self.config.http, "threads", None)
        if threads is not None:
            threads.install_default(asyncio.get_running_loop())
        try:
            await super().serve(sockets)
        finally:
            if threads is not None:
                threads.close()


class ZeroCopyHttpProtocol(Connection):
    """uvicorn's httptools protocol with the ASGI zero-copy send extension, and request
    bodies handed to the app as the parser produced them or read by the app itself (see
    ``vidbox.http.request_body``), and each request told when the server begins to shut down.
    It also holds clients to ``limits`` (see ``vidbox.http.limits``). What it needs of uvicorn
    goes through ``Connection``'s hooks and properties (``vidbox.http.uvicorn_internals``)."""

    limits: ClassVar[Limits] = Limits()
    threads: ClassVar[ThreadPools | None] = None  # None: each body makes its own (tests)

    def opened(self) -> None:
        self.stopping_event = asyncio.Event()
        self.head = HeadMeter(self.limits)
        self.in_head = True  # the parser is between requests or inside a request head
        self.head_timer: asyncio.TimerHandle | None = None
        self.counted: str | None = None
        host = self.peer[0] if self.peer else None
        if host is not None:
            if not self._clients().admit(host, self.limits):
                self.refuse(429, "Too many connections from your address at once.")
                return
            self.counted = host
        self._arm_head_timer()

    def closed(self) -> None:
        if self.counted is not None:
            self._clients().release(self.counted)
            self.counted = None
        self._disarm_head_timer()

    def _clients(self) -> ClientCount:
        return self.per_server("vidbox_clients", ClientCount)

    def before_parse(self, data: bytes) -> None:
        """The request head metered before the parser holds it: a head that breaks a limit is
        answered 414 / 431."""
        if self.in_head:
            self.head.feed(data)

    def refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` and close, before any app saw the request."""
        self.refused = True
        self._disarm_head_timer()
        # A flood of connections is refused one by one: not a line each at the default level.
        log.log(
            logging.DEBUG if status == 429 else logging.INFO,
            "request refused",
            extra=log_fields(status=status, client=self.peer[0] if self.peer else None),
        )
        transport = self.wire
        # An answer to an earlier request may still be on its way: then only close.
        if self.answering:
            transport.close()
            return
        transport.write(refusal(status, detail))
        # A lingering close: the client, still sending, would otherwise get a reset that
        # makes its system drop the answer unread. What it sends meanwhile is ignored.
        if transport.can_write_eof():
            transport.write_eof()
        self.event_loop.call_later(REFUSAL_LINGER_SECONDS, transport.close)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self.head_timer = self.event_loop.call_later(
            self.limits.header_timeout, self._head_timed_out
        )

    def _disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.answering or self.pipelined or not self.in_head or self.wire.is_closing():
            return  # a request is being answered; its end arms the timer again
        if self.head.total:
            self.refuse(408, "The request headers took too long to arrive.")
        else:
            self.wire.close()

    def message_completed(self) -> None:
        self.in_head = True
        self.head.reset()

    def response_completed(self) -> None:
        self._arm_head_timer()

    def stopping(self) -> None:
        self.stopping_event.set()
        request = self.current
        body: request_body.RequestBody | None = request.body if request is not None else None
        if body is not None and not body.ended():
            self.event_loop.call_later(SHUTDOWN_BODY_GRACE, body.cut, "the server is stopping")

    def head_complete(self, url: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        check_head(self.limits, url, headers)
        self.in_head = False
        self._disarm_head_timer()

    def request_made(self, request: Request, headers: list[tuple[bytes, bytes]]) -> None:
        receiving = self.threads.receiving if self.threads is not None else None
        request.body = request_body.attach(
            request, headers, self.limits.body_idle_timeout, receiving
        )

    def asgi_starting(self, request: Request) -> None:
        request.extensions()[SERVER_STOPPING] = {"event": self.stopping_event}
        if request.zerocopy_possible():
            request.extensions()[ZEROCOPY_SEND] = {}
            request.wrap_send(lambda send: _zerocopy_send(request, send))


def _zerocopy_send(request: Request, send: Send) -> Send:
    loop = request.loop

    async def send_with_zerocopy(message: Any) -> None:
        if message["type"] != ZEROCOPY_SEND:
            await send(message)
            return
        more_body = message.get("more_body", False)
        if request.write_paused and not request.disconnected:
            await request.drain()
        if request.disconnected:
            return
        file, offset = message["file"], message.get("offset", 0)
        count = message.get("count")
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if request.scope["method"] != "HEAD" and count > 0:
            if count > request.content_length_left:
                raise RuntimeError("zero-copy send longer than Content-Length")
            transport = request.transport
            if transport.is_closing():
                request.mark_disconnected()
                return
            try:
                sent = await loop.sendfile(transport, file, offset, count)
            except OSError as exc:
                # The client left mid-file: the connection cannot be reused.
                log.debug("zero-copy send stopped: %s", exc)
                transport.close()
                request.mark_disconnected()
                return
            request.count_sent(sent)
        await send({"type": "http.response.body", "body": b"", "more_body": more_body})

    return send_with_zerocopy
