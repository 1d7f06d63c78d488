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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vidbox.http import request_body
from vidbox.http.limits import ClientCount, HeadMeter, HeadRefused, Limits, check_head, refusal
from vidbox.logs import log_fields

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
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        # asyncio's loop, not uvloop: only asyncio's implements loop.sendfile.
        "loop": "asyncio",
        "http": protocol_with(Limits.from_settings(settings)),
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def protocol_with(limits: Limits) -> type[ZeroCopyHttpProtocol]:
    """The protocol class for one server, with its limits (uvicorn builds it with fixed
    arguments, so the limits travel as a class attribute)."""
    return type("VidboxHttpProtocol", (ZeroCopyHttpProtocol,), {"limits": limits})


class ZeroCopyHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the ASGI zero-copy send extension, and request
    bodies handed to the app as the parser produced them or read by the app itself (see
    ``vidbox.http.request_body``), and each request told when the server begins to shut down.
    It also holds clients to ``limits`` (see ``vidbox.http.limits``)."""

    limits: ClassVar[Limits] = Limits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.stopping = asyncio.Event()
        self.head = HeadMeter(self.limits)
        self.in_head = True  # the parser is between requests or inside a request head
        self.refused = False
        self.head_timer: asyncio.TimerHandle | None = None
        self.counted: str | None = None
        host = self.client[0] if self.client else None
        if host is not None:
            if not ClientCount.of(self.server_state).admit(host, self.limits):
                self._refuse(429, "Too many connections from your address at once.")
                return
            self.counted = host
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted is not None:
            ClientCount.of(self.server_state).release(self.counted)
            self.counted = None
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the request head metered before the parser holds it, and a head
        that breaks a limit answered 414 / 431."""
        if self.refused:
            return
        self._unset_keepalive_if_required()
        try:
            if self.in_head:
                self.head.feed(data)
            self.parser.feed_data(data)
        except HeadRefused as exc:
            self._refuse(exc.status, exc.detail)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadRefused):
                self._refuse(exc.__context__.status, exc.__context__.detail)
            else:
                self._bad_request()
        except httptools.HttpParserError:
            self._bad_request()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` and close, before any app saw the request."""
        self.refused = True
        self._disarm_head_timer()
        # A flood of connections is refused one by one: not a line each at the default level.
        log.log(
            logging.DEBUG if status == 429 else logging.INFO,
            "request refused",
            extra=log_fields(status=status, client=self.client[0] if self.client else None),
        )
        # An answer to an earlier request may still be on its way: then only close.
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        self.transport.write(refusal(status, detail))
        # A lingering close: the client, still sending, would otherwise get a reset that
        # makes its system drop the answer unread. What it sends meanwhile is ignored.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(REFUSAL_LINGER_SECONDS, self.transport.close)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self.head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy or self.pipeline or not self.in_head or self.transport.is_closing():
            return  # a request is being answered; its end arms the timer again
        if self.head.total:
            self._refuse(408, "The request headers took too long to arrive.")
        else:
            self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True
        self.head.reset()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def shutdown(self) -> None:
        self.stopping.set()
        body: request_body.RequestBody | None = getattr(self.cycle, "vidbox_body", None)
        if body is not None and not body.ended():
            self.loop.call_later(SHUTDOWN_BODY_GRACE, body.cut, "the server is stopping")
        super().shutdown()

    def on_headers_complete(self) -> None:
        check_head(self.limits, self.url, self.headers)
        self.in_head = False
        self._disarm_head_timer()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:
            cycle.vidbox_body = request_body.attach(
                self, cycle, self.headers, self.limits.body_idle_timeout
            )

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
