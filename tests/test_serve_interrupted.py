"""`vidbox serve` stopped in the middle of uploads, as a container manager or a crash stops it:
SIGTERM lets a body finish or ends it cleanly with its bytes kept, and what a killed process
left in the spool is gone by the next start."""

from __future__ import annotations

import base64
import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.postgres import settings_for
from tests.support import (
    Serve,
    add_user,
    api_login,
    bearer,
    clean_env,
    make_test_clip,
    wait_until,
)

KiB = 1024


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("clip")
    return make_test_clip(
        folder / "clip.mp4", size="640x480", seconds=2, lossless=True
    ).read_bytes()


class Box:
    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.tmp_path = tmp_path
        self.runs = 0
        add_user(settings_for(data_dir=self.data_dir, environ={}), "ann@example.org")
        self.serve: Serve = self.start()

    def start(self) -> Serve:
        self.runs += 1
        log = self.tmp_path / f"serve-{self.runs}.log"
        env = clean_env(VIDBOX_DATA_DIR=str(self.data_dir), TEST_LOG=str(log))
        self.serve = Serve(env=env)
        self.serve.wait_ready()
        return self.serve

    def auth(self) -> dict[str, str]:
        with httpx.Client(base_url=self.serve.url) as client:
            return bearer(api_login(client, "ann@example.org")["access"])

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.serve.port), timeout=20)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    found = Box(tmp_path)
    yield found
    if found.serve.proc.poll() is None:
        found.serve.stop()


def _create_upload(box: Box, auth: dict[str, str], length: int) -> str:
    created = httpx.post(
        box.serve.url + "/api/uploads",
        headers={
            **auth,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(length),
            "Upload-Metadata": "filename " + base64.b64encode(b"clip.mp4").decode(),
        },
    )
    assert created.status_code == 201, created.text
    return str(created.headers["location"])


def _patch_head(auth: dict[str, str], path: str, length: int) -> bytes:
    headers = {
        **auth,
        "Host": "x",
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(length),
    }
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"PATCH {path} HTTP/1.1\r\n{lines}\r\n".encode()


def _answer(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _offset(box: Box, auth: dict[str, str], path: str) -> int:
    head = httpx.head(box.serve.url + path, headers={**auth, "Tus-Resumable": "1.0.0"})
    return int(head.headers["upload-offset"])


@contextlib.contextmanager
def _terminated_mid_patch(box: Box, video: bytes, sent: int) -> Iterator[tuple[socket.socket, str]]:
    """A PATCH whose first ``sent`` bytes are stored, then SIGTERM to the server; yields the
    client's socket and the upload's path."""
    auth = box.auth()
    path = _create_upload(box, auth, len(video))
    with box.connect() as sock:
        sock.sendall(_patch_head(auth, path, len(video)) + video[:sent])
        wait_until(lambda: _offset(box, auth, path) == sent, what="the first bytes to be stored")
        box.serve.proc.send_signal(signal.SIGTERM)
        yield sock, path


def test_sigterm_ends_a_stalled_upload_cleanly_with_its_bytes_kept(box: Box, video: bytes) -> None:
    sent = 256 * KiB
    with _terminated_mid_patch(box, video, sent) as (sock, path):
        # The client sends nothing more. The server stops all the same, in its grace period.
        assert box.serve.proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises it
        answer = _answer(sock)
    log = box.serve.log()
    assert b"500" not in answer.split(b"\r\n", 1)[0], answer
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert 'msg="request body cut off; the bytes received are kept"' in log
    assert 'reason="the server is stopping"' in log
    # After a restart the upload goes on from the bytes that arrived.
    box.start()
    auth = box.auth()
    assert _offset(box, auth, path) == sent
    rest = httpx.patch(
        box.serve.url + path,
        headers={
            **auth,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(sent),
            "Content-Type": "application/offset+octet-stream",
        },
        content=video[sent:],
    )
    assert rest.status_code == 204, rest.text


def test_sigterm_lets_a_body_that_keeps_coming_finish(box: Box, video: bytes) -> None:
    sent = 256 * KiB
    with _terminated_mid_patch(box, video, sent) as (sock, _path):
        sock.sendall(video[sent:])
        answer = _answer(sock)
        assert box.serve.proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    assert answer.startswith(b"HTTP/1.1 204 "), answer
    assert "Traceback" not in box.serve.log()


def test_a_killed_one_shot_upload_leaves_nothing_in_the_spool(box: Box, video: bytes) -> None:
    auth = box.auth()
    boundary = "vidboxboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    length = len(head) + 50 * len(video)  # announced; a part of it is sent
    spool = box.data_dir / "spool"
    with box.connect() as sock:
        request = (
            f"POST /api/videos HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        sock.sendall(request + head + video)

        def receiving() -> bool:
            return any(p.stat().st_size > 0 for p in spool.iterdir() if not p.name.startswith("."))

        wait_until(receiving, what="the body to reach the spool")
        box.serve.proc.kill()  # kill -9: no clean-up of its own
        box.serve.proc.wait(timeout=30)
    assert [p for p in spool.iterdir() if p.is_file() and p.stat().st_size > 0]
    box.start()
    # Gone before the server answers: nothing can still be receiving it. (.live holds the
    # life locks of the processes using the spool: now only the new server's.)
    assert [p.name for p in spool.iterdir() if p.name != ".live"] == []
    assert "removed what killed uploads left" in box.serve.log()
