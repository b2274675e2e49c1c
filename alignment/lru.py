"""A small thread-safe least-recently-used map, for what the samplers, rewards and the studio compute once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LRU:
    """``get(key, make)`` returns the value kept for ``key``, making and keeping it with ``make()`` when missing;
    ``lookup(key)`` and ``put(key, value)`` read and write without making. Beyond ``maxsize`` entries the least
    recently used go. ``lock`` (re-entrant) makes a batch of operations atomic when the studio's worker threads
    share the map."""

    def __init__(self, maxsize: int, on_evict: Callable[[Hashable, Any], None] | None = None):
        """``on_evict(key, value)`` is called (under the lock) for each entry that goes to make room."""
        if int(maxsize) < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self.on_evict = on_evict
        self.lock = threading.RLock()
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def _trim(self) -> None:
        while len(self._items) > self.maxsize:
            key, value = self._items.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(key, value)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self.lock:
            if key not in self._items:
                self._items[key] = make()
            self._items.move_to_end(key)
            value = self._items[key]
            self._trim()
            return value

    def lookup(self, key: Hashable, default: Any = None) -> Any:
        """The value kept for ``key`` (now the most recently used), or ``default``; makes nothing."""
        with self.lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> Any:
        """Keep ``value`` for ``key`` (replacing what was kept) as the most recently used; returns it."""
        with self.lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self._trim()
            return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self.lock:
            self._items.clear()
