"""Every pool of worker threads vidbox starts: sized here, and shut down by whoever opened them.

There are four, each so that one kind of blocking work never queues behind another:

- ``receiving`` (16): moves request bodies from sockets into spool files (``vidbox.http.
  splice``). A thread holds on only while bytes pour in, so slow clients do not tie them up.
- ``disk`` (8): the upload spool's writes and fsyncs (``vidbox.uploads.files``): a long
  upload's writes must not wait behind unrelated ``to_thread`` work.
- ``storage`` (16): blocking calls of the S3 SDK, one per connection of its pool
  (``vidbox.storage.s3``): a slow S3 server then ties up these and nothing else.
- ``default``: asyncio's default executor (``asyncio.to_thread``: everything short and
  blocking), at asyncio's own size, min(32, CPUs + 4), installed by the server.

Owners: ``vidbox.http.server.Server`` opens one ``ThreadPools`` for a server's run (receiving,
default) and ``vidbox.services.open_services`` one for the box's services (disk, storage); each
closes its own when it ends. A pool is created on first use, so an owner never starts threads
it does not need. Code given no pool (a spool or a form made by a test or a tool) makes a
private one with ``private_pool``; its idle threads end once it is dropped.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Final

RECEIVING_THREADS: Final = 16
DISK_THREADS: Final = 8
STORAGE_THREADS: Final = 16

# Shut down with their queued work dropped: an S3 call has no caller left to answer. The
# others finish what is queued (a spool write must land where its caller expects it).
_DROP_QUEUED: Final = frozenset({"storage"})
_PREFIXES: Final = {
    "receiving": "vidbox-receive",
    "disk": "vidbox-spool",
    "storage": "vidbox-s3",
    "default": "asyncio",
}


def default_threads(cpu_count: int | None = None) -> int:
    """asyncio's own size for its default executor."""
    return min(32, (cpu_count or os.cpu_count() or 1) + 4)


def private_pool(kind: str) -> ThreadPoolExecutor:
    """A pool of ``kind`` for one object that was given none."""
    return ThreadPoolExecutor(_size(kind), thread_name_prefix=_PREFIXES[kind])


def _size(kind: str, cpu_count: int | None = None) -> int:
    sizes = {
        "receiving": RECEIVING_THREADS,
        "disk": DISK_THREADS,
        "storage": STORAGE_THREADS,
        "default": default_threads(cpu_count),
    }
    return sizes[kind]


class ThreadPools:
    """The pools of one owner, made on first use and shut down together by ``close``."""

    def __init__(self, cpu_count: int | None = None) -> None:
        self.cpu_count = cpu_count
        self._made: dict[str, ThreadPoolExecutor] = {}
        self.closed = False

    @property
    def receiving(self) -> ThreadPoolExecutor:
        return self._pool("receiving")

    @property
    def disk(self) -> ThreadPoolExecutor:
        return self._pool("disk")

    @property
    def storage(self) -> ThreadPoolExecutor:
        return self._pool("storage")

    @property
    def default(self) -> ThreadPoolExecutor:
        return self._pool("default")

    def size(self, kind: str) -> int:
        return _size(kind, self.cpu_count)

    def install_default(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make ``default`` the loop's executor for ``to_thread`` (asyncio.run also shuts it
        down as the loop ends; twice is harmless)."""
        loop.set_default_executor(self.default)

    def _pool(self, kind: str) -> ThreadPoolExecutor:
        pool = self._made.get(kind)
        if pool is None:
            if self.closed:
                raise RuntimeError(f"the {kind} threads are shut down")
            pool = ThreadPoolExecutor(self.size(kind), thread_name_prefix=_PREFIXES[kind])
            self._made[kind] = pool
        return pool

    def close(self) -> None:
        """Shut every pool down without waiting: a thread still busy (an S3 call that hangs)
        ends when its call does. Owners close once nothing of theirs can submit work."""
        self.closed = True
        for kind, pool in self._made.items():
            pool.shutdown(wait=False, cancel_futures=kind in _DROP_QUEUED)
