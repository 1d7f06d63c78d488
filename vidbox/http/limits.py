"""What one client may cost the server: the size of a request head, the time it takes to send
it, how long a body may go quiet, and how many connections one address may hold.

Without them a 16 MiB header was read into memory whole (four 64 MiB ones added 300 MB), 300
connections trickling a header byte every few seconds stayed open for ever, and a tus PATCH
whose client went silent (a laptop closed, a phone off the network: no FIN ever arrives)
held the upload's lock for ever, so the owner's own resume got 423. ``vidbox.http.server`` applies
them; the numbers are settings (``[server]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import http
import ipaddress
import json
import logging
import socket
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vidbox.logs import log_fields

if TYPE_CHECKING:
    from vidbox.config import Settings

log = logging.getLogger("vidbox.server")


@dataclass(frozen=True)
class Limits:
    header_line_bytes: int = 16 * 1024
    header_bytes: int = 64 * 1024
    header_timeout: float = 30.0
    body_idle_timeout: float = 60.0
    connections_per_client: int = 64  # 0: no limit
    unlimited_clients: frozenset[str] = frozenset()  # trusted proxies carry many clients

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        server = settings.server
        return cls(
            header_line_bytes=server.max_header_line_bytes,
            header_bytes=server.max_header_bytes,
            header_timeout=float(server.header_timeout_seconds),
            body_idle_timeout=float(server.body_idle_seconds),
            connections_per_client=server.max_connections_per_client,
            unlimited_clients=frozenset(server.trusted_proxies),
        )


class HeadRefused(Exception):
    """Raised from a parser callback: the request head breaks a limit."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def refusal(status: int, detail: str) -> bytes:
    """A whole HTTP answer, sent by the server itself before any app sees the request."""
    body = json.dumps({"detail": detail}).encode()
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def _line_too_long(limits: Limits, request_line: bool) -> HeadRefused:
    if request_line:
        return HeadRefused(
            414, f"The request line is longer than {limits.header_line_bytes} bytes."
        )
    return HeadRefused(431, f"A request header is longer than {limits.header_line_bytes} bytes.")


def _head_too_large(limits: Limits) -> HeadRefused:
    return HeadRefused(431, f"The request headers are larger than {limits.header_bytes} bytes.")


class HeadMeter:
    """Counts the bytes of a request head as they arrive, before the parser gathers them
    (httptools keeps a header whole in memory until its end, however long it gets)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        self.total = 0  # head bytes so far
        self.line = 0  # bytes of the line still open
        self.lines = 0  # line ends seen
        self.tail = b""  # the last bytes seen, to find a blank line across two reads

    def feed(self, data: bytes) -> None:
        """Count ``data``; raises HeadRefused past a limit. Bytes after the blank line that
        ends the head (a body) are not counted."""
        window = self.tail + data
        ends = [
            i + len(blank) for blank in (b"\r\n\r\n", b"\n\n") if (i := window.find(blank)) >= 0
        ]
        part = data[: max(0, min(ends) - len(self.tail))] if ends else data
        self.tail = window[-3:]
        self.total += len(part)
        pieces = part.split(b"\n")
        for index, piece in enumerate(pieces):
            length = self.line + len(piece) if index == 0 else len(piece)
            if length > self.limits.header_line_bytes:
                raise _line_too_long(self.limits, self.lines + index == 0)
        self.lines += len(pieces) - 1
        self.line = self.line + len(pieces[0]) if len(pieces) == 1 else len(pieces[-1])
        if self.total > self.limits.header_bytes:
            raise _head_too_large(self.limits)


def check_head(limits: Limits, url: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """The parsed head against the limits (a head that arrived in one read was not metered
    line by line); raises HeadRefused."""
    if len(url) > limits.header_line_bytes:
        raise _line_too_long(limits, True)
    total = len(url)
    for name, value in headers:
        line = len(name) + 2 + len(value)
        if line > limits.header_line_bytes:
            raise _line_too_long(limits, False)
        total += line + 2
    if total > limits.header_bytes:
        raise _head_too_large(limits)


def _listed(host: str, entries: frozenset[str]) -> bool:
    """``host`` is one of ``entries`` (addresses, networks like 10.0.0.0/8, or "*"), as
    uvicorn reads the trusted proxies."""
    if not entries:
        return False
    if "*" in entries or host in entries:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in entries:
        with contextlib.suppress(ValueError):
            if "/" in entry and address in ipaddress.ip_network(entry, strict=False):
                return True
    return False


class ClientCount:
    """Open connections by client address, for one server (one per server: see
    ``uvicorn_internals.Connection.per_server``)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def admit(self, host: str, limits: Limits) -> bool:
        current = self.open.get(host, 0)
        limited = limits.connections_per_client and not _listed(host, limits.unlimited_clients)
        if limited and current >= limits.connections_per_client:
            return False
        self.open[host] = current + 1
        return True

    def release(self, host: str) -> None:
        left = self.open.get(host, 1) - 1
        if left > 0:
            self.open[host] = left
        else:
            self.open.pop(host, None)


def queued_bytes(sock: Any) -> int:
    """Bytes that have arrived on ``sock`` and wait to be read (0 if it cannot say)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


class IdleWatch:
    """Cuts a request body off once no byte of it has arrived for ``timeout`` seconds while
    the app waits for one. Progress is what the body has taken and what waits in the socket
    (the app may read the socket itself, in pipe-sized waits, so the loop sees no reads).
    ``cut`` is told why; it closes the connection, and the app, like for a client that left,
    keeps the bytes that arrived."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        progress: Callable[[], tuple[int, int]],
        cut: Callable[[str], None],
    ) -> None:
        self.loop, self.timeout, self.progress, self.cut = loop, timeout, progress, cut
        self.waiting = 0  # waits of the app for body bytes, in progress
        self.timer: asyncio.TimerHandle | None = None
        self.mark: tuple[int, int] | None = None
        self.quiet_since = loop.time()
        self.finished = False

    @contextlib.contextmanager
    def wait(self) -> Any:
        """Around each wait of the app for more body bytes."""
        if self.timer is None and not self.finished:
            self.quiet_since = self.loop.time()
            self._schedule()
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1

    def finish(self) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _schedule(self) -> None:
        self.timer = self.loop.call_later(min(self.timeout / 4, 5.0), self._check)

    def _check(self) -> None:
        self.timer = None
        if self.finished:
            return
        now, mark = self.loop.time(), self.progress()
        if self.finished:
            return
        if not self.waiting or mark != self.mark:
            self.mark, self.quiet_since = mark, now
        elif now - self.quiet_since >= self.timeout:
            self.finished = True
            self.cut(f"no byte of the body arrived for {self.timeout:g} s")
            return
        self._schedule()


def close_for_everyone(transport: asyncio.Transport) -> None:
    """Close a connection so that every reader of it wakes, including the app's waits on
    duplicates of its descriptor (which ``transport.close()`` alone leaves open)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    transport.close()


def log_cut(why: str, client: Any, received: int) -> None:
    log.info(
        "request body cut off; the bytes received are kept",
        extra=log_fields(reason=why, client=client[0] if client else None, received=received),
    )
