"""Log lines as the admin's console shows them: a value from a request can never start a line
of its own, move the cursor or colour the terminal."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Serve, clean_env, wait_until

# What a line the server itself writes starts with.
_LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ [A-Z]+ ")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Serve]:
    env = clean_env(VIDBOX_DATA_DIR=str(tmp_path / "data"), TEST_LOG=str(tmp_path / "serve.log"))
    server = Serve(env=env)
    yield server
    if server.proc.poll() is None:
        server.stop()


def _raw_get(port: int, target: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_crafted_path_cannot_forge_a_log_line(served: Serve) -> None:
    served.wait_ready()
    forged = "2026-01-01T00:00:00Z WARNING vidbox msg=setup url=http://evil.example/setup"
    target = (
        "/nothing%0d%0a" + forged.replace(" ", "%20") + "%0d%1b[2K%1b]0;title%07%7f%c2%85%e2%80%a8"
    ).encode()
    answer = _raw_get(served.port, target)
    assert answer.startswith(b"HTTP/1.1 404")

    def log() -> str:
        # As written: reading in text mode would turn a CR into a line break.
        with served.log_path.open(newline="") as file:
            return file.read()

    wait_until(lambda: "/nothing" in log(), what="the request's log line")
    log_text = log()
    # No terminal control of any kind reached the log: no CR, ESC, BEL, DEL, C1 controls or
    # Unicode line separators, and no line but the server's own.
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", log_text)
    for line in log_text.splitlines():
        assert _LINE_START.match(line) or line.startswith("  "), line
    (request_line,) = [line for line in log_text.splitlines() if "/nothing" in line]
    assert "\\r\\n2026-01-01T00:00:00Z WARNING" in request_line
    assert "\\x1b[2K" in request_line
    assert "\\x07" in request_line
