"""A heap of named deadlines, shared by both roles (it knows nothing about them).

``schedule(key, when)`` replaces any earlier deadline of that key; cancelled or replaced entries
stay in the heap and are skipped when popped (lazy deletion), so every operation is O(log n).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerHeap(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, tuple[float, int]] = {}
        self._tiebreak = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def schedule(self, key: K, when: float) -> None:
        entry = (when, next(self._tiebreak))
        self._live[key] = entry
        heapq.heappush(self._heap, (*entry, key))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._live):
            self._compact()

    def cancel(self, key: K) -> None:
        self._live.pop(key, None)

    def deadline(self, key: K) -> float | None:
        entry = self._live.get(key)
        return entry[0] if entry else None

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        while self._heap:
            when, tie, key = self._heap[0]
            if self._live.get(key) == (when, tie):
                return when
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key whose deadline is at or before ``now``, earliest first."""
        due: list[K] = []
        while self._heap and self._heap[0][0] <= now:
            when, tie, key = heapq.heappop(self._heap)
            if self._live.get(key) == (when, tie):
                del self._live[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        self._heap = [(w, t, k) for k, (w, t) in self._live.items()]
        heapq.heapify(self._heap)
