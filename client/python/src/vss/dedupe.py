"""Remembering recent message ids, so a message that arrives through
several instances is handed to the application once."""

from __future__ import annotations

from collections import deque


class Seen:
    """The last `capacity` (slot, message id) pairs seen."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(capacity, 1)
        self._set: set[tuple[int, int]] = set()
        self._order: deque[tuple[int, int]] = deque()

    def first(self, slot: int, message_id: int) -> bool:
        """True the first time a pair is seen (within the window)."""
        pair = (slot, message_id)
        if pair in self._set:
            return False
        self._set.add(pair)
        self._order.append(pair)
        if len(self._order) > self._capacity:
            self._set.discard(self._order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._set)
