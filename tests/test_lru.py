import threading

import pytest

from alignment.lru import LRU


def test_lru_makes_once_keeps_the_most_recent_and_is_thread_safe():
    made = []

    def make(k):
        made.append(k)
        return k * 10

    cache = LRU(2)
    assert cache.get("a", lambda: make("a")) == "a" * 10
    assert cache.get("a", lambda: make("a")) == "a" * 10 and made == ["a"]
    cache.get("b", lambda: make("b"))
    cache.get("a", lambda: make("a"))  # a is now the most recent
    cache.get("c", lambda: make("c"))  # evicts b
    assert "a" in cache and "c" in cache and "b" not in cache and len(cache) == 2
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError, match="at least 1"):
        LRU(0)

    counts = LRU(100)
    calls = []
    threads = [threading.Thread(target=lambda: [counts.get(i % 10, lambda i=i: calls.append(i % 10) or i % 10)
                                                for i in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == list(range(10))  # each key made exactly once across threads


def test_lru_lookup_and_put_make_nothing():
    cache = LRU(2)
    assert cache.lookup("a") is None and cache.lookup("a", 0) == 0 and len(cache) == 0
    assert cache.put("a", 1) == 1 and cache.put("b", 2) == 2
    assert cache.lookup("a") == 1  # a is now the most recent
    cache.put("c", 3)  # evicts b
    assert "b" not in cache and cache.lookup("c") == 3
    cache.put("a", 4)  # replaces
    assert cache.get("a", lambda: 5) == 4 and len(cache) == 2


def test_lru_tells_what_it_evicts():
    gone = []
    lru = LRU(2, on_evict=lambda key, value: gone.append((key, value)))
    lru.get("a", lambda: 1)
    lru.put("b", 2)
    lru.get("a", lambda: 0)  # a is now the most recent
    lru.put("c", 3)
    assert gone == [("b", 2)] and sorted(lru._items) == ["a", "c"]  # noqa: SLF001
