"""Rows that wait for their member: credits (and update-only rows) that arrive before the member row.

The platform does not promise stream order, so a first sync may send a credit stream before the
member stream that creates its members. Each such credit answers "not found". Rejecting it at once
loses it (the member appears a moment later), and the early stop on systematic rejection
(``reject_stop_share``) fires before any member row is read, so every retry fails the same way.

Instead, while a stream that creates members (``user_profile``, upsert or insert) is still to come
or still has rows being written (:class:`MemberWait`), a row answered "not found" is *deferred*:
stored, not settled. It is tried again

* as soon as a ``user_profile`` row of the same member is accepted (it then runs right after that
  row, before the member's later rows, so the member's order is kept; a member's waiting rows come
  back in batches that fit the pipeline's bound on pending rows), or
* once every such stream has ended (a ``COMPLETE`` or ``INCOMPLETE`` stream status, else the end
  of the input) and its rows are written: then a "not found" is final (``not_found``).

A deferred row is not settled, so no state after it is echoed until it is (states stay exact), and
the fail-fast rule sees only final outcomes. The rows themselves are kept in a private temporary
SQLite database (:class:`DeferredRows`), as ``writers/credit_memory.py`` does: memory stays flat at
any number of waiting rows; the data spills to an unnamed temporary file deleted when the sync ends.

Deferral is off in a dry run (nothing creates the members) and when the replay policy puts a barrier
at every state (``sync/replay_policy.py``: ``replay_window`` or ``none``): there no credit may run past a
state that is not echoed, and a deferred credit would hold that state back while later credits ran.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass

from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.sync.checkpoint import StreamKey
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Row, StreamContext
from destination_crowdtwist.writers.objects import ACTIVITY_CREDIT, USER_PROFILE
from destination_crowdtwist.writers.sqlite_guard import scratch_db, sqlite_guard

#: The sync mode whose rows never create members (they may wait for a member created later).
UPDATE_ONLY = "update"
#: SQLite page cache of the store, in KiB.
CACHE_KIB = 4096


class MemberWait:
    """Whether members may still arrive in this sync, and which rejected rows should wait for them.

    Pure and single-threaded: the pipeline calls it under its lock.
    """

    def __init__(self, streams: Iterable[StreamContext], *, enabled: bool = True) -> None:
        self._open: set[StreamKey] = {s.key for s in streams if creates_members(s)} if enabled else set()

    def stream_ended(self, stream: StreamKey) -> None:
        """A stream's status said it is complete (or incomplete): it sends no more rows."""
        self._open.discard(stream)

    def input_ended(self) -> None:
        """The end of the input: no stream sends more rows."""
        self._open.clear()

    @property
    def members_may_come(self) -> bool:
        """Whether a stream of the catalog that may create members has not ended yet."""
        return bool(self._open)

    def waits(self, row: Row, outcome: Outcome, *, creators_pending: int = 0) -> bool:
        """Whether ``row``, answered ``outcome``, should wait for its member instead of being settled.

        ``creators_pending``: rows that may create a member (``user_profile`` rows not in update mode)
        received but not finished yet; while there are some, a member may still appear even after
        every member stream ended (a stream status arrives before the stream's last rows are written).
        """
        if not self._open and creators_pending <= 0:
            return False
        if outcome.kind is not OutcomeKind.REJECTED or outcome.reason is not Reason.NOT_FOUND:
            return False
        if outcome.status is None:
            return False  # refused before any request (e.g. a create by CrowdTwist id): no later row changes that
        return not creates_members(row.stream) and (row.stream.object_name in (ACTIVITY_CREDIT, USER_PROFILE))


def creates_members(stream: StreamContext) -> bool:
    """Whether rows of ``stream`` may create members (``user_profile`` in upsert or insert mode)."""
    return stream.object_name == USER_PROFILE and stream.sync_mode != UPDATE_ONLY


