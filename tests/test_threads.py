"""The worker thread pools (vidbox.threads): made on first use, at their sizes, and shut down
by their owner."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.support import run_async
from vidbox.config import Settings
from vidbox.services import open_services
from vidbox.threads import DISK_THREADS, RECEIVING_THREADS, STORAGE_THREADS, ThreadPools


def test_pools_are_made_on_first_use_and_closed_together() -> None:
    threads = ThreadPools(cpu_count=2)
    assert threads.size("receiving") == RECEIVING_THREADS
    assert threads.size("disk") == DISK_THREADS
    assert threads.size("storage") == STORAGE_THREADS
    assert threads.size("default") == 6  # asyncio's own: min(32, CPUs + 4)
    disk = threads.disk
    assert threads.disk is disk
    assert disk.submit(threading.current_thread).result().name.startswith("vidbox-spool")
    threads.close()
    with pytest.raises(RuntimeError):
        disk.submit(int)
    with pytest.raises(RuntimeError, match="shut down"):
        threads.receiving  # noqa: B018 - a pool first asked for after the close


def test_the_default_executor_runs_to_thread() -> None:
    threads = ThreadPools()

    async def name() -> str:
        threads.install_default(asyncio.get_running_loop())
        return await asyncio.to_thread(lambda: threading.current_thread().name)

    try:
        assert asyncio.run(name()).startswith("asyncio")
    finally:
        threads.close()


def test_open_services_closes_its_threads(settings: Settings) -> None:
    async def use() -> ThreadPools:
        async with open_services(settings) as services:
            assert services.spool.disk is services.threads.disk
            return services.threads

    threads = run_async(use())
    assert threads.closed
    with pytest.raises(RuntimeError):
        threads.disk.submit(int)
