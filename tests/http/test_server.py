"""The server as `vidbox serve` runs it: request bodies handed over chunk by chunk, over real
sockets, including the awkward cases (100-continue, keep-alive, a client leaving mid-body)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, start_server, wait_until
from vidbox.config import Settings
from vidbox.http.request_body import BODY_HIGH_WATER, BODY_READINTO, BODY_TO_FILE
from vidbox.http.server import ZEROCOPY_SEND
from vidbox.threads import RECEIVING_THREADS

MiB = 1024 * 1024


class BodyRecorder:
    """An ASGI app that reads the whole request body and answers what it saw."""

    def __init__(self) -> None:
        self.finished: list[dict[str, Any]] = []
        self.started = 0  # bodies /tofile began to move

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        digest, size, messages, ended = hashlib.sha256(), 0, 0, "complete"
        extensions = scope.get("extensions", {})
        readinto = extensions.get(BODY_READINTO, {}).get("readinto")
        to_file = extensions.get(BODY_TO_FILE, {}).get("to_file")
        # /readinto and /tofile read the whole body their way; -half stops halfway and answers;
        # /tofile-readonly gives a file that cannot be written.
        path, _, variant = scope["path"].partition("-")
        limit = None
        if variant == "half":
            limit = int(dict(scope["headers"])[b"content-length"]) // 2
        if path == "/readinto":
            assert readinto is not None
            buffer = memoryview(bytearray(100_000))
            try:
                while limit is None or size < limit:
                    got = await readinto(buffer)
                    if got == 0:
                        break
                    messages += 1
                    digest.update(buffer[:got])
                    size += got
            except ConnectionResetError:
                ended = "disconnect"
        elif path == "/tofile":
            assert to_file is not None
            remaining = extensions[BODY_TO_FILE]["remaining"]
            self.started += 1
            assert remaining() == int(dict(scope["headers"])[b"content-length"])
            with tempfile.TemporaryFile() as file:
                fd = file.fileno()
                if variant == "readonly":
                    fd = os.open(f"/proc/self/fd/{file.fileno()}", os.O_RDONLY)
                try:
                    while limit is None or size < limit:
                        # A small limit makes many calls, each leaving the socket mid-body.
                        got = await to_file(fd, size, 3 * MiB)
                        if got == 0:
                            break
                        messages += 1
                        size += got
                except ConnectionResetError:
                    ended = "disconnect"
                except OSError as exc:
                    ended = f"file error {exc.errno}"
                finally:
                    if fd != file.fileno():
                        os.close(fd)
                if limit is None and ended == "complete":
                    assert remaining() == 0
                file.seek(0)
                digest.update(file.read())
        else:
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
            "readinto": readinto is not None,
            "tofile": to_file is not None,
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


def _head(path: str, body_length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {body_length}\r\n{extra}\r\n"
    ).encode()


def _raw_request(
    port: int, body_length: int, extra: str = "", path: str = "/upload"
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(_head(path, body_length, extra))
    return sock


def _read_answers(sock: socket.socket, count: int) -> list[dict[str, Any]]:
    """``count`` JSON answers from a raw connection, in order."""
    sock.settimeout(10)
    data, answers = b"", []
    while len(answers) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                answers.append({"head": head.decode(), **json.loads(rest[:length])})
                data = rest[length:]
                continue
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return answers


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


# Both ways the app can take a body of known length straight from the socket: into its own
# buffers (readinto) or into a file without entering Python (to_file, splice).
direct_paths = pytest.mark.parametrize("path", ["/readinto", "/tofile"])


@direct_paths
def test_bodies_taken_straight_from_the_socket(live: LiveServer, path: str) -> None:
    bodies = [os.urandom(7 * MiB + 3), b"", os.urandom(10), os.urandom(300_000)]
    with live.client() as client:  # one keep-alive connection for all of them
        for body in bodies:
            seen = _seen(client.post(path, content=body))
            assert (seen["size"], seen["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
            assert (seen["ended"], seen["readinto"], seen["tofile"]) == ("complete", True, True)
        # A plain request after them: the connection's parser followed along.
        assert _seen(client.post("/", content=b"plain"))["size"] == 5


@direct_paths
def test_direct_reads_with_pipelined_requests(live: LiveServer, path: str) -> None:
    first, second = os.urandom(3 * MiB), os.urandom(1000)
    with socket.create_connection(("127.0.0.1", _port(live))) as sock:
        # The second request follows the first body without waiting for the answer.
        sock.sendall(_head(path, len(first)) + first + _head(path, len(second)))
        sock.sendall(second)
        answers = _read_answers(sock, 2)
    assert [a["sha256"] for a in answers] == [
        hashlib.sha256(first).hexdigest(),
        hashlib.sha256(second).hexdigest(),
    ]


@direct_paths
def test_an_answer_before_the_whole_body_closes_the_connection(live: LiveServer, path: str) -> None:
    body = os.urandom(4 * MiB)
    with _raw_request(_port(live), len(body), path=f"{path}-half") as sock:
        with contextlib.suppress(OSError):  # the server may close before all is sent
            sock.sendall(body)
        (answer,) = _read_answers(sock, 1)
        assert answer["size"] >= len(body) // 2
        assert "connection: close" in answer["head"].lower()
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(65536) == b""  # closed: the rest of the body is never parsed
    assert _seen(httpx.post(live.url + path, content=b"next"))["size"] == 4


@direct_paths
def test_direct_reads_when_the_client_leaves_mid_body(
    live: LiveServer, recorder: BodyRecorder, path: str
) -> None:
    sent = os.urandom(2 * MiB + 5)
    before = len(recorder.finished)
    with _raw_request(_port(live), 10 * MiB, path=path) as sock:
        sock.sendall(sent)
    wait_until(lambda: len(recorder.finished) > before, timeout=10, what="the app to finish")
    seen = recorder.finished[-1]
    assert (seen["size"], seen["ended"]) == (len(sent), "disconnect")
    assert seen["sha256"] == hashlib.sha256(sent).hexdigest()


@direct_paths
def test_direct_reads_send_100_continue(live: LiveServer, path: str) -> None:
    body = os.urandom(MiB)
    with _raw_request(_port(live), len(body), "Expect: 100-continue\r\n", path=path) as sock:
        sock.settimeout(10)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        (answer,) = _read_answers(sock, 1)
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_file_that_cannot_take_the_body(live: LiveServer) -> None:
    body = os.urandom(4 * MiB)
    with _raw_request(_port(live), len(body), path="/tofile-readonly") as sock:
        with contextlib.suppress(OSError):  # the server may close before all is sent
            sock.sendall(body)
        (answer,) = _read_answers(sock, 1)
    # The app learns that the file failed (not that the client left), and the connection,
    # whose body was only partly read, is closed after the answer.
    assert answer["ended"] == f"file error {errno.EBADF}"
    assert "connection: close" in answer["head"].lower()
    assert _seen(httpx.post(live.url + "/tofile", content=b"next"))["size"] == 4


def _server_end(client: socket.socket) -> socket.socket:
    """The server's end of ``client``'s connection (the server runs in this process), as a
    socket object of its own for looking at it. Polls: on a loaded machine the server may
    not have accepted the connection yet."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                found = socket.socket(fileno=os.dup(int(name)))
                with contextlib.suppress(OSError):
                    if found.getpeername() == client.getsockname():
                        return found
                found.close()
        time.sleep(0.02)
    raise LookupError("no server end for this connection")


