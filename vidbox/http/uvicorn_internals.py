"""Everything vidbox knows about uvicorn's insides, and the only module that touches them.

``vidbox.http.server`` builds on uvicorn's httptools protocol (``HttpToolsProtocol``), which is
not uvicorn's public API. The methods overridden or called on it, the attributes read and
written on it, on each request's ``RequestResponseCycle`` and on its ``FlowControl`` are all
used here and only here, behind names that say what vidbox does with them: ``Connection``
(the protocol, with hooks for the server) and ``Request`` (one cycle).

``tests/http/test_uvicorn_internals.py`` checks each of them against the installed uvicorn
(that it exists, with the arguments and attributes used), so a release that changes one fails
there, by name. pyproject.toml caps uvicorn below 0.56 (written against 0.53-0.55): raise the
cap once those tests pass on the new version, and read uvicorn's ``data_received``, which
``Connection.data_received`` repeats.

At run time a cycle that lacks an attribute is met with fewer extensions (``Request.
zerocopy_possible``, ``body_handoff_possible``): the app then streams by itself, slower, never
wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vidbox.http.limits import HeadRefused

T = TypeVar("T")
Send = Callable[[Any], Awaitable[None]]

# The parts of uvicorn's RequestResponseCycle each extension relies on.
ZEROCOPY_CYCLE_ATTRIBUTES: Final = (
    "send",
    "transport",
    "flow",
    "scope",
    "expected_content_length",
)
BODY_CYCLE_ATTRIBUTES: Final = (
    "receive",
    "message_event",
    "more_body",
    "disconnected",
    "response_complete",
    "waiting_for_100_continue",
    "transport",
)
# Where vidbox keeps its Request on uvicorn's cycle.
_REQUEST_ATTRIBUTE: Final = "vidbox_request"


class BodySink(Protocol):
    """What takes a request's body chunks from the parser (``vidbox.http.request_body``)."""

    def feed(self, chunk: bytes) -> None: ...


