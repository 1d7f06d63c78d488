"""Small, careful file operations the spool is built from: atomic replace, positional writes
that are safe to repeat, and disk work off the event loop that survives cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future
from pathlib import Path
from typing import Any, Protocol, TypeVar

from vidbox.threads import private_pool

T = TypeVar("T")
# A received piece of a body: bytes, a buffer it was read into, or a view cutting a piece out
# of either without a copy.
Chunk = bytes | bytearray | memoryview


class DirectBody(Protocol):
    """A request body the server moves into a file itself, its bytes never entering Python
    (``vidbox.http.request_body``'s splice). Raises ClientDisconnect when the client goes."""

    def remaining(self) -> int:
        """Body bytes not taken yet."""
        ...

    async def to_file(self, fd: int, offset: int, limit: int) -> int:
        """Move up to ``limit`` next bytes into ``fd`` at ``offset``; how many, 0 at the end."""
        ...


def fsync_dir(path: Path) -> None:
    # Makes a create/rename/unlink in the folder survive a power cut, not just a crash.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


# Linux accepts at most this many buffers in one pwritev call.
_IOV_MAX = 1024


class PendingChunks:
    """Received chunks waiting for one positional write, kept as they arrived."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.size = 0

    def add(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)

    def clear(self) -> None:
        self.chunks = []
        self.size = 0


class OverlappedWriter:
    """Writes received chunks back to back from ``position``, one write on a disk thread while
    the event loop receives the next chunks, so the network and the disk work at once.

    Memory stays bounded: at most one batch of ``batch_bytes`` in the write and one filling.
    Batches are written in order, so ``hasher`` (updated on the disk thread) sees the bytes in
    order. After an error or a cancellation call ``settle()`` before touching the file again.
    """

    def __init__(
        self,
        fd: int,
        position: int,
        *,
        batch_bytes: int,
        hasher: Any = None,
        pool: Executor | None = None,
    ) -> None:
        self.fd, self.hasher, self.batch_bytes = fd, hasher, batch_bytes
        # The disk threads (``vidbox.threads``), or a private pool for a writer given none.
        self.pool = pool if pool is not None else private_pool("disk")
        self.written = position  # every byte before this is in the file
        self.pending = PendingChunks()  # received, not handed to a write yet
        self._writing: Future[None] | None = None
        self._writing_chunks: list[Chunk] = []
        self._writing_size = 0

    @property
    def received(self) -> int:
        """The file position after every chunk given so far."""
        return self.written + self._writing_size + self.pending.size

    async def add(self, chunk: Chunk) -> None:
        self.pending.add(chunk)
        if self.pending.size >= self.batch_bytes:
            await self._finish_write()
            self._start_write()

    async def flush(self) -> int:
        """Write everything given so far; returns the new position."""
        await self._finish_write()
        self._start_write()
        await self._finish_write()
        return self.written

    def _start_write(self) -> None:
        if not self.pending.size:
            return
        chunks, size = self.pending.chunks, self.pending.size
        self.pending = PendingChunks()
        self._writing = self.pool.submit(pwritev_all, self.fd, chunks, self.written, self.hasher)
        self._writing_chunks, self._writing_size = chunks, size

    async def _finish_write(self) -> None:
        if self._writing is None:
            return
        await asyncio.wrap_future(self._writing)
        self._done_writing()

    def _done_writing(self) -> None:
        self.written += self._writing_size
        self._writing, self._writing_chunks, self._writing_size = None, [], 0

    async def finish(self) -> list[Chunk]:
        """After an error: wait for the write in flight; returns the chunks not in the file
        yet, in order, for the caller to keep or drop."""
        if self._writing is not None:
            try:
                await asyncio.wrap_future(self._writing)
            except Exception:
                self._unwritten()
            else:
                self._done_writing()
        return self.pending.chunks

    def settle(self) -> list[Chunk]:
        """``finish`` for when awaiting is not possible (cancelled): blocks until the write in
        flight is done. Call it on the event loop's thread: on a disk thread it could wait for
        a write queued behind itself."""
        if self._writing is not None:
            try:
                self._writing.result()
            except (Exception, CancelledError):
                self._unwritten()
            else:
                self._done_writing()
        return self.pending.chunks

    def _unwritten(self) -> None:
        # The write failed or never started: its chunks go back in front of the pending ones.
        self.pending.chunks[:0] = self._writing_chunks
        self.pending.size += self._writing_size
        self._writing, self._writing_chunks, self._writing_size = None, [], 0


def pwritev_all(fd: int, chunks: list[Chunk], position: int, hasher: Any = None) -> None:
    """Write ``chunks`` back to back at ``position``, however the kernel splits the work.

    A positional write makes a retry after a failed or cancelled write idempotent. Hashing
    happens here, off the event loop: hashlib releases the GIL for big buffers."""
    if hasher is not None:
        for chunk in chunks:
            hasher.update(chunk)
    views = [memoryview(chunk) for chunk in chunks if chunk]
    while views:
        written = os.pwritev(fd, views[:_IOV_MAX], position)
        position += written
        # Drop what was written: whole views, then the front of a partly written one.
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


def truncate_synced(fd: int, size: int) -> None:
    os.ftruncate(fd, size)
    os.fsync(fd)


async def on_disk_thread(pool: Executor, func: Callable[..., T], *args: Any) -> T:
    """Run blocking file work off the event loop, on ``pool`` (the disk threads). If the
    awaiting task is cancelled, the work still finishes (or is done here) before the
    cancellation goes on, so the caller never touches a file descriptor a thread is still
    writing to, and no received byte is dropped."""
    job = pool.submit(func, *args)
    try:
        return await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        if job.cancel():  # had not started: do it here
            func(*args)
        else:
            job.result()  # running: wait for it
        raise