def test_a_body_that_pauses_leaves_its_connection_as_it_found_it(live: LiveServer) -> None:
    # A burst, then nothing: the receiving thread waits for a pipe's worth at a time
    # (SO_RCVLOWAT), and must not leave that on the connection for the requests after it.
    first, rest = os.urandom(2 * MiB), os.urandom(MiB + 7)  # the app takes 3 MiB a call
    with _raw_request(_port(live), len(first) + len(rest), path="/tofile") as sock:
        sock.sendall(first)
        with _server_end(sock) as server:

            def low_water() -> int:
                return server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)

            wait_until(lambda: low_water() > 1, timeout=10, what="the thread to wait for more")
            sock.sendall(rest)
            (answer,) = _read_answers(sock, 1)
            assert answer["sha256"] == hashlib.sha256(first + rest).hexdigest()
            assert low_water() == 1
        # A small request on the same connection is read at once.
        sock.sendall(_head("/tofile", 5) + b"small")
        (after,) = _read_answers(sock, 1)
        assert after["size"] == 5


def test_trickling_clients_do_not_hold_the_receiving_threads(
    live: LiveServer, recorder: BodyRecorder
) -> None:
    # More slow bodies than there are receiving threads, each trickling a byte at a time.
    count = RECEIVING_THREADS + 4
    started = recorder.started
    slow = [_raw_request(_port(live), MiB, path="/tofile") for _ in range(count)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"x")
            stop.wait(0.001)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        wait_until(lambda: recorder.started >= started + count, timeout=10, what="the slow bodies")
        # A whole body still goes straight to its file meanwhile: no thread is held by them.
        # (When they held the threads, it waited for one to come free: 15 s and more.)
        body = os.urandom(5 * MiB)
        answer = httpx.post(live.url + "/tofile", content=body, timeout=10)
        seen = _seen(answer)
        assert seen["sha256"] == hashlib.sha256(body).hexdigest()
        assert not stop.is_set()  # the trickles were still going the whole time
    finally:
        stop.set()
        trickler.join(timeout=10)
        for sock in slow:
            sock.close()


def test_no_direct_reads_for_a_chunked_body(live: LiveServer) -> None:
    seen = _seen(httpx.post(live.url, content=iter([b"a" * 10, b"b" * 10])))
    assert (seen["size"], seen["readinto"], seen["tofile"]) == (20, False, False)
