"""Each piece of uvicorn's insides that ``vidbox.http.uvicorn_internals`` uses, checked against
the installed uvicorn: a release that renames or reshapes one fails here, by name, instead of
making uploads or media serving slow or wrong. When one fails, read the new uvicorn's code for
that piece, adapt ``uvicorn_internals`` (and only it), then raise the cap in pyproject.toml."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httptools
import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from vidbox.http.uvicorn_internals import (
    BODY_CYCLE_ATTRIBUTES,
    ZEROCOPY_CYCLE_ATTRIBUTES,
    Connection,
    Request,
)

UVICORN = f"uvicorn {uvicorn.__version__}"

# HttpToolsProtocol's methods that Connection overrides, with the parameters it expects.
OVERRIDDEN = {
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_headers_complete": ["self"],
    "on_body": ["self", "body"],
    "on_message_complete": ["self"],
    "on_response_complete": ["self"],
    "shutdown": ["self"],
    "_start_asgi_task": ["self", "cycle", "app"],
}
# ... and those it calls (its data_received repeats uvicorn's, which calls them).
CALLED = {
    "_unset_keepalive_if_required": ["self"],
    "_should_upgrade": ["self"],
    "handle_websocket_upgrade": ["self"],
    "_unsupported_upgrade_warning": ["self"],
    "send_400_response": ["self", "msg"],
}
# Attributes of a connected protocol, and what they must be.
PROTOCOL_ATTRIBUTES = {
    "loop": asyncio.AbstractEventLoop,
    "transport": asyncio.Transport,
    "flow": FlowControl,
    "client": tuple,
    "cycle": RequestResponseCycle,
    "pipeline": object,  # a deque; only its truth is used
    "parser": httptools.HttpRequestParser,
    "url": bytes,
    "headers": list,
    "logger": object,
    "server_state": ServerState,
}
# Attributes of a request's cycle, and their types.
CYCLE_TYPES = {
    "transport": asyncio.Transport,
    "flow": FlowControl,
    "scope": dict,
    "message_event": asyncio.Event,
    "more_body": bool,
    "disconnected": bool,
    "response_complete": bool,
    "waiting_for_100_continue": bool,
    "keep_alive": bool,
    "expected_content_length": int,
}


@pytest.mark.parametrize("name", sorted(OVERRIDDEN))
def test_protocol_methods_vidbox_overrides(name: str) -> None:
    _check_method(name, OVERRIDDEN[name], "overrides")


@pytest.mark.parametrize("name", sorted(CALLED))
def test_protocol_methods_vidbox_calls(name: str) -> None:
    _check_method(name, CALLED[name], "calls")


def _check_method(name: str, parameters: list[str], use: str) -> None:
    method = getattr(HttpToolsProtocol, name, None)
    assert callable(method), f"{UVICORN}: HttpToolsProtocol.{name} is gone; Connection {use} it"
    found = list(inspect.signature(method).parameters)
    assert found == parameters, (
        f"{UVICORN}: HttpToolsProtocol.{name}{tuple(found)} no longer takes {tuple(parameters)}"
        f"; Connection {use} it"
    )


def test_flow_control_has_what_requests_use() -> None:
    for name in ("pause_reading", "resume_reading"):
        assert list(inspect.signature(getattr(FlowControl, name)).parameters) == ["self"], (
            f"{UVICORN}: FlowControl.{name}() changed; Request.{name} calls it"
        )
    assert inspect.iscoroutinefunction(FlowControl.drain), (
        f"{UVICORN}: FlowControl.drain is no longer a coroutine; Request.drain awaits it"
    )


def test_httptools_parser_as_uvicorn_makes_it() -> None:
    # Request.restart_parser makes a parser the way uvicorn's __init__ does.
    parser = httptools.HttpRequestParser(object())
    assert hasattr(parser, "feed_data")
    parameters = inspect.signature(HttpToolsProtocol.__init__).parameters
    assert list(parameters)[:4] == ["self", "config", "server_state", "app_state"], (
        f"{UVICORN}: HttpToolsProtocol() takes {list(parameters)}"
    )


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Both ends of a loopback TCP connection (a socket pair has no peer address)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return server, client


@dataclass
class Live:
    """A protocol connected to one end of a socket pair, with a request in progress."""

    protocol: Any
    cycle: Any
    client: socket.socket
    release: asyncio.Event
    loop: asyncio.AbstractEventLoop


@pytest.fixture
def live() -> Iterator[Live]:
    """uvicorn's own protocol, on a real transport, parsing a real request whose app waits:
    the request's cycle as uvicorn makes it, to look at."""
    loop = asyncio.new_event_loop()
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def connect() -> Live:
        config = uvicorn.Config(app, loop="asyncio", log_config=None, lifespan="off")
        config.load()
        protocol = HttpToolsProtocol(config, ServerState(), {}, _loop=loop)
        ours, theirs = _tcp_pair()
        await loop.connect_accepted_socket(lambda: protocol, ours)
        head = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
        protocol.data_received(head)
        return Live(protocol, protocol.cycle, theirs, release, loop)

    state = loop.run_until_complete(connect())
    try:
        yield state
    finally:
        release.set()
        loop.run_until_complete(asyncio.sleep(0))
        state.protocol.transport.close()
        state.client.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


@pytest.mark.parametrize("name", sorted(PROTOCOL_ATTRIBUTES))
def test_protocol_attributes(live: Live, name: str) -> None:
    kind = PROTOCOL_ATTRIBUTES[name]
    assert hasattr(live.protocol, name), f"{UVICORN}: the protocol has no .{name} any more"
    value = getattr(live.protocol, name)
    assert isinstance(value, kind), (
        f"{UVICORN}: the protocol's .{name} is a {type(value).__name__}, not a {kind.__name__}"
    )


@pytest.mark.parametrize(
    "name", sorted(set(CYCLE_TYPES) | set(ZEROCOPY_CYCLE_ATTRIBUTES) | set(BODY_CYCLE_ATTRIBUTES))
)
def test_cycle_attributes(live: Live, name: str) -> None:
    assert hasattr(live.cycle, name), f"{UVICORN}: RequestResponseCycle has no .{name} any more"
    kind = CYCLE_TYPES.get(name)
    value = getattr(live.cycle, name)
    if kind is not None:
        assert isinstance(value, kind), (
            f"{UVICORN}: RequestResponseCycle.{name} is a {type(value).__name__}, "
            f"not a {kind.__name__}"
        )


def test_cycle_state_as_vidbox_reads_it(live: Live) -> None:
    cycle, protocol = live.cycle, live.protocol
    # What Request assumes of a fresh cycle of a request with a body and Expect: 100-continue.
    assert cycle.transport is protocol.transport
    assert cycle.flow is protocol.flow
    assert cycle.more_body is True
    assert cycle.waiting_for_100_continue is True
    assert cycle.disconnected is False
    assert cycle.response_complete is False
    assert cycle.keep_alive is True
    assert cycle.scope["method"] == "POST"
    for name in ("send", "receive"):
        assert inspect.iscoroutinefunction(getattr(cycle, name)), (
            f"{UVICORN}: RequestResponseCycle.{name} is no longer a coroutine function"
        )
    assert list(inspect.signature(cycle.send).parameters) == ["message"]
    assert list(inspect.signature(cycle.receive).parameters) == []
    # The body arrives through on_body and ends with on_message_complete, as Connection expects.
    protocol.data_received(b"data")
    assert bytes(cycle.body) == b"data"
    assert cycle.more_body is False
    assert cycle.message_event.is_set()


def test_connection_hooks_run_in_order() -> None:
    """Connection's overrides call its hooks where vidbox.http.server expects them."""
    seen: list[str] = []
    loop = asyncio.new_event_loop()
    release = asyncio.Event()

    class Recording(Connection):
        def opened(self) -> None:
            seen.append("opened")

        def before_parse(self, data: bytes) -> None:
            seen.append("before_parse")

        def head_complete(self, url: bytes, headers: list[tuple[bytes, bytes]]) -> None:
            seen.append(f"head_complete {url.decode()}")

        def asgi_starting(self, request: Request) -> None:
            seen.append("asgi_starting")

        def request_made(self, request: Request, headers: list[tuple[bytes, bytes]]) -> None:
            seen.append("request_made")
            assert request is self.current
            assert self.per_server("probe", list) is self.per_server("probe", list)

        def message_completed(self) -> None:
            seen.append("message_completed")

        def response_completed(self) -> None:
            seen.append("response_completed")

        def stopping(self) -> None:
            seen.append("stopping")

        def closed(self) -> None:
            seen.append("closed")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def scenario() -> None:
        config = uvicorn.Config(app, loop="asyncio", log_config=None, lifespan="off")
        config.load()
        protocol = Recording(config, ServerState(), {}, _loop=loop)
        ours, theirs = _tcp_pair()
        with theirs:
            await loop.connect_accepted_socket(lambda: protocol, ours)
            protocol.data_received(b"GET /y HTTP/1.1\r\nhost: a\r\n\r\n")
            release.set()
            for _ in range(1000):  # a few loop turns; bounded so a change cannot hang
                if protocol.cycle.response_complete:
                    break
                await asyncio.sleep(0)
            assert protocol.cycle.response_complete
            protocol.shutdown()
            protocol.transport.close()
            await asyncio.sleep(0)

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert seen == [
        "opened",
        "before_parse",
        "head_complete /y",
        "asgi_starting",
        "request_made",
        "message_completed",
        "response_completed",
        "stopping",
        "closed",
    ]


def test_names_vidbox_adds_are_free_in_uvicorn(live: Live) -> None:
    """What Connection and vidbox's protocol add must not shadow anything of uvicorn's."""
    from vidbox.http.server import ZeroCopyHttpProtocol

    uvicorn_names = set(dir(HttpToolsProtocol)) | set(vars(live.protocol))
    added = (set(vars(Connection)) | set(vars(ZeroCopyHttpProtocol))) - set(OVERRIDDEN)
    added |= {"stopping_event", "head", "in_head", "head_timer", "counted"}  # set in opened()
    added -= {"__module__", "__doc__", "__annotations__", "__dict__", "__weakref__"}
    added -= {"__static_attributes__", "__firstlineno__", "__annotate_func__"}
    assert not added & uvicorn_names, f"{UVICORN} now uses {sorted(added & uvicorn_names)}"
    assert not set(vars(live.cycle)) & {"vidbox_request"}, "uvicorn's cycle has vidbox_request"
