from __future__ import annotations

import asyncio

from vidbox.cache import TTLCache


def test_entries_expire_and_the_oldest_go_first() -> None:
    now = [100.0]
    cache: TTLCache[str] = TTLCache(ttl=2.0, max_entries=2, clock=lambda: now[0])
    cache.put("a", "A")
    assert cache.get("a") == "A"
    now[0] += 2.0
    assert cache.get("a") is None
    cache.put("a", "A")
    cache.put("b", "B")
    cache.put("c", "C")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, "B", "C")
    cache.clear()
    assert len(cache) == 0


def test_concurrent_misses_share_one_load() -> None:
    cache: TTLCache[str] = TTLCache(ttl=60)
    loads: list[str] = []

    async def scenario() -> list[str | None]:
        release = asyncio.Event()

        async def load() -> str:
            loads.append("db")
            await release.wait()
            return "principal"

        waiters = [asyncio.ensure_future(cache.get_or_load("token", load)) for _ in range(50)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*waiters)
        # Now cached: no further load.
        results.append(await cache.get_or_load("token", load))
        return results

    assert asyncio.run(scenario()) == ["principal"] * 51
    assert loads == ["db"]


def test_nothing_is_stored_for_none_and_errors_reach_every_waiter() -> None:
    cache: TTLCache[str] = TTLCache(ttl=60)

    async def scenario() -> None:
        async def missing() -> None:
            return None

        assert await cache.get_or_load("k", missing) is None
        assert len(cache) == 0

        async def broken() -> str:
            await asyncio.sleep(0)
            raise RuntimeError("database is locked")

        outcomes = await asyncio.gather(
            *(cache.get_or_load("k", broken) for _ in range(3)), return_exceptions=True
        )
        assert [str(o) for o in outcomes] == ["database is locked"] * 3
        assert len(cache) == 0

    asyncio.run(scenario())


def test_a_load_begun_before_clear_is_not_stored() -> None:
    # A revocation clears the cache while a request is reading the old row: the old row
    # must not come back into the cache.
    cache: TTLCache[str] = TTLCache(ttl=60)

    async def scenario() -> tuple[str | None, str | None]:
        reading = asyncio.Event()
        release = asyncio.Event()

        async def stale() -> str:
            reading.set()
            await release.wait()
            return "before revocation"

        async def fresh() -> str:
            return "after revocation"

        first = asyncio.ensure_future(cache.get_or_load("k", stale))
        await reading.wait()
        cache.clear()
        # A caller after the clear does not join the stale load.
        second = await cache.get_or_load("k", fresh)
        release.set()
        return await first, second

    assert asyncio.run(scenario()) == ("before revocation", "after revocation")
    assert cache.get("k") == "after revocation"


def test_a_waiter_that_goes_away_does_not_cancel_the_load() -> None:
    cache: TTLCache[str] = TTLCache(ttl=60)

    async def scenario() -> str | None:
        release = asyncio.Event()

        async def load() -> str:
            await release.wait()
            return "value"

        leaving = asyncio.ensure_future(cache.get_or_load("k", load))
        staying = asyncio.ensure_future(cache.get_or_load("k", load))
        await asyncio.sleep(0)
        leaving.cancel()
        release.set()
        return await staying

    assert asyncio.run(scenario()) == "value"
    assert cache.get("k") == "value"
