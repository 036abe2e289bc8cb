"""The worker threads of a sync: as many as the flow control wants, up to ``max_concurrency``.

CrowdTwist has no bulk API, so throughput comes from many single-row requests in flight at once, one
per worker thread. The flow control's ``workers_wanted()`` (the places of the client's in-flight gate,
plus its requests pausing before a retry) sizes the pool instead of starting ``concurrency`` threads
at once: at a short round trip a couple of dozen requests use the whole budget, and threads queued at
the gate would only cost CPU (two context switches per request) to hand places over. The pool grows
when more are wanted and a worker leaves, between rows, when there are more than wanted.

What a worker does with an item is the pipeline's (``sync/pipeline.py``): ``run(item)`` applies and
settles one row and returns its member's next row, which the same worker runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

#: How long shutdown waits for the workers in all (their waits end and their requests are cut first).
SHUTDOWN_JOIN_SECONDS = 10.0

T = TypeVar("T")


class WorkersWanted(Protocol):
    """What the pool asks the API layer's flow control (``api.flow.FlowControl``)."""

    def workers_wanted(self) -> int:
        """Worker threads that keep the requests allowed in flight busy."""
        ...


class WorkerPool(Generic[T]):
    """Worker threads taking items from one queue. See the module docstring.

    ``run(item)`` handles an item and returns the next one this worker runs at once (None: take from
    the queue again); ``between()`` runs after each item, outside every lock (a reject sink whose
    uploads fell behind holds the worker there). Without a ``flow`` all ``ceiling`` threads start.
    """

    def __init__(
        self,
        run: Callable[[T], T | None],
        *,
        ceiling: int,
        flow: WorkersWanted | None = None,
        between: Callable[[], None] = lambda: None,
    ) -> None:
        self._run = run
        self._between = between
        self._ceiling = max(1, ceiling)
        self._flow = flow
        self._items: queue.SimpleQueue[T | None] = queue.SimpleQueue()  # None: a worker stops
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def put(self, item: T) -> None:
        """Hand an item to the next free worker."""
        self._items.put(item)

    @property
    def workers(self) -> int:
        """Worker threads started so far (and not left)."""
        with self._lock:
            return len(self._threads)

    def grow(self) -> None:
        """Start workers up to the wanted number (all ``ceiling`` of them without a ``flow``)."""
        if len(self._threads) >= self._ceiling:
            return
        want = self._ceiling
        if self._flow is not None:
            want = min(want, max(1, self._flow.workers_wanted()))
            if len(self._threads) >= want:
                return
        with self._lock:
            if self._closed:
                return
            while len(self._threads) < want:
                t = threading.Thread(target=self._work, name=f"crowdtwist-worker-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    def close(self) -> None:
        """No worker starts or leaves from now on (the pipeline is shutting down)."""
        with self._lock:
            self._closed = True

    def join(self) -> None:
        """:meth:`close`, then stop every worker after its item and wait for them (at most
        :data:`SHUTDOWN_JOIN_SECONDS` in all). Items still queued are dropped.
        """
        with self._lock:  # no worker starts after this
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._items.put(None)
        deadline = time.monotonic() + SHUTDOWN_JOIN_SECONDS
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._threads.clear()

    def _work(self) -> None:
        while True:
            item = self._items.get()
            if item is None:
                return
            current: T | None = item
            while current is not None:
                current = self._run(current)
                self._between()
                # The in-flight target may have risen with the answers of this item's requests.
                self.grow()
            if self._surplus():
                return

    def _surplus(self) -> bool:
        """Leave the pool (between items) when it is larger than wanted, e.g. after a 429 or a spell of
        slow answers: a thread beyond the client's in-flight places would only wait at its gate.
        """
        if self._flow is None:
            return False
        want = max(1, self._flow.workers_wanted())
        if len(self._threads) <= want:
            return False
        with self._lock:
            if self._closed or len(self._threads) <= want:
                return False
            self._threads.remove(threading.current_thread())
            return True


__all__ = ["SHUTDOWN_JOIN_SECONDS", "WorkerPool", "WorkersWanted"]
