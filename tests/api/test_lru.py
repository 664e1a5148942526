"""The LRU behind the per-version caches: recency, the entry bound and the weight bound."""

from __future__ import annotations

from api.lru import Lru


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_the_weight_bound_drops_old_entries_and_refuses_one_heavier_than_it() -> None:
    cache: Lru[str, bytes] = Lru(100, max_weight=10, weigh=lambda _, value: len(value))
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    cache.put("a", b"123456")  # replacing an entry replaces its weight
    assert cache.weight == 10
    cache.put("c", b"12")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"123456", None, b"12")
    assert cache.weight == 8
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None
    assert len(cache) == 2
    assert cache.weight == 8


def test_a_key_can_weigh_too() -> None:
    cache: Lru[str, bytes] = Lru(100, max_weight=10, weigh=lambda key, value: len(key) + len(value))
    cache.put("aaaa", b"1")
    cache.put("bbbb", b"1")
    assert cache.weight == 10
    cache.put("c", b"1")
    assert (cache.get("aaaa"), cache.get("bbbb"), cache.get("c")) == (None, b"1", b"1")
    assert cache.weight == 7
