from __future__ import annotations

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
