"""The hand-over of input messages from the reader thread to the main thread, waking either side rarely.

``queue.Queue`` wakes the other thread on every item: once the reader is ahead (the queue full), each
message the main thread takes wakes the reader for one more, and both pay a thread switch and a turn of
the interpreter lock per message. A re-sync whose rows mostly need no request is made of nothing else.
Here the main thread takes everything queued at once, and each side is woken only when it waits: the
reader once the main thread emptied the inbox, the main thread when the first message arrives. No
message is held back: each is in the inbox as soon as the reader parsed it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """A bounded FIFO from one producer thread to one consumer thread (see the module docstring)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        lock = threading.Lock()
        # put and take hold the lock itself: the conditions' own lock, without Condition.__enter__'s
        # Python frame for every message.
        self._lock = lock
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)
        self._taker_waits = False
        self._putter_waits = False

    def put(self, item: T, timeout: float) -> bool:
        """Append ``item``, waiting up to ``timeout`` seconds for room; False if there was none."""
        with self._lock:
            if len(self._items) >= self._maxsize:
                self._putter_waits = True
                try:
                    # Woken only once the consumer emptied the inbox, not for every item it took.
                    self._not_full.wait_for(lambda: len(self._items) < self._maxsize, timeout)
                finally:
                    self._putter_waits = False
                if len(self._items) >= self._maxsize:
                    return False
            self._items.append(item)
            if self._taker_waits:
                self._not_empty.notify()
            return True

    def take(self, timeout: float) -> list[T]:
        """Every item queued, oldest first, waiting up to ``timeout`` seconds for one; [] if none came."""
        with self._lock:
            if not self._items:
                self._taker_waits = True
                try:
                    self._not_empty.wait_for(lambda: bool(self._items), timeout)
                finally:
                    self._taker_waits = False
            items = list(self._items)
            self._items.clear()
            if items and self._putter_waits:
                self._not_full.notify()
            return items


__all__ = ["Inbox"]
