"""Moving request body bytes from a socket into a file inside the kernel: ``splice(2)`` from
the socket into a pipe (the kernel links the socket buffer's pages, no copy), then from the
pipe into the file, on receiving threads so the event loop neither copies the bytes nor waits
for the disk. Used by ``vidbox.http.request_body``'s to-file extension."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")

# The receiving threads (``vidbox.threads``) move arrived body bytes into files. Each holds on
# only while bytes pour in (``splice_arrived``), so slow clients never tie one up: their waits
# are on the loop.
# One call moves at most this much, then hands back to the loop (progress, cancellation).
SPLICE_CALL_BYTES = 16 * 1024 * 1024
# How long a receiving thread waits for more bytes before handing the wait back to the loop,
# and the pace (bytes a second) a call must keep up for its thread to wait at all: a client
# trickling a byte now and then could otherwise keep a thread forever.
SPLICE_LINGER_SECONDS = 0.005
SPLICE_LINGER_PACE = 50_000_000
PIPE_BYTES = 1024 * 1024  # Linux's default pipe-max-size for unprivileged processes
_per_thread = threading.local()


def splice_arrived(
    sock: int, fd: int, offset: int, limit: int, search: tuple[bytes, int]
) -> tuple[int, bool, int | None]:
    """On a receiving thread: move bytes that have arrived on ``sock`` (up to ``limit``, and
    at most ``SPLICE_CALL_BYTES``) into ``fd`` at ``offset``, searching them for a delimiter
    (``search``: the delimiter, empty for none, and where in the file to start). Returns how
    many were moved, whether the socket ended (end of file or an error) before ``limit``, and
    where the delimiter is in the file, if found (the call stops there)."""
    read_end, write_end, capacity = _thread_pipe()
    waiter = select.poll()
    waiter.register(sock, select.POLLIN)
    limit = min(limit, SPLICE_CALL_BYTES)
    moved, started, low_water = 0, time.monotonic(), 0
    delimiter, since = search
    while moved < limit:
        try:
            # The kernel links the socket buffer's pages into the pipe: no copy here.
            got = os.splice(
                sock,
                write_end,
                min(limit - moved, capacity),
                flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK,
            )
        except BlockingIOError:
            pouring = moved > (time.monotonic() - started) * SPLICE_LINGER_PACE
            if not pouring:
                return moved, False, None
            # Never more than this call still takes: it may be the end of the body.
            if low_water != (wanted := min(limit - moved, capacity)):
                low_water = wanted
                set_low_water(sock, wanted)
            if waiter.poll(SPLICE_LINGER_SECONDS * 1000):
                continue
            return moved, False, None
        except OSError:
            return moved, True, None
        if got == 0:
            return moved, True, None
        try:
            _drain_pipe(read_end, fd, offset + moved, got)
        except BaseException:
            _drop_thread_pipe()  # what stayed in it is lost with the failed write
            raise
        moved += got
        if delimiter:
            found = find_in_file(fd, since, offset + moved, delimiter)
            if found is not None:
                return moved, False, found
            since = max(since, offset + moved - len(delimiter) + 1)
    return moved, False, None


def set_low_water(sock: int, nbytes: int) -> None:
    """Have poll report ``sock`` readable only once ``nbytes`` have arrived, or it ended
    (SO_RCVLOWAT; the kernel also wakes a waiter whose receive window has filled up).

    Without it a receiving thread woke for whatever had trickled in since its last look: 400 to
    1,000 waits and 2,000 to 4,700 splices into the file per GiB. A pipe's worth at a time
    takes under 130 and about 1,200, and both ends of a loopback upload spend about a fifth
    less CPU (bench/README.md). The socket is shared with the event loop: ``to_file_until``
    sets 1 again before handing it back. A socket that
    refuses (one already broken) is left as it is: the waits are then only more frequent."""
    # setsockopt wants a socket object: one of its own, on a copy of the descriptor.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock)) as handle:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, max(1, nbytes))


def find_in_file(fd: int, start: int, end: int, delimiter: bytes) -> int | None:
    """Where ``delimiter`` first is in the file between ``start`` and ``end`` (bytes just
    written, still in the CPU's cache), or None. Reads them back through one buffer per
    thread, in slices that overlap by the delimiter's length less one."""
    buffer = getattr(_per_thread, "search_buffer", None)
    if buffer is None:
        buffer = _per_thread.search_buffer = bytearray(PIPE_BYTES + 4096)
    view = memoryview(buffer)
    position = start
    while position < end:
        count = min(len(buffer), end - position)
        got = os.preadv(fd, [view[:count]], position)
        if got <= 0:
            raise OSError(f"the file ended at {position}, before {end}")
        index = buffer.find(delimiter, 0, got)
        if index >= 0:
            return position + index
        if position + got >= end:
            return None
        position += max(got - len(delimiter) + 1, 1)
    return None


def write_and_search(
    fd: int, data: memoryview, offset: int, search: tuple[bytes, int]
) -> int | None:
    _pwrite_all(fd, data, offset)
    delimiter, since = search
    return find_in_file(fd, since, offset + len(data), delimiter) if delimiter else None


def _drain_pipe(read_end: int, fd: int, offset: int, count: int) -> None:
    while count:
        written = os.splice(read_end, fd, count, offset_dst=offset, flags=os.SPLICE_F_MOVE)
        if written == 0:
            raise OSError("the file took no bytes from the pipe")
        offset += written
        count -= written


def _thread_pipe() -> tuple[int, int, int]:
    pipe = getattr(_per_thread, "pipe", None)
    if pipe is None:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            capacity = fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # a lower pipe-max-size: keep the default size
            capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        pipe = _per_thread.pipe = (read_end, write_end, capacity)
    return pipe


def _drop_thread_pipe() -> None:
    pipe = getattr(_per_thread, "pipe", None)
    if pipe is not None:
        os.close(pipe[0])
        os.close(pipe[1])
        _per_thread.pipe = None


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


async def finish_on_thread(pool: Executor, func: Callable[..., T], *args: Any) -> T:
    """Run ``func`` on a receiving thread of ``pool``; if the caller is cancelled meanwhile,
    the work still completes before the cancellation goes on (a file is never written behind
    its owner's back)."""
    job = pool.submit(func, *args)
    try:
        return await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        if job.cancel():
            func(*args)
        else:
            with contextlib.suppress(Exception):
                job.result()
        raise
