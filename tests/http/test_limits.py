"""What one client may cost the server, over raw sockets against the real app: request heads
too large or too slow, bodies gone quiet, too many connections from one address."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    make_test_clip,
    start_server,
    wait_until,
)
from vidbox.config import Settings

KiB, MiB = 1024, 1024 * 1024


def _serve(make_settings: Callable[..., Settings], tmp_path: Path, **env: str) -> LiveServer:
    environ = {f"VIDBOX_SERVER__{key.upper()}": value for key, value in env.items()}
    return start_server(make_settings(environ, data_dir=tmp_path / "data"))


@pytest.fixture
def live(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[LiveServer]:
    server = _serve(make_settings, tmp_path)
    yield server
    server.stop()


def _port(live: LiveServer) -> int:
    return int(live.url.rsplit(":", 1)[1])


def _connect(live: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(live)), timeout=20)


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _send_head(live: LiveServer, head: bytes) -> bytes:
    """Send ``head`` (as much of it as the server takes) and return its answer."""
    with _connect(live) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for start in range(0, len(head), 64 * KiB):
                sock.sendall(head[start : start + 64 * KiB])
        return _answer(sock)


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (what it sent before is skipped)."""
    sock.settimeout(0.05)
    try:
        while chunk := sock.recv(65536):
            del chunk
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_oversized_request_heads_are_refused(live: LiveServer) -> None:
    ok = _send_head(
        live,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fine: "
        + b"a" * (15 * KiB)
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert ok.startswith(b"HTTP/1.1 200")

    long_line = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (17 * KiB) + b"\r\n\r\n"
    answer = _send_head(live, long_line)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b'{"detail": "A request header is longer than 16384 bytes."}' in answer

    long_url = b"GET /healthz?" + b"q" * (17 * KiB) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _send_head(live, long_url).startswith(b"HTTP/1.1 414 ")

    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    many += b"".join(b"X-%d: " % i + b"a" * (15 * KiB) + b"\r\n" for i in range(5)) + b"\r\n"
    answer = _send_head(live, many)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"headers are larger than 65536 bytes" in answer

    # 16 MiB in one header: refused long before the end, never gathered in memory.
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * (16 * MiB) + b"\r\n\r\n"
    assert _send_head(live, huge).startswith(b"HTTP/1.1 431 ")
    # The server is fine.
    assert httpx.get(live.url + "/healthz").status_code == 200


def test_request_heads_must_arrive_in_time(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    live = _serve(make_settings, tmp_path, header_timeout_seconds="1")
    stop = threading.Event()
    try:
        silent = _connect(live)
        trickling = _connect(live)
        trickling.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

        def trickle() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    trickling.send(b"X")
                stop.wait(0.05)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        # A byte every 50 ms kept such a connection open for ever; now the head has 1 s.
        answer = b""

        def answered() -> bool:
            nonlocal answer
            trickling.settimeout(0.05)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                answer += trickling.recv(65536)
            return b"}" in answer

        wait_until(answered, what="the trickling client to be answered")
        assert answer.startswith(b"HTTP/1.1 408 ")
        wait_until(lambda: _closed(trickling), what="the trickling connection to close")
        wait_until(lambda: _closed(silent), what="the silent connection to close")
        stop.set()
        thread.join(timeout=10)
        # A request that arrives at once on a fresh connection is served as ever.
        assert httpx.get(live.url + "/healthz").status_code == 200
    finally:
        stop.set()
        live.stop()


def test_connections_per_client_are_capped(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    live = _serve(make_settings, tmp_path, max_connections_per_client="4")
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        held = [_connect(live) for _ in range(4)]
        for sock in held:  # each answered, and kept open (keep-alive)
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            # The start of a next request: now the head has 30 s, not keep-alive's 5 s.
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        with _connect(live) as fifth:
            with contextlib.suppress(OSError):
                fifth.sendall(request)
            answer = _answer(fifth)
        assert answer.startswith(b"HTTP/1.1 429 ")
        assert b"Too many connections" in answer
        held.pop().close()

        def served_again() -> bool:
            with _connect(live) as sock:
                with contextlib.suppress(OSError):
                    sock.sendall(request)
                return sock.recv(65536).startswith(b"HTTP/1.1 200")

        wait_until(served_again, what="a connection to be free again")
        for sock in held:
            sock.close()
    finally:
        live.stop()


SENT = 512 * KiB
UPLOAD = b""  # a real video of about 2 MiB, made once (the upload is checked for being one)


@pytest.fixture(scope="module", autouse=True)
def _video(tmp_path_factory: pytest.TempPathFactory) -> None:
    global UPLOAD
    folder = tmp_path_factory.mktemp("clip")
    clip = make_test_clip(folder / "clip.mp4", size="640x480", seconds=3, lossless=True)
    UPLOAD = clip.read_bytes()
    assert len(UPLOAD) > 2 * SENT


def _tus_upload(live: LiveServer) -> tuple[dict[str, str], str]:
    add_user(live.settings, "ann@example.org")
    with live.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
        created = client.post(
            "/api/uploads",
            headers={
                **auth,
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(UPLOAD)),
                "Upload-Metadata": "filename " + base64.b64encode(b"clip.mp4").decode(),
            },
        )
    assert created.status_code == 201, created.text
    return auth, created.headers["location"]


def _patch_head(auth: dict[str, str], path: str, way: str) -> bytes:
    headers = {
        **auth,
        "Host": "x",
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
    }
    if way == "chunked":
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(len(UPLOAD))
    if way == "checksum":
        digest = base64.b64encode(hashlib.sha1(UPLOAD).digest()).decode()  # noqa: S324
        headers["Upload-Checksum"] = f"sha1 {digest}"
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"PATCH {path} HTTP/1.1\r\n{lines}\r\n".encode()


# Each way the server hands a body to the app: spliced into the file (known length), through
# the parser (chunked), read into buffers (a checksum needs the bytes).
@pytest.mark.parametrize("way", ["length", "chunked", "checksum"])
def test_a_stalled_upload_is_cut_off_and_frees_its_lock(
    make_settings: Callable[..., Settings], tmp_path: Path, way: str
) -> None:
    live = _serve(make_settings, tmp_path, body_idle_seconds="1")
    try:
        auth, path = _tus_upload(live)
        with _connect(live) as sock:
            sock.sendall(_patch_head(auth, path, way))
            first = UPLOAD[:SENT]
            sock.sendall(b"%x\r\n" % len(first) + first + b"\r\n" if way == "chunked" else first)
            # Then nothing, the connection left open: a laptop closed mid-upload. The server
            # used to wait for ever, and the upload stayed locked (the next PATCH got 423).
            wait_until(lambda: _closed(sock), what="the server to cut the silent body off")
        tus = {**auth, "Tus-Resumable": "1.0.0"}
        with live.client() as client:
            offset = int(client.head(path, headers=tus).headers["upload-offset"])
            # Every byte that arrived is kept, unless a checksum could not vouch for them.
            assert offset == (0 if way == "checksum" else SENT)
            rest = client.patch(
                path,
                headers={
                    **tus,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
                content=UPLOAD[offset:],
            )
        assert rest.status_code == 204, rest.text
        assert rest.headers["upload-offset"] == str(len(UPLOAD))
    finally:
        live.stop()


@pytest.mark.parametrize("way", ["length", "chunked"])
def test_a_slow_but_steady_upload_is_not_cut_off(
    make_settings: Callable[..., Settings], tmp_path: Path, way: str
) -> None:
    live = _serve(make_settings, tmp_path, body_idle_seconds="2")
    try:
        auth, path = _tus_upload(live)
        pace = threading.Event()
        with _connect(live) as sock:
            sock.sendall(_patch_head(auth, path, way))
            # A few MiB over 5 s or more: longer than the idle limit, never long quiet.
            # (Spliced bodies wait for a pipe's worth, 1 MiB, at a time: bytes waiting in the
            # socket count as arrived.)
            step = len(UPLOAD) // 50 + 1  # 50 pieces, 0.1 s apart
            for start in range(0, len(UPLOAD), step):
                piece = UPLOAD[start : start + step]
                sock.sendall(
                    b"%x\r\n" % len(piece) + piece + b"\r\n" if way == "chunked" else piece
                )
                pace.wait(0.1)
            if way == "chunked":
                sock.sendall(b"0\r\n\r\n")
            sock.settimeout(20)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 204 "), answer
    finally:
        live.stop()


def test_trusted_proxies_are_not_capped(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Every visitor comes through the proxy: capping it would cap the whole audience.
    live = _serve(
        make_settings, tmp_path, max_connections_per_client="2", trusted_proxies="127.0.0.0/8"
    )
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        held = [_connect(live) for _ in range(4)]
        for sock in held:
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        for sock in held:
            sock.close()
    finally:
        live.stop()
