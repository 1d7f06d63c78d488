"""A small time-bounded cache for hot lookups (who owns this token) on media requests.

Entries live a couple of seconds at most, so several vidbox processes sharing one database see
each other's changes that quickly; within one process, whatever changes an entry clears it.

``get_or_load`` lets one caller load a missing entry while concurrent callers for the same key
wait for that load. Without it, every request in flight when an entry expires queries the
database at once, and that burst every couple of seconds was most of the serving tail latency.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        # Storage backends use it from worker threads too.
        self._lock = threading.Lock()
        self._loading: dict[Hashable, asyncio.Task[V | None]] = {}
        # Bumped by clear(): a load that began before a clear must not store what it read.
        self._generation = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            expires, value = found
            if expires <= self._clock():
                del self._entries[key]
                return None
            return value

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    async def get_or_load(self, key: Hashable, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The entry, or the result of ``load()`` (stored unless None). Concurrent callers
        for the same missing key share one load."""
        value = self.get(key)
        if value is not None:
            return value
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._loading[key] = task
            task.add_done_callback(self._loaded(key, self._generation))
        # shield: a caller that goes away (client disconnected) must not cancel the others' load.
        return await asyncio.shield(task)

    def _loaded(self, key: Hashable, generation: int) -> Callable[[asyncio.Task[V | None]], None]:
        def store(task: asyncio.Task[V | None]) -> None:
            if self._loading.get(key) is task:
                del self._loading[key]
            if task.cancelled() or task.exception() is not None:
                return  # the error reaches every waiter through the task
            value = task.result()
            if value is not None and generation == self._generation:
                self.put(key, value)

        return store

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1
            # Later callers must not join a load that may have read what was just changed.
            self._loading.clear()

    def __len__(self) -> int:
        return len(self._entries)
