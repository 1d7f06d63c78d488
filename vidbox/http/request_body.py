"""Request bodies as ``vidbox.http.server`` hands them to the app: chunk by chunk as the parser
produced them, or straight from the socket for a body of known length.

Two vidbox extensions are offered for such bodies, in ``scope["extensions"]``:

- ``BODY_READINTO``: ``{"readinto": async (buffer) -> int}`` fills the front of a buffer with
  the next body bytes (0 at the end of the body; ConnectionResetError if the client goes). It
  skips the parser's copy of every byte and most per-chunk work.
- ``BODY_TO_FILE``: ``{"to_file": async (fd, offset, limit) -> int, "remaining": () -> int,
  "to_file_until": ...}``. ``to_file`` moves up to ``limit`` next body bytes into the file
  ``fd`` at ``offset`` inside the kernel (``splice(2)`` through a pipe), so they never enter
  Python at all; ``remaining()`` is how much of the body has not been taken yet;
  ``to_file_until`` also searches what it moves for a delimiter (a multipart boundary).
  Offered where ``os.splice`` exists (Linux).

Either way the socket belongs to the body until its last byte is in; the parser then starts
afresh for the next request on the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from concurrent.futures import Executor
from typing import Any, Final

from vidbox.http import splice
from vidbox.http.limits import IdleWatch, close_for_everyone, log_cut, queued_bytes
from vidbox.http.uvicorn_internals import Request
from vidbox.threads import private_pool

BODY_READINTO: Final = "vidbox.http.request.readinto"
BODY_TO_FILE: Final = "vidbox.http.request.tofile"

# Reading stops while this much of a body waits for the app: a bound on memory per request.
BODY_HIGH_WATER = 1024 * 1024


def attach(
    request: Request,
    headers: list[tuple[bytes, bytes]],
    idle_timeout: float | None = None,
    receiving: Executor | None = None,
) -> RequestBody | None:
    """Take over the body of ``request``, whose ``headers`` were just parsed, and offer the
    app the extensions that work for it. None (uvicorn's own handling stays) when uvicorn's
    request does not look as expected. A body from which nothing arrives for
    ``idle_timeout`` seconds while the app waits is cut off (see ``cut``). Bodies moved into
    files go through the ``receiving`` threads (``vidbox.threads``)."""
    if not request.body_handoff_possible():
        return None
    body = RequestBody(request, _content_length(headers), idle_timeout, receiving)
    request.set_receive(body.receive)
    if body.length is not None and request.direct_read_possible():
        extensions = request.extensions()
        extensions[BODY_READINTO] = {"readinto": body.readinto}
        if hasattr(os, "splice"):
            extensions[BODY_TO_FILE] = {
                "to_file": body.to_file,
                "to_file_until": body.to_file_until,
                "remaining": body.remaining,
            }
    return body


class RequestBody:
    """A request body passed to the app chunk by chunk, as httptools produced them, or read
    from the socket by the app itself (``readinto``, ``to_file``).

    uvicorn appends every chunk to a bytearray and copies that into a new bytes object for
    each ``http.request`` message: two extra copies of every uploaded byte, most of the cost
    of taking in an upload. Here each chunk is handed over as it is. Reading pauses past
    ``BODY_HIGH_WATER`` buffered bytes (uvicorn: 64 KiB, which paused and resumed the socket
    for nearly every chunk). Chunks that arrived before the client went away are still
    delivered, then ``http.disconnect``: an upload keeps every byte that reached the server.
    """

    def __init__(
        self,
        request: Request,
        length: int | None,
        idle_timeout: float | None = None,
        receiving: Executor | None = None,
    ) -> None:
        self.request = request
        self._receiving = receiving
        self.length = length  # Content-Length, None for a chunked body
        self.chunks: deque[bytes | memoryview] = deque()
        self.size = 0  # bytes in self.chunks
        self.parsed = 0  # body bytes that went through the parser
        self.direct = 0  # body bytes the app took from the socket itself
        self.keep_alive: bool | None = None  # the connection's, while the app owns the socket
        self.idle: IdleWatch | None = None
        if idle_timeout:
            self.idle = IdleWatch(request.loop, idle_timeout, self._progress, self.cut)

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self.parsed += len(chunk)
        if self.size > BODY_HIGH_WATER:
            self.request.pause_reading()
        self.request.message_arrived()

    def _continue(self) -> None:
        self.request.send_continue()

    async def receive(self) -> dict[str, Any]:
        request = self.request
        self._continue()
        if not self.chunks and not request.disconnected and not request.response_complete:
            request.resume_reading()
            with self._waiting():
                await request.next_message()
        if request.response_complete or (request.disconnected and not self.chunks):
            return {"type": "http.disconnect"}
        body = self.chunks.popleft() if self.chunks else b""
        self.size -= len(body)
        if self.size <= BODY_HIGH_WATER and not request.disconnected:
            request.resume_reading()
        # A body cut off by a disconnect is never reported complete: more_body stays True and
        # the next receive() answers http.disconnect.
        more_body = bool(self.chunks) or request.more_body
        return {"type": "http.request", "body": body, "more_body": more_body}

    def remaining(self) -> int:
        """Body bytes the app has not taken yet (a body of known length)."""
        assert self.length is not None
        return self.length - self.parsed - self.direct + self.size

    async def readinto(self, buffer: memoryview) -> int:
        """Fill the front of ``buffer`` with the next body bytes; returns how many, 0 at the end
        of the body. Raises ConnectionResetError when the client leaves mid-body.

        Bytes the parser already took come first. Then the socket is the body's (see
        ``_own_socket``).
        """
        self._continue()
        if self.chunks:
            return self._take_chunks(buffer)
        unread = self._unread()
        if unread <= 0 or not buffer:
            return 0
        fd = self._own_socket()
        try:
            while True:
                try:
                    got = os.readv(fd, [buffer[:unread]])
                    break
                except BlockingIOError:
                    with self._waiting():
                        await _readable(fd)
                except OSError:
                    self._lost()
                    raise
        finally:
            os.close(fd)
        return self._took_directly(got, unread)

    async def to_file(self, fd: int, offset: int, limit: int) -> int:
        """Move up to ``limit`` next body bytes into the file ``fd`` at ``offset``; returns how
        many, 0 at the end of the body. Raises ConnectionResetError when the client leaves
        mid-body (after the bytes that arrived were moved and counted by earlier calls), and
        OSError when the file cannot take them.

        Bytes from the socket go through a pipe into the file inside the kernel (splice), on a
        receiving thread: the event loop neither copies them nor waits for the disk.
        """
        moved, _ = await self.to_file_until(fd, offset, limit)
        return moved

    async def to_file_until(
        self,
        fd: int,
        offset: int,
        limit: int,
        delimiter: bytes = b"",
        search_from: int | None = None,
    ) -> tuple[int, int | None]:
        """``to_file`` that also looks for ``delimiter`` in the file, from ``search_from``
        (default: ``offset``) through the bytes it moves, while they are fresh in the CPU's
        cache. It stops once it appears; returns how many bytes were moved (some may follow
        the delimiter) and the delimiter's position in the file, or None."""
        self._continue()
        search = (delimiter, offset if search_from is None else search_from)
        if self.chunks:
            # Claimed first: otherwise the parser would fill the queue again during the write
            # and every body byte would take this copying path.
            if self._unread() > 0:
                self._claim()
            view = memoryview(bytearray(min(limit, self.size)))
            taken = self._take_chunks(view)
            found = await splice.finish_on_thread(
                self.receiving, splice.write_and_search, fd, view[:taken], offset, search
            )
            return taken, found
        unread = self._unread()
        if unread <= 0 or limit <= 0:
            return 0, None
        sock = self._own_socket()
        try:
            # The waits below (on the loop, and the thread's) end when a pipe's worth is there.
            splice.set_low_water(sock, min(unread, splice.PIPE_BYTES))
            while True:
                job = self.receiving.submit(
                    splice.splice_arrived, sock, fd, offset, min(limit, unread), search
                )
                try:
                    moved, ended, found = await asyncio.wrap_future(job)
                except asyncio.CancelledError:
                    if not job.cancel():
                        with contextlib.suppress(Exception):
                            self.direct += job.result()[0]
                    raise
                if moved or ended:
                    break
                with self._waiting():
                    await _readable(sock)
        finally:
            splice.set_low_water(sock, 1)
            os.close(sock)
        return self._took_directly(moved, unread), found

    @property
    def receiving(self) -> Executor:
        if self._receiving is None:  # a body attached by hand, as in a test
            self._receiving = private_pool("receiving")
        return self._receiving

    def ended(self) -> bool:
        """The whole body is in, or it never will be."""
        request = self.request
        return not request.more_body or request.disconnected or request.response_complete

    def cut(self, why: str) -> None:
        """End the body now, as if the client had left: the connection closes, the app gets
        the bytes that arrived and then a disconnect (or ConnectionResetError when reading
        the socket itself), and the request ends, releasing what it held (an upload's
        lock). For a client gone silent, and for a server that is stopping."""
        if self.ended():
            return
        log_cut(why, self.request.client, self.parsed + self.direct)
        request = self.request
        request.mark_disconnected()
        close_for_everyone(request.transport)
        request.message_arrived()

    def _waiting(self) -> Any:
        if self.idle is None or self.ended():
            return contextlib.nullcontext()
        return self.idle.wait()

    def _progress(self) -> tuple[int, int]:
        if self.ended():
            assert self.idle is not None
            self.idle.finish()
        sock = self.request.transport.get_extra_info("socket")
        return self.parsed + self.direct, queued_bytes(sock) if sock is not None else 0

    def _unread(self) -> int:
        assert self.length is not None
        return self.length - self.parsed - self.direct

    def _own_socket(self) -> int:
        """The socket's descriptor, duplicated, for the app to read the body from.

        Reading through the transport pauses. If the app answers before reading the whole
        body, the connection closes after the answer (``keep_alive`` is off meanwhile): the
        parser never saw the rest of the body. The descriptor is a copy: should the transport
        close while the app waits on it, its number could be reused by another connection,
        whose bytes must never be read here.
        """
        request = self.request
        if request.disconnected or request.response_complete or request.transport.is_closing():
            raise ConnectionResetError("the client is gone")
        self._claim()
        return os.dup(request.transport.get_extra_info("socket").fileno())

    def _claim(self) -> None:
        if self.keep_alive is None:
            self.request.pause_reading()
            self.keep_alive, self.request.keep_alive = self.request.keep_alive, False

    def _take_chunks(self, buffer: memoryview) -> int:
        taken = 0
        while self.chunks and taken < len(buffer):
            chunk = self.chunks[0]
            piece = min(len(buffer) - taken, len(chunk))
            buffer[taken : taken + piece] = chunk[:piece]
            if piece == len(chunk):
                self.chunks.popleft()
            else:
                self.chunks[0] = memoryview(chunk)[piece:]
            taken += piece
        self.size -= taken
        if self.size <= BODY_HIGH_WATER and self.keep_alive is None:
            self.request.resume_reading()
        return taken

    def _took_directly(self, count: int, unread: int) -> int:
        """Count ``count`` bytes the app took from the socket (0: the client left)."""
        if count == 0:
            self._lost()
            raise ConnectionResetError("the client closed the connection mid-body")
        self.direct += count
        if count == unread:
            # The old parser still waits for the bytes the app took: a new one reads the
            # connection's next request.
            assert self.keep_alive is not None
            self.request.keep_alive, self.keep_alive = self.keep_alive, None
            self.request.restart_parser()
            self.request.resume_reading()
        return count

    def _lost(self) -> None:
        self.request.mark_disconnected()
        self.request.transport.close()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's length from the request headers; None when it is chunked or unclear."""
    lengths = [value for name, value in headers if name == b"content-length"]
    if len(lengths) != 1 or any(name == b"transfer-encoding" for name, _ in headers):
        return None
    try:
        length = int(lengths[0])
    except ValueError:
        return None
    return length if length >= 0 else None


async def _readable(fd: int) -> None:
    """Wait until ``fd`` (not a transport's own descriptor) has bytes or an end of file."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
