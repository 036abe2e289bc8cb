"""One deadline per HTTP attempt, from connecting to the last byte: a watchdog that cuts sockets.

urllib3 (and botocore, built on it) has no total timeout: their read timeout is
the longest silence between two packets, so a server that trickles its status line and headers a
byte at a time holds a request for as long as it likes. Here an attempt is a :class:`Watch` with a
deadline; the connections that carry it hand their socket over (:func:`watch_socket`, called by
the connection classes below, which find the attempt of their thread in a thread-local), and one
:class:`Watchdog` thread shuts that socket down when the deadline passes. The worker's blocked
read then returns at once and the attempt fails like a dropped connection, which the caller turns
into "no complete answer within N s". :meth:`Watchdog.abort_all` cuts every attempt in flight (a
stopping sync).

    watchdog = Watchdog()
    watch = Watch(time.monotonic() + 40.0)
    with watchdog.watching(watch):
        pool.urlopen(...)           # a WatchedHTTPSConnectionPool (or a manager that builds them)
    watch.was_cut                   # the deadline (watch.expired) or an abort (watch.aborted)
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from destination_crowdtwist.api.answer_headers import PlainHeadersResponse
from destination_crowdtwist.api.one_write import OneWriteRequest

__all__ = [
    "WATCHED_POOLS",
    "Watch",
    "Watchdog",
    "WatchedHTTPConnection",
    "WatchedHTTPConnectionPool",
    "WatchedHTTPSConnection",
    "WatchedHTTPSConnectionPool",
    "current_watch",
    "watch_socket",
]


class Watch:
    """One attempt's socket, as far as the watchdog is concerned: cut it at the deadline or on abort."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # time.monotonic()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self.expired = False  # cut at the deadline
        self.aborted = False  # cut because the sync is stopping

    def attach(self, sock: socket.socket | None) -> None:
        """The socket this attempt uses (called by the connection once it has one)."""
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            self._sock = sock
            cut = self.expired or self.aborted
        if cut:
            _shut(sock)

    def cut(self, *, aborted: bool) -> None:
        """Shut the socket down: the worker's blocked read returns at once and the attempt fails."""
        with self._lock:
            if self._done:
                return
            if aborted:
                self.aborted = True
            else:
                self.expired = True
            sock = self._sock
        if sock is not None:
            _shut(sock)

    def finish(self) -> None:
        """The attempt is over: its connection may serve another attempt now, so never cut it later."""
        with self._lock:
            self._done = True
            self._sock = None

    @property
    def was_cut(self) -> bool:
        """Whether the watchdog (deadline) or an abort cut this attempt."""
        with self._lock:
            return self.expired or self.aborted


def _shut(sock: socket.socket) -> None:
    # shutdown, not close: it is safe while another thread is blocked in recv on the socket, and it
    # makes that recv return. socket.socket.shutdown on an SSLSocket shuts the TCP socket down
    # without touching the TLS object the worker is using.
    with contextlib.suppress(OSError):  # already closed or never connected: nothing to cut
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# The attempt running on this thread, for the connection classes (urllib3 creates connections deep
# inside its pools and botocore; a thread-local is the one way to reach them without reimplementing
# either).
_CURRENT = threading.local()


def current_watch() -> Watch | None:
    """The attempt watched on this thread, if any."""
    watch: Watch | None = getattr(_CURRENT, "watch", None)
    return watch


def watch_socket(sock: socket.socket | None) -> None:
    """Hand a connection's socket to the attempt watched on this thread (connection classes call it)."""
    watch = current_watch()
    if watch is not None:
        watch.attach(sock)


class _Watched:
    """Hands the connection's socket to the attempt's watch: after connecting, and on each request."""

    sock: Any

    def connect(self) -> None:
        """Connect (and, for HTTPS, the TLS handshake), then hand the new socket to the attempt."""
        super().connect()  # type: ignore[misc]
        watch_socket(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        """Send a request; a reused keep-alive connection (no connect) hands its socket over here."""
        watch_socket(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]

    def request_plain(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> None:
        """:meth:`OneWriteRequest.request_plain`, the socket handed over first as :meth:`request` does."""
        watch_socket(self.sock)
        super().request_plain(method, target, body, headers)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, OneWriteRequest, HTTPConnection):
    """An HTTP connection that hands its socket to the attempt's watch (new or reused connection),
    sends a request's head and small body in one write (``api/one_write.py``) and reads a plain header
    block without the ``email`` parser (``api/answer_headers.py``).
    """

    response_class = PlainHeadersResponse


class WatchedHTTPSConnection(_Watched, OneWriteRequest, HTTPSConnection):
    """The HTTPS twin of :class:`WatchedHTTPConnection`."""

    response_class = PlainHeadersResponse


class WatchedHTTPConnectionPool(HTTPConnectionPool):
    """A urllib3 pool of :class:`WatchedHTTPConnection`: the watchdog can cut its attempts."""

    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    """The HTTPS twin of :class:`WatchedHTTPConnectionPool`."""

    ConnectionCls = WatchedHTTPSConnection


#: ``PoolManager.pool_classes_by_scheme`` for a manager (or proxy manager) whose pools are watched.
WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool,
}


class _Watching:
    """``with watchdog.watching(watch):`` (a class, not a generator: it runs once per attempt)."""

    __slots__ = ("_watch", "_watchdog")

    def __init__(self, watchdog: Watchdog, watch: Watch) -> None:
        self._watchdog = watchdog
        self._watch = watch

    def __enter__(self) -> Watch:
        self._watchdog.arm(self._watch)
        _CURRENT.watch = self._watch
        return self._watch

    def __exit__(self, *exc_info: object) -> None:
        _CURRENT.watch = None
        self._watchdog.disarm(self._watch)


class Watchdog:
    """One thread per client that cuts every attempt still running at its deadline.

    Deadlines are real time (``time.monotonic``): the thread sleeps until the earliest one. Arming
    costs a heap push; attempts that finished stay in the heap until their deadline comes up.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Watch]] = []
        self._live: set[Watch] = set()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, watch: Watch) -> None:
        """Watch an attempt until :meth:`disarm`."""
        with self._cond:
            self._live.add(watch)
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="crowdtwist-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()  # an earlier deadline than the one the thread sleeps towards

    def watching(self, watch: Watch) -> _Watching:
        """Watch ``watch`` for the requests this thread sends inside the ``with`` block."""
        return _Watching(self, watch)

    def disarm(self, watch: Watch) -> None:
        """The attempt ended; its socket is no longer its own."""
        watch.finish()
        with self._cond:
            self._live.discard(watch)

    def abort_all(self) -> None:
        """Cut every attempt in flight now (the sync is stopping and cannot wait for them)."""
        with self._cond:
            watches = list(self._live)
        for watch in watches:
            watch.cut(aborted=True)

    def close(self) -> None:
        """Stop the thread."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and (self._heap[0][2] not in self._live or self._heap[0][0] <= now):
                    _, _, watch = heapq.heappop(self._heap)
                    if watch in self._live:
                        watch.cut(aborted=False)
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)