@dataclass(frozen=True)
class Deferred:
    """A waiting row, as stored: the row, its checkpoint ticket and its member key."""

    row: Row
    ticket: int
    member: str
    size: int  # serialized bytes, counted against the pipeline's byte budget when it is tried again


class DeferredRows:
    """Deferred rows of one sync, in a private temporary SQLite database. Thread-safe.

    Rows come back in input order (``seq``), by member or all of them in batches.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[StreamKey, StreamContext] = {}
        self._count = 0
        with self._guard():
            self._db = scratch_db(CACHE_KIB, (
                "CREATE TABLE rows (seq INTEGER PRIMARY KEY, member TEXT NOT NULL, ticket INTEGER NOT NULL, "
                "size INTEGER NOT NULL, namespace TEXT, stream TEXT NOT NULL, verify INTEGER NOT NULL, "
                "emitted_at INTEGER, data TEXT NOT NULL)",
                "CREATE INDEX rows_member ON rows (member, seq)",
            ))

    def _guard(self) -> AbstractContextManager[None]:
        # A waiting row that cannot be kept would be lost: stop the sync instead (no state past it is echoed).
        return sqlite_guard(self._lock, lambda exc: (
            f"The temporary space that holds rows waiting for their member is not usable ({exc}). Free space in "
            "the temporary directory (TMPDIR, else /var/tmp or /tmp) and run the sync again."
        ))

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def add(self, row: Row, ticket: int, member: str, size: int) -> None:
        """Keep a row until it is tried again."""
        # The standard library keeps integers of any size exact (the input was parsed the same way).
        data = json.dumps(row.data, separators=(",", ":"))
        with self._guard():
            self._streams.setdefault(row.stream.key, row.stream)
            self._db.execute(
                "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.seq, member, ticket, size, row.stream.namespace, row.stream.name, int(row.verify),
                 row.emitted_at, data),
            )
            self._count += 1

    def has_member(self, member: str) -> bool:
        """Whether rows of ``member`` are waiting."""
        with self._guard():
            if not self._count:
                return False
            return self._db.execute("SELECT 1 FROM rows WHERE member = ? LIMIT 1", (member,)).fetchone() is not None

    def take_member(self, member: str, limit: int) -> list[Deferred]:
        """Remove and return the earliest ``limit`` rows of ``member``, in input order."""
        with self._guard():
            found = self._db.execute(
                "SELECT seq, member, ticket, size, namespace, stream, verify, emitted_at, data FROM rows "
                "WHERE member = ? ORDER BY seq LIMIT ?", (member, max(0, limit))
            ).fetchall()
            self._db.executemany("DELETE FROM rows WHERE seq = ?", [(item[0],) for item in found])
            self._count -= len(found)
            return [self._load(item) for item in found]

    def take(self, limit: int) -> list[Deferred]:
        """Remove and return up to ``limit`` rows, the earliest first."""
        with self._guard():
            found = self._db.execute(
                "SELECT seq, member, ticket, size, namespace, stream, verify, emitted_at, data FROM rows "
                "ORDER BY seq LIMIT ?", (max(0, limit),)
            ).fetchall()
            if found:
                self._db.execute("DELETE FROM rows WHERE seq <= ?", (found[-1][0],))
            self._count -= len(found)
            return [self._load(item) for item in found]

    def _load(self, item: tuple[int, str, int, int, str | None, str, int, int | None, str]) -> Deferred:
        seq, member, ticket, size, namespace, name, verify, emitted_at, data = item
        row = Row(
            stream=self._streams[(namespace, name)], data=json.loads(data), seq=seq,
            verify=bool(verify), emitted_at=emitted_at,
        )
        return Deferred(row, ticket, member, size)

    def close(self) -> None:
        """Drop the store (its temporary file is deleted)."""
        with self._lock, suppress(sqlite3.Error):
            self._db.close()


__all__ = ["Deferred", "DeferredRows", "MemberWait", "creates_members"]