class Request:
    """One request as uvicorn holds it (a ``RequestResponseCycle``), as vidbox uses it."""

    __slots__ = ("body", "connection", "cycle")

    def __init__(self, connection: Connection, cycle: Any) -> None:
        self.connection, self.cycle = connection, cycle
        self.body: Any = None  # the request_body.RequestBody taking over the body, if any

    @staticmethod
    def of(connection: Connection, cycle: Any) -> Request:
        request: Request | None = getattr(cycle, _REQUEST_ATTRIBUTE, None)
        if request is None:
            request = Request(connection, cycle)
            setattr(cycle, _REQUEST_ATTRIBUTE, request)
        return request

    # --- what the extensions may rely on
    def zerocopy_possible(self) -> bool:
        """The loop has ``sendfile`` (asyncio's, not uvloop), the cycle looks as expected and
        the transport is a plain TCP socket."""
        cycle = self.cycle
        return (
            isinstance(self.connection.loop, asyncio.selector_events.BaseSelectorEventLoop)
            and all(hasattr(cycle, name) for name in ZEROCOPY_CYCLE_ATTRIBUTES)
            and cycle.transport.get_extra_info("sslcontext") is None
            and cycle.transport.get_extra_info("socket") is not None
        )

    def body_handoff_possible(self) -> bool:
        return all(hasattr(self.cycle, name) for name in BODY_CYCLE_ATTRIBUTES)

    def direct_read_possible(self) -> bool:
        """The app may read the body from the socket itself (a plain TCP socket, and a
        protocol whose parser can be replaced)."""
        protocol, transport = self.connection, self.connection.transport
        return (
            hasattr(protocol, "parser")
            and hasattr(protocol, "on_message_complete")
            and transport.get_extra_info("sslcontext") is None
            and transport.get_extra_info("socket") is not None
        )

    # --- the connection
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.connection.loop

    @property
    def client(self) -> tuple[str, int] | None:
        return self.connection.client

    # uvicorn's RequestResponseCycle has no type annotations, so every attribute read below is
    # Any to mypy: each property states the type, and tests/http/test_uvicorn_internals.py
    # checks it against the real objects (the ignores here are that, nothing else).
    @property
    def transport(self) -> asyncio.Transport:
        return self.cycle.transport  # type: ignore[no-any-return]

    # --- the ASGI side
    @property
    def scope(self) -> dict[str, Any]:
        return self.cycle.scope  # type: ignore[no-any-return]

    def extensions(self) -> dict[str, Any]:
        return self.cycle.scope.setdefault("extensions", {})  # type: ignore[no-any-return]

    def set_receive(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.cycle.receive = receive

    def wrap_send(self, wrap: Callable[[Send], Send]) -> None:
        self.cycle.send = wrap(self.cycle.send)

    # --- the request's state
    @property
    def more_body(self) -> bool:
        """The parser has not reached the end of the body."""
        return self.cycle.more_body  # type: ignore[no-any-return]

    @property
    def disconnected(self) -> bool:
        return self.cycle.disconnected  # type: ignore[no-any-return]

    def mark_disconnected(self) -> None:
        self.cycle.disconnected = True

    @property
    def response_complete(self) -> bool:
        return self.cycle.response_complete  # type: ignore[no-any-return]

    @property
    def keep_alive(self) -> bool:
        return self.cycle.keep_alive  # type: ignore[no-any-return]

    @keep_alive.setter
    def keep_alive(self, value: bool) -> None:
        self.cycle.keep_alive = value

    @property
    def content_length_left(self) -> int:
        """Response body bytes still owed under the Content-Length the app sent."""
        return self.cycle.expected_content_length  # type: ignore[no-any-return]

    def count_sent(self, sent: int) -> None:
        self.cycle.expected_content_length -= sent

    def send_continue(self) -> None:
        """Answer ``Expect: 100-continue`` the first time the app wants the body, as uvicorn's
        own ``receive`` does."""
        cycle = self.cycle
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False

    def message_arrived(self) -> None:
        """Wake a ``receive`` waiting for body bytes."""
        self.cycle.message_event.set()

    async def next_message(self) -> None:
        event = self.cycle.message_event
        await event.wait()
        event.clear()

    # --- flow control (uvicorn's FlowControl: reading the socket, the writes' buffer)
    def pause_reading(self) -> None:
        self.connection.flow.pause_reading()

    def resume_reading(self) -> None:
        self.connection.flow.resume_reading()

    @property
    def write_paused(self) -> bool:
        return self.cycle.flow.write_paused  # type: ignore[no-any-return]

    async def drain(self) -> None:
        await self.cycle.flow.drain()

    def restart_parser(self) -> None:
        """The app took the rest of the body from the socket itself: the old parser still
        waits for those bytes, so a new one reads the connection's next request, and the
        request ends as if the parser had seen its last byte."""
        protocol = self.connection
        protocol.parser = _new_parser(protocol)
        protocol.on_message_complete()


class Connection(HttpToolsProtocol):
    """uvicorn's httptools protocol, opened for ``vidbox.http.server``: uvicorn's callbacks
    call the hooks below (no-ops here), and the properties give what the hooks may use."""

    refused = False  # answered by ``refuse``: what arrives from now on is dropped

    # --- hooks
    def opened(self) -> None:
        """The connection is made (``refuse`` may be called)."""

    def closed(self) -> None:
        """The connection is lost."""

    def before_parse(self, data: bytes) -> None:
        """Bytes arrived, before the parser sees them; may raise HeadRefused."""

    def head_complete(self, url: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """A request head is parsed, before uvicorn makes its cycle; may raise HeadRefused."""

    def request_made(self, request: Request, headers: list[tuple[bytes, bytes]]) -> None:
        """uvicorn made the cycle for a new request (its ASGI task may already be started)."""

    def asgi_starting(self, request: Request) -> None:
        """The app is about to be called for ``request``."""

    def message_completed(self) -> None:
        """The parser reached the end of a request (or the app took its last body byte)."""

    def response_completed(self) -> None:
        """A response ended and the connection stays open."""

    def stopping(self) -> None:
        """The server begins to shut down."""

    def refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` before any app saw the request, and close."""
        raise NotImplementedError

    # --- what the hooks may use
    @property
    def event_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    @property
    def wire(self) -> asyncio.Transport:
        """The connection's transport."""
        return self.transport

    @property
    def peer(self) -> tuple[str, int] | None:
        return self.client

    @property
    def answering(self) -> bool:
        """A response is under way (or its request not answered yet)."""
        return self.cycle is not None and not self.cycle.response_complete

    @property
    def pipelined(self) -> bool:
        """Requests wait behind the one being answered."""
        return bool(self.pipeline)

    @property
    def current(self) -> Request | None:
        """The request the parser is on (the last one it made a cycle for)."""
        return getattr(self.cycle, _REQUEST_ATTRIBUTE, None) if self.cycle is not None else None

    def per_server(self, name: str, make: Callable[[], T]) -> T:
        """An object shared by every connection of one server, made on first use."""
        state = self.server_state
        found: T | None = getattr(state, name, None)
        if found is None:
            found = make()
            setattr(state, name, found)
        return found

    # --- uvicorn's callbacks
    # uvicorn declares BaseTransport; an HTTP connection's is always a Transport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.refused = False
        self.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with ``before_parse`` first and a HeadRefused (raised there or by a
        parser callback) answered with ``refuse``."""
        if self.refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.before_parse(data)
            self.parser.feed_data(data)
        except HeadRefused as exc:
            self.refuse(exc.status, exc.detail)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadRefused):
                self.refuse(exc.__context__.status, exc.__context__.detail)
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

    def on_headers_complete(self) -> None:
        self.head_complete(self.url, self.headers)
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:
            self.request_made(Request.of(self, cycle), self.headers)

    def on_body(self, body: bytes) -> None:
        request = self.current
        sink: BodySink | None = request.body if request is not None else None
        if sink is None:
            super().on_body(body)
        elif not self.cycle.response_complete:
            sink.feed(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.message_completed()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.response_completed()

    def shutdown(self) -> None:
        self.stopping()
        super().shutdown()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self.asgi_starting(Request.of(self, cycle))
        super()._start_asgi_task(cycle, app)


def _new_parser(protocol: Any) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(protocol)
    # As uvicorn sets up its own parser.
    with contextlib.suppress(AttributeError):
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser
