"""The server as `vidbox serve` runs it: request bodies handed over chunk by chunk, over real
sockets, including the awkward cases (100-continue, keep-alive, a client leaving mid-body)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, start_server, wait_until
from vidbox.config import Settings
from vidbox.server import BODY_HIGH_WATER, ZEROCOPY_SEND

MiB = 1024 * 1024


class BodyRecorder:
    """An ASGI app that reads the whole request body and answers what it saw."""

    def __init__(self) -> None:
        self.finished: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        digest, size, messages, ended = hashlib.sha256(), 0, 0, "complete"
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                ended = "disconnect"
                break
            messages += 1
            digest.update(message["body"])
            size += len(message["body"])
            if not message["more_body"]:
                break
        seen = {
            "size": size,
            "sha256": digest.hexdigest(),
            "messages": messages,
            "ended": ended,
            "zerocopy": ZEROCOPY_SEND in scope.get("extensions", {}),
        }
        self.finished.append(seen)
        if ended == "disconnect":
            return
        body = json.dumps(seen).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def recorder() -> BodyRecorder:
    return BodyRecorder()


@pytest.fixture(scope="module")
def live(recorder: BodyRecorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from vidbox.config import load_settings

    settings: Settings = load_settings(data_dir=tmp_path_factory.mktemp("server"), environ={})
    server = start_server(settings, app=recorder)  # type: ignore[arg-type]
    yield server
    server.stop()


def _seen(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_bodies_arrive_whole_on_one_connection(live: LiveServer) -> None:
    bodies = [os.urandom(5 * BODY_HIGH_WATER + 12345), b"", os.urandom(100), os.urandom(3 * MiB)]
    with live.client() as client:
        for body in bodies:
            seen = _seen(client.post("/", content=body))
            assert (seen["size"], seen["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
            assert seen["ended"] == "complete"
            assert seen["zerocopy"]  # the server offers zero-copy sending too
    big = _seen(httpx.post(live.url, content=bodies[0]))
    assert big["messages"] > 1  # streamed in chunks, never gathered whole


def test_a_streamed_upload_of_unknown_length(live: LiveServer) -> None:
    parts = [os.urandom(300_000) for _ in range(7)]
    seen = _seen(httpx.post(live.url, content=iter(parts)))  # chunked transfer coding
    assert seen["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def _raw_request(port: int, body_length: int, extra: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {body_length}\r\n{extra}\r\n"
    )
    sock.sendall(head.encode())
    return sock


def _port(live: LiveServer) -> int:
    return int(live.url.rsplit(":", 1)[1])


def test_expect_100_continue(live: LiveServer) -> None:
    body = os.urandom(2 * MiB)
    with _raw_request(_port(live), len(body), "Expect: 100-continue\r\n") as sock:
        sock.settimeout(10)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = b""
        while b'"ended"' not in answer:
            answer += sock.recv(65536)
    assert b"200 OK" in answer
    assert hashlib.sha256(body).hexdigest().encode() in answer


def test_a_client_leaving_mid_body_still_delivers_what_arrived(
    live: LiveServer, recorder: BodyRecorder
) -> None:
    sent = os.urandom(3 * MiB + 17)
    before = len(recorder.finished)
    with _raw_request(_port(live), 10 * MiB) as sock:
        sock.sendall(sent)
    wait_until(lambda: len(recorder.finished) > before, timeout=10, what="the app to finish")
    seen = recorder.finished[-1]
    # Every byte that reached the server reached the app, and the body was never reported
    # complete: the app learns of the disconnect instead.
    assert (seen["size"], seen["ended"]) == (len(sent), "disconnect")
    assert seen["sha256"] == hashlib.sha256(sent).hexdigest()
    # The server carries on.
    assert _seen(httpx.post(live.url, content=b"after"))["size"] == 5
